// Image decoding (OpenCV imgcodecs), Pillow-exact resampling, the encoders' preprocessing and
// normalisation. See include/mmtune/data/image.h for the choices and why.
#include <mmtune/core/errors.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/image.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

namespace mmtune::data {
namespace {

const char* const kBadImageHint =
    "mmtune reads PNG and JPEG files; re-create or re-download the image, or set "
    "data.on_bad_sample: skip to drop such samples (they are counted)";

// The largest file a picture within max_pixels can be: 24 bytes a pixel (a plain-text PPM of
// 16-bit samples, "65535 " three times; binary PNM and stored PNG take at most 8, JPEG compresses)
// plus 64 MiB of metadata (EXIF, ICC profiles, text chunks, comments), and never more than the
// decoder takes (cv::imdecode reads an int's worth of bytes). Checked before the file is read: a
// 30 GB file named .png must not be read into memory to find out.
uint64_t max_file_bytes(int64_t max_pixels) {
  constexpr uint64_t kMetadata = uint64_t{64} << 20;
  constexpr uint64_t kDecoderMax = static_cast<uint64_t>(std::numeric_limits<int>::max());
  const uint64_t pixels = static_cast<uint64_t>(std::max<int64_t>(max_pixels, 0));
  if (pixels > (kDecoderMax - kMetadata) / 24) return kDecoderMax;
  return pixels * 24 + kMetadata;
}

// One sample of channel c of a decoded pixel, as 8 bits: 16-bit samples are rounded from
// v * 255 / 65535 (exact for v = x * 257).
template <class T>
uint8_t sample8(const T* px, int c) {
  if constexpr (sizeof(T) == 1) {
    return px[c];
  } else {
    return static_cast<uint8_t>((static_cast<uint32_t>(px[c]) * 255u + 32767u) / 65535u);
  }
}

// OpenCV's channel orders (IMREAD_UNCHANGED): 1 grey, 2 grey + alpha, 3 BGR, 4 BGRA -> RGB,
// alpha dropped as PIL's convert('RGB') does.
template <class T>
void to_rgb(const cv::Mat& m, RgbImage& out) {
  const int ch = m.channels();
  for (int y = 0; y < m.rows; ++y) {
    const T* row = m.ptr<T>(y);
    uint8_t* dst = out.pixels.data() + static_cast<size_t>(y) * m.cols * 3;
    for (int x = 0; x < m.cols; ++x, dst += 3) {
      const T* px = row + static_cast<size_t>(x) * ch;
      if (ch <= 2) {
        dst[0] = dst[1] = dst[2] = sample8(px, 0);
      } else {
        dst[0] = sample8(px, 2);
        dst[1] = sample8(px, 1);
        dst[2] = sample8(px, 0);
      }
    }
  }
}

// ---- Pillow's resampling (libImaging/Resample.c), 8-bit path -----------------------------------

struct Filter {
  double (*fn)(double);
  double support;
};

double bicubic_filter(double x) {  // Keys cubic, a = -0.5
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

Filter filter_of(Interpolation i) {
  return i == Interpolation::kBicubic ? Filter{bicubic_filter, 2.0} : Filter{bilinear_filter, 1.0};
}

constexpr int kPrecisionBits = 32 - 8 - 2;

// Per output pixel: the first input index, how many inputs, and their fixed-point weights.
struct Coefficients {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;  // [out, ksize]
};

// precompute_coeffs + normalize_coeffs_8bpc, same arithmetic in the same order.
Coefficients precompute(int64_t in_size, int64_t out_size, const Filter& f) {
  const double scale =
      static_cast<double>(static_cast<float>(in_size)) / static_cast<double>(out_size);
  const double filterscale = scale < 1.0 ? 1.0 : scale;  // > 1 widens the kernel: antialiasing
  const double support = f.support * filterscale;
  Coefficients c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(out_size * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    const int64_t xmin = std::max<int64_t>(0, static_cast<int>(center - support + 0.5));
    const int64_t xmax =
        std::min<int64_t>(in_size, static_cast<int>(center + support + 0.5)) - xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      k[x] = f.fn((static_cast<double>(x + xmin) - center + 0.5) * ss);
      ww += k[x];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      const double fixed = w * (1 << kPrecisionBits);
      c.weights[xx * c.ksize + x] = static_cast<int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t acc) {
  return static_cast<uint8_t>(std::clamp<int64_t>(acc >> kPrecisionBits, 0, 255));
}

// Horizontal pass over `rows` rows of `in` (width in_w): out is rows x cx.first.size().
void resample_horizontal(const uint8_t* in, int64_t in_w, int64_t rows, const Coefficients& cx,
                         uint8_t* out) {
  const int64_t out_w = static_cast<int64_t>(cx.first.size());
  for (int64_t y = 0; y < rows; ++y) {
    const uint8_t* src_row = in + y * in_w * 3;
    uint8_t* dst = out + y * out_w * 3;
    for (int64_t xx = 0; xx < out_w; ++xx) {
      const int32_t* k = cx.weights.data() + xx * cx.ksize;
      const uint8_t* src = src_row + cx.first[xx] * 3;
      int64_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1),
                        1 << (kPrecisionBits - 1)};
      for (int64_t t = 0; t < cx.count[xx]; ++t) {
        for (int c = 0; c < 3; ++c) acc[c] += static_cast<int64_t>(src[t * 3 + c]) * k[t];
      }
      for (int c = 0; c < 3; ++c) dst[xx * 3 + c] = clip8(acc[c]);
    }
  }
}

// Vertical pass: `in` holds rows first_row.. of an image of width w; out is cy.first.size() rows.
void resample_vertical(const uint8_t* in, int64_t w, int64_t first_row, const Coefficients& cy,
                       uint8_t* out) {
  const int64_t n = w * 3;
  std::vector<int64_t> acc(n);
  for (size_t yy = 0; yy < cy.first.size(); ++yy) {
    std::fill(acc.begin(), acc.end(), int64_t{1} << (kPrecisionBits - 1));
    const int32_t* k = cy.weights.data() + yy * cy.ksize;
    for (int64_t t = 0; t < cy.count[yy]; ++t) {
      const uint8_t* src = in + (cy.first[yy] - first_row + t) * n;
      for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<int64_t>(src[i]) * k[t];
    }
    for (int64_t i = 0; i < n; ++i) out[yy * n + i] = clip8(acc[i]);
  }
}

RgbImage pad_to_square(const RgbImage& img, const std::array<uint8_t, 3>& fill) {
  const int64_t side = std::max(img.width, img.height);
  RgbImage out{side, side, std::vector<uint8_t>(static_cast<size_t>(side * side * 3))};
  for (int64_t i = 0; i < side * side; ++i)
    std::copy(fill.begin(), fill.end(), out.pixels.begin() + i * 3);
  const int64_t left = (side - img.width) / 2,
                top = (side - img.height) / 2;  // expand2square's paste
  for (int64_t y = 0; y < img.height; ++y) {
    std::copy_n(img.pixels.begin() + y * img.width * 3, img.width * 3,
                out.pixels.begin() + ((top + y) * side + left) * 3);
  }
  return out;
}

RgbImage crop(const RgbImage& img, int64_t left, int64_t top, int64_t width, int64_t height) {
  RgbImage out{height, width, std::vector<uint8_t>(static_cast<size_t>(width * height * 3))};
  for (int64_t y = 0; y < height; ++y) {
    std::copy_n(img.pixels.begin() + ((top + y) * img.width + left) * 3, width * 3,
                out.pixels.begin() + y * width * 3);
  }
  return out;
}

// The enum value named `value`; an unknown name is an Error listing the valid ones.
template <class E>
E pick(const std::string& key, const std::string& value,
       std::initializer_list<std::pair<const char*, E>> choices) {
  std::string names;
  for (const auto& [name, e] : choices) {
    if (value == name) return e;
    names += (names.empty() ? "" : " | ") + std::string(name);
  }
  throw Error("unknown " + key + " '" + value + "'", "use " + names);
}

}  // namespace

std::string read_image_file(const std::string& path, int64_t max_pixels) {
  std::string bytes = read_whole_file(
      path, max_file_bytes(max_pixels), cat("a picture within vision.max_image_pixels = ", max_pixels),
      [&](const FileProblem& p) {
        switch (p.kind) {
          case FileProblem::Kind::kMissing:
            throw DataError(path, "image not found",
                            "check data.image_folder / data.root and that the images were extracted; "
                            "data.on_bad_sample: skip drops samples whose image is missing (they are counted)");
          case FileProblem::Kind::kNotAFile:
            throw DataError(path, "image path " + p.message, kBadImageHint);
          case FileProblem::Kind::kTooLarge:
            throw DataError(path, "image file " + p.message,
                            "is it an image? shrink the picture, raise vision.max_image_pixels, or set "
                            "data.on_bad_sample: skip");
          case FileProblem::Kind::kUnreadable:
            throw DataError(path, "unreadable image file (" + p.message + ")", "check the file's permissions");
        }
      });
  if (bytes.empty()) throw DataError(path, "image file is empty", kBadImageHint);
  return bytes;
}


ImageOptions image_options(const config::VisionConfig& v) {
  ImageOptions o;
  o.size = v.image_size;
  o.max_pixels = v.max_image_pixels;
  o.preprocess = pick<Preprocess>("vision.preprocess", v.preprocess,
                                  {{"resize", Preprocess::kResize},
                                   {"pad_square", Preprocess::kPadSquare},
                                   {"resize_center_crop", Preprocess::kResizeCenterCrop}});
  o.interpolation = pick<Interpolation>(
      "vision.interpolation", v.interpolation,
      {{"bicubic", Interpolation::kBicubic}, {"bilinear", Interpolation::kBilinear}});
  o.norm =
      pick<Normalization>("vision.norm", v.norm,
                          {{"imagenet", Normalization::kImagenet}, {"clip", Normalization::kClip}});
  if (o.size <= 0) throw Error(cat("vision.image_size must be > 0, got ", o.size));
  return o;
}

NormStats norm_stats(Normalization norm) {
  if (norm == Normalization::kImagenet) return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  return {{0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};
}

namespace {

// PNM (P1-P6), as OpenCV's PxM decoder reads it: 'P', the kind, one whitespace byte, then width and
// height, each after any run of whitespace and '#' comments (a comment ends at CR or LF), and
// refused (nullopt) where OpenCV would throw: another byte before a number, a number above INT_MAX,
// the end of the file.
std::optional<std::pair<int64_t, int64_t>> pnm_size(std::span<const uint8_t> b) {
  if (b.size() < 3 || b[0] != 'P' || b[1] < '1' || b[1] > '6' || !std::isspace(b[2])) return std::nullopt;
  size_t i = 2;
  auto number = [&]() -> std::optional<int64_t> {
    while (i < b.size() && !std::isdigit(b[i])) {
      if (b[i] == '#') {
        while (++i < b.size() && b[i] != '\n' && b[i] != '\r') {}
        ++i;  // the CR or LF itself
      } else if (std::isspace(b[i])) {
        ++i;
      } else {
        return std::nullopt;
      }
    }
    if (i >= b.size()) return std::nullopt;
    int64_t v = 0;
    for (; i < b.size() && std::isdigit(b[i]); ++i) {
      v = v * 10 + (b[i] - '0');
      if (v > std::numeric_limits<int32_t>::max()) return std::nullopt;
    }
    return v;
  };
  const auto w = number();
  const auto h = w ? number() : std::nullopt;
  if (!h) return std::nullopt;
  return std::pair{*w, *h};
}

}  // namespace

std::optional<std::pair<int64_t, int64_t>> header_size(std::span<const uint8_t> b) {
  auto be16 = [&](size_t i) { return static_cast<int64_t>(b[i]) << 8 | b[i + 1]; };
  auto be32 = [&](size_t i) { return be16(i) << 16 | be16(i + 2); };
  // PNG: 8-byte signature, then the IHDR chunk: length, "IHDR", width, height (big-endian)
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 24 && std::equal(kPng, kPng + 8, b.begin()) && std::equal(b.begin() + 12, b.begin() + 16, "IHDR"))
    return std::pair{be32(16), be32(20)};
  if (b.size() >= 1 && b[0] == 'P') return pnm_size(b);
  // JPEG: SOI, then segments FF xx [length]; a SOFn (C0-CF but C4 DHT, C8 JPG, CC DAC) holds
  // precision, height, width
  if (b.size() < 4 || b[0] != 0xFF || b[1] != 0xD8) return std::nullopt;
  // Walked as libjpeg reads it (its next_marker): bytes other than FF before a marker are skipped
  // ("extraneous bytes before marker" is a warning there, not an error; fuzz_image found a frame of
  // 53736 x 14895 behind such bytes), FF 00 is no marker, and a scan or EOI before any frame ends
  // the search. An APPn or COM segment with a length below 2 is not an error there either: it
  // skips nothing after the length (fuzz_image again); in the tables' segments it is an error.
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (b[i] != 0xFF) { ++i; continue; }
    const uint8_t marker = b[i + 1];
    if (marker == 0xFF) { ++i; continue; }  // fill bytes
    if (marker == 0x00 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) { i += 2; continue; }
    if (marker == 0xDA || marker == 0xD9) return std::nullopt;  // SOS / EOI without a frame: the decoder refuses it
    const int64_t len = be16(i + 2);
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      if (i + 9 > b.size()) return std::nullopt;
      return std::pair{be16(i + 7), be16(i + 5)};
    }
    const bool skippable = (marker >= 0xE0 && marker <= 0xEF) || marker == 0xFE;  // APPn, COM
    if (len < 2 && !skippable) return std::nullopt;
    i += 2 + static_cast<size_t>(std::max<int64_t>(len, 2));
  }
  return std::nullopt;
}

RgbImage decode_rgb(const std::string& path, int64_t max_pixels) {
  std::string bytes = read_image_file(path, max_pixels);
  // unsigned bytes for the header walk (std::isspace / isdigit on a negative char is undefined)
  const std::span<const uint8_t> ubytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  // refuse a huge picture before decoding it (a 20000 x 20000 PNG took 2.8 GB and 8-19 s)
  auto too_large = [&](int64_t w, int64_t h) {
    return DataError(path,
                     cat("image of ", w, " x ", h, " = ", static_cast<uint64_t>(w) * static_cast<uint64_t>(h),
                         " pixels exceeds vision.max_image_pixels = ", max_pixels),  // w, h < 2^32
                     "shrink the picture, raise vision.max_image_pixels, or set data.on_bad_sample: skip");
  };
  // Only what header_size reads goes to the decoder: another format's header (BMP, TIFF, WebP, ...,
  // all of which OpenCV would decode) could claim any size, and OpenCV allocates the picture
  // before reading a pixel (fuzz_image: a 2.4 GB allocation).
  const auto wh = header_size(ubytes);
  if (!wh)
    throw DataError(path, "cannot decode image: not a PNG, JPEG or PNM (PPM / PGM / PBM) file, or its header is cut short",
                    cat(kBadImageHint, "; convert other formats to PNG or JPEG first"));
  // a header's sizes are up to 2^32 - 1 each: w * h > max without forming the product (no overflow)
  if (wh->first > 0 && wh->second > max_pixels / wh->first) throw too_large(wh->first, wh->second);
  cv::Mat m;
  try {
    // IMREAD_UNCHANGED keeps 16-bit depth and alpha and does not apply EXIF orientation (PIL's
    // Image.open does not either).
    m = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, bytes.data()),
                     cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    throw DataError(path, cat("cannot decode image: ", e.what()), kBadImageHint);
  }
  if (m.empty())
    throw DataError(path, "cannot decode image (corrupt, truncated or not an image)",
                    kBadImageHint);
  if (static_cast<int64_t>(m.rows) * m.cols > max_pixels) throw too_large(m.cols, m.rows);  // belt and braces
  if (m.channels() > 4 || (m.depth() != CV_8U && m.depth() != CV_16U)) {
    throw DataError(
        path, cat("unsupported pixel format: ", m.channels(), " channels of depth ", m.depth()),
        "use 8- or 16-bit grey, grey+alpha, RGB or RGBA images");
  }
  RgbImage out{m.rows, m.cols, std::vector<uint8_t>(static_cast<size_t>(m.rows) * m.cols * 3)};
  if (m.depth() == CV_8U) {
    to_rgb<uint8_t>(m, out);
  } else {
    to_rgb<uint16_t>(m, out);
  }
  return out;
}

RgbImage resize(const RgbImage& img, int64_t width, int64_t height, Interpolation interpolation) {
  TORCH_CHECK(img.width > 0 && img.height > 0 && width > 0 && height > 0,
              "resize: empty image or target");
  if (width == img.width && height == img.height) return img;
  const Filter f = filter_of(interpolation);
  auto horizontal = [&](const RgbImage& in, int64_t row_first,
                        int64_t rows) {  // rows row_first.. of `in`
    const Coefficients cx = precompute(in.width, width, f);
    RgbImage out{rows, width, std::vector<uint8_t>(static_cast<size_t>(rows * width * 3))};
    resample_horizontal(in.pixels.data() + row_first * in.width * 3, in.width, rows, cx,
                        out.pixels.data());
    return out;
  };
  auto vertical = [&](const RgbImage& in, int64_t first_row,
                      const Coefficients& cy) {  // in holds rows first_row..
    RgbImage out{height, in.width,
                 std::vector<uint8_t>(static_cast<size_t>(height * in.width * 3))};
    resample_vertical(in.pixels.data(), in.width, first_row, cy, out.pixels.data());
    return out;
  };
  if (height == img.height) return horizontal(img, 0, img.height);
  const Coefficients cy = precompute(img.height, height, f);
  if (width == img.width) return vertical(img, 0, cy);
  // Pillow 13 runs the vertical pass first when it removes more than twice as many rows as the
  // horizontal pass removes columns (found by comparing with Pillow 13.0.0 on 3000 random shape
  // pairs; Pillow <= 12 always went horizontal first). The 8-bit rounding between the passes makes
  // the order visible (one level on some pixels).
  if (height < img.height && img.height - height > 2 * (img.width - width)) {
    return horizontal(vertical(img, 0, cy), 0, height);
  }
  // Like Pillow: only the input rows the vertical pass reads are resampled horizontally.
  const int64_t row_first = cy.first[0], row_end = cy.first[height - 1] + cy.count[height - 1];
  return vertical(horizontal(img, row_first, row_end - row_first), row_first, cy);
}

namespace {

// CLIPImageProcessor: short side -> S, long side -> int(S * long / short), before the centre crop.
std::pair<int64_t, int64_t> size_before_centre_crop(const RgbImage& img, int64_t S) {
  const bool wide = img.width > img.height;
  const int64_t short_side = wide ? img.height : img.width, long_side = wide ? img.width : img.height;
  const auto scaled_long =
      static_cast<int64_t>(static_cast<double>(S * long_side) / static_cast<double>(short_side));
  return wide ? std::pair{scaled_long, S} : std::pair{S, scaled_long};
}

}  // namespace

RgbImage preprocess_rgb(const RgbImage& img, const ImageOptions& o) {
  const int64_t S = o.size;
  switch (o.preprocess) {
    case Preprocess::kResize:
      return resize(img, S, S, o.interpolation);
    case Preprocess::kPadSquare: {
      const NormStats st = norm_stats(o.norm);
      std::array<uint8_t, 3> fill{};
      for (int c = 0; c < 3; ++c)
        fill[c] = static_cast<uint8_t>(static_cast<double>(st.mean[c]) * 255);  // int(m * 255)
      return resize(img.width == img.height ? img : pad_to_square(img, fill), S, S,
                    o.interpolation);
    }
    case Preprocess::kResizeCenterCrop: {
      const auto [w, h] = size_before_centre_crop(img, S);
      const RgbImage r = resize(img, w, h, o.interpolation);
      return crop(r, (w - S) / 2, (h - S) / 2, S, S);
    }
  }
  throw Error("unreachable preprocess");
}

torch::Tensor to_tensor(const RgbImage& img, Normalization norm) {
  const NormStats st = norm_stats(norm);
  const int64_t H = img.height, W = img.width;
  torch::Tensor t = torch::empty({3, H, W}, torch::kFloat32);  // [3, H, W]
  float* dst = t.data_ptr<float>();
  for (int c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < H * W; ++i) {
      // torchvision ToTensor (p / 255) then Normalize ((x - mean) / std), all in float32
      const float x = static_cast<float>(img.pixels[i * 3 + c]) / 255.0f;
      dst[c * H * W + i] = (x - st.mean[c]) / st.std[c];
    }
  }
  return t;
}

namespace {

// The pixels preprocess_rgb makes beside the decoded picture: the padded square, or the picture
// resized before its centre crop (short side -> S). A 1 x 64000 strip passes the pixel limit but
// pads to a 64000^2 square (12 GB; found by fuzz_image), so the limit applies to these too.
double preprocessed_pixels(const RgbImage& img, const ImageOptions& o) {
  switch (o.preprocess) {
    case Preprocess::kPadSquare: {
      const double side = static_cast<double>(std::max(img.width, img.height));
      return side * side;
    }
    case Preprocess::kResizeCenterCrop: {
      const auto [w, h] = size_before_centre_crop(img, o.size);
      return static_cast<double>(w) * static_cast<double>(h);
    }
    case Preprocess::kResize: break;
  }
  return static_cast<double>(o.size) * static_cast<double>(o.size);
}

}  // namespace

torch::Tensor load_image(const std::string& path, const ImageOptions& options) {
  const RgbImage img = decode_rgb(path, options.max_pixels);
  if (const double n = preprocessed_pixels(img, options); n > static_cast<double>(options.max_pixels)) {
    throw DataError(path,
                    cat("image of ", img.width, " x ", img.height, " becomes ", static_cast<uint64_t>(n), " pixels ",
                        options.preprocess == Preprocess::kPadSquare ? "padded to a square" : "before its centre crop",
                        ", over vision.max_image_pixels = ", options.max_pixels),
                    "crop the picture closer to square, raise vision.max_image_pixels, or set data.on_bad_sample: skip");
  }
  return to_tensor(preprocess_rgb(img, options), options.norm);
}

}  // namespace mmtune::data
