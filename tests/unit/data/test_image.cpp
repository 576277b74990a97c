// Images: decoding (grey, RGBA, grey+alpha, palette, 16-bit PNG, JPEG), Pillow-exact resampling
// and the three preprocessings against scripts/reference/image_reference.py (PIL + numpy), plus
// hand-derived checks and the errors for corrupt and missing files.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/data/image.h>
#include <mmtune/io/safetensors.h>

#include <sys/stat.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_utils.h"

namespace mmtune::data {
namespace test_image {

using nlohmann::json;

// The reference images and tensors, made once per test process.
class ImageReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<testing::TempDir>();
    const auto r = testing::run_process(
        {testing::kPython,
         std::string(testing::kSourceDir) + "/scripts/reference/image_reference.py", "--dir",
         dir_->path()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ref_ = io::SafetensorsFile::open(dir_->path() + "/reference.safetensors");
    manifest_ = json::parse(testing::read_text(dir_->path() + "/manifest.json"));
  }
  static void TearDownTestSuite() {
    ref_.reset();
    dir_.reset();
  }
  static std::string file(const std::string& name) { return dir_->path() + "/" + name; }
  static torch::Tensor ref(const std::string& name) { return ref_->tensor(name); }

  static std::unique_ptr<testing::TempDir> dir_;
  static std::shared_ptr<const io::SafetensorsFile> ref_;
  static json manifest_;
};
std::unique_ptr<testing::TempDir> ImageReference::dir_;
std::shared_ptr<const io::SafetensorsFile> ImageReference::ref_;
json ImageReference::manifest_;

torch::Tensor as_tensor(const RgbImage& img) {  // [H, W, 3] uint8
  return torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, 3},
                          torch::kUInt8)
      .clone();
}

RgbImage from_tensor(const torch::Tensor& t) {  // [H, W, 3] uint8
  const torch::Tensor c = t.contiguous();
  RgbImage img{c.size(0), c.size(1), {}};
  img.pixels.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
  return img;
}

int64_t max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kInt) - b.to(torch::kInt)).abs().max().item<int64_t>();
}

ImageOptions options_of(const json& c) {
  config::VisionConfig v;
  v.image_size = c["size"].get<int64_t>();
  v.preprocess = c["preprocess"].get<std::string>();
  v.interpolation = c["interpolation"].get<std::string>();
  v.norm = c["norm"].get<std::string>();
  return image_options(v);
}

bool is_jpeg(const std::string& name) {
  return name.size() > 4 && name.substr(name.size() - 4) == ".jpg";
}

// Expected normalised value of an 8-bit level in channel c, computed as ToTensor + Normalize do.
float normalised(int level, int c, Normalization n) {
  const NormStats s = norm_stats(n);
  return (static_cast<float>(level) / 255.0f - s.mean[c]) / s.std[c];
}

// Every pixel of `t` [3, S, S] equals the normalised colour `rgb`.
void expect_uniform(const torch::Tensor& t, std::array<int, 3> rgb, Normalization n,
                    const std::string& what) {
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(t[c].min().item<float>(), normalised(rgb[c], c, n)) << what << " channel " << c;
    EXPECT_EQ(t[c].max().item<float>(), normalised(rgb[c], c, n)) << what << " channel " << c;
  }
}

TEST_F(ImageReference, DecodingEqualsPilConvertRgb) {
  // PNG (8-bit of every colour type, 16-bit scaled as documented) exactly. JPEG goes through
  // another libjpeg-turbo build (Debian's vs the one in Pillow's wheel); both use the default islow
  // IDCT and fancy upsampling and agree exactly here (0 levels); one level is allowed for builds
  // that do not.
  for (const auto& name : manifest_["images"]) {
    const std::string n = name.get<std::string>();
    const RgbImage img = decode_rgb(file(n));
    const torch::Tensor want = ref("decoded/" + n);
    ASSERT_EQ(as_tensor(img).sizes(), want.sizes()) << n;
    const int64_t d = max_diff(as_tensor(img), want);
    EXPECT_LE(d, is_jpeg(n) ? 1 : 0) << n;
    if (is_jpeg(n)) std::cout << n << ": decode max diff vs PIL " << d << " levels\n";
  }
}

TEST_F(ImageReference, ResizeAndPreprocessEqualPillowBitForBit) {
  // From PIL's decoded pixels, so only resampling, padding, cropping and normalisation are
  // compared.
  int checked = 0;
  for (const auto& c : manifest_["cases"]) {
    const std::string key = c["key"].get<std::string>();
    const ImageOptions o = options_of(c);
    const RgbImage in = from_tensor(ref("decoded/" + c["image"].get<std::string>()));
    const RgbImage out = preprocess_rgb(in, o);
    ASSERT_EQ(out.height, o.size) << key;
    ASSERT_EQ(out.width, o.size) << key;
    EXPECT_EQ(max_diff(as_tensor(out), ref("u8/" + key)), 0) << key;
    EXPECT_TRUE(torch::equal(to_tensor(out, o.norm), ref("norm/" + key))) << key;
    ++checked;
  }
  EXPECT_EQ(checked, 78);
}

TEST_F(ImageReference, ResizeEqualsPillowForEveryShapeKind) {
  // down, up, mixed, one axis, and both sides of Pillow 13's vertical-first rule
  const RgbImage src = from_tensor(ref("decoded/rgb_97x61.png"));
  ASSERT_EQ(src.width, 97);
  for (const auto& r : manifest_["resizes"]) {
    const std::string key = r["key"].get<std::string>();
    const auto in =
        r["interpolation"] == "bicubic" ? Interpolation::kBicubic : Interpolation::kBilinear;
    const RgbImage out = resize(src, r["width"].get<int64_t>(), r["height"].get<int64_t>(), in);
    const torch::Tensor want = ref("resize/" + key);
    ASSERT_EQ(as_tensor(out).sizes(), want.sizes()) << key;
    EXPECT_EQ(max_diff(as_tensor(out), want), 0) << key;
  }
  EXPECT_EQ(manifest_["resizes"].size(), 28u);
}

TEST_F(ImageReference, LoadImageMatchesTheReferencePipeline) {
  // File -> [3, S, S]: exact for PNG (and for JPEG here); a JPEG decoder that is one level off
  // moves a bicubic output by at most two levels = 2 / (255 * 0.224) < 0.036 in normalised units.
  for (const auto& c : manifest_["cases"]) {
    const std::string key = c["key"].get<std::string>(), name = c["image"].get<std::string>();
    const torch::Tensor x = load_image(file(name), options_of(c));
    const torch::Tensor want = ref("norm/" + key);
    ASSERT_EQ(x.sizes(), want.sizes()) << key;
    EXPECT_EQ(x.scalar_type(), torch::kFloat32);
    EXPECT_LE((x - want).abs().max().item<float>(), is_jpeg(name) ? 0.036f : 0.0f) << key;
  }
}

TEST_F(ImageReference, GreyscaleIsReplicatedToThreeChannels) {
  ImageOptions o;
  o.size = 7;
  expect_uniform(load_image(file("const_gray_77.png"), o), {77, 77, 77}, o.norm, "grey 77");
}

TEST_F(ImageReference, RgbaDropsAlphaLikePil) {
  // fully transparent pixels keep their colour: not composited onto black or white
  ImageOptions o;
  o.size = 5;
  o.norm = Normalization::kClip;
  expect_uniform(load_image(file("const_rgba_transparent.png"), o), {10, 200, 30}, o.norm,
                 "transparent rgba");
}

TEST_F(ImageReference, SixteenBitPngIsScaledNotClipped) {
  ImageOptions o;
  o.size = 6;
  expect_uniform(load_image(file("const_gray16_65535.png"), o), {255, 255, 255}, o.norm, "65535");
  expect_uniform(load_image(file("const_gray16_25700.png"), o), {100, 100, 100}, o.norm,
                 "100 * 257");
  expect_uniform(load_image(file("const_rgb16.png"), o), {255, 0, 100}, o.norm, "rgb16");
  const RgbImage full = decode_rgb(file("const_gray16_65535.png"));
  EXPECT_EQ(full.height, 20);
  EXPECT_EQ(full.width, 30);
}

TEST_F(ImageReference, JpegDecodesToItsColour) {
  const RgbImage img = decode_rgb(file("const_rgb.jpg"));
  ASSERT_EQ(img.width, 30);
  ASSERT_EQ(img.height, 20);
  const torch::Tensor t = as_tensor(img).to(torch::kInt);
  const std::array<int, 3> want{10, 200, 30};
  for (int c = 0; c < 3; ++c)
    EXPECT_LE((t.select(2, c) - want[c]).abs().max().item<int>(), 3) << c;  // lossy
}

TEST_F(ImageReference, HeaderSizeReadsPngAndJpegWithoutDecoding) {
  auto bytes = [](const std::string& path) {
    const std::string s = testing::read_text(path);
    return std::vector<uint8_t>(s.begin(), s.end());
  };
  EXPECT_EQ(header_size(bytes(file("rgb_300x200.png"))), (std::pair<int64_t, int64_t>{300, 200}));
  EXPECT_EQ(header_size(bytes(file("const_rgb.jpg"))), (std::pair<int64_t, int64_t>{30, 20}));
  EXPECT_EQ(header_size(bytes(file("const_gray16_65535.png"))), (std::pair<int64_t, int64_t>{30, 20}));
  EXPECT_FALSE(header_size(std::vector<uint8_t>{'G', 'I', 'F', '8'}).has_value());
  EXPECT_FALSE(header_size(std::vector<uint8_t>{0xFF, 0xD8, 0xFF}).has_value()) << "cut short";
  // bytes before a marker are skipped, as libjpeg skips them (fuzz_image: a 53736 x 14895 frame behind
  // such bytes was decoded, 2.4 GB); the picture still decodes
  std::vector<uint8_t> jpg = bytes(file("const_rgb.jpg"));
  ASSERT_EQ(jpg[2], 0xFF);
  const size_t after_first_segment = 4 + (size_t{jpg[4]} << 8 | jpg[5]);  // SOI, then APPn / DQT: FF xx len
  jpg.insert(jpg.begin() + static_cast<std::ptrdiff_t>(after_first_segment), {0x1f, 0x20, 0x00, 0x41});
  EXPECT_EQ(header_size(jpg), (std::pair<int64_t, int64_t>{30, 20}));
  const std::string junk = dir_->write("junk_before_marker.jpg", std::string(jpg.begin(), jpg.end()));
  EXPECT_EQ(decode_rgb(junk, 30 * 20).height, 20);
  // a scan before any frame header: no size (the decoder refuses the file)
  EXPECT_FALSE(header_size(std::vector<uint8_t>{0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xFF, 0xFF, 0xFF}).has_value());
  // an APPn / COM segment whose length is below 2 skips nothing in libjpeg, and the frame behind it
  // counts (fuzz_image: found a frame there that the walk had given up on)
  EXPECT_EQ(header_size(std::vector<uint8_t>{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x00, 0xFF, 0xFE, 0x00, 0x01, 0xFF, 0xC0, 0x00, 0x11, 0x08,
                                             0x30, 0x39, 0xD4, 0x31, 0x03}),
            (std::pair<int64_t, int64_t>{54321, 12345}));
  // PNM as OpenCV's PxM reader reads it: whitespace and comments before each number
  auto str = [](std::string_view s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  EXPECT_EQ(header_size(str("P6\n# made by hand\r 640\t\v480\n255\n")), (std::pair<int64_t, int64_t>{640, 480}));
  EXPECT_EQ(header_size(str("P1 3 2 010101")), (std::pair<int64_t, int64_t>{3, 2}));
  EXPECT_FALSE(header_size(str("P6\n640 x 480\n255\n")).has_value()) << "a byte OpenCV refuses";
  EXPECT_FALSE(header_size(str("P6 640 99999999999 255")).has_value()) << "above INT_MAX: OpenCV refuses";
  EXPECT_FALSE(header_size(str("P6 640")).has_value()) << "cut short";
  EXPECT_FALSE(header_size(str("P7\nWIDTH 4\n")).has_value()) << "PAM is not read";
}

TEST_F(ImageReference, OtherFormatsAreRefusedBeforeTheDecoderAllocates) {
  // fuzz_image: a header of a format whose size was not read (OpenCV decodes BMP, TIFF, WebP, ...)
  // made OpenCV allocate 2.4 GB before reading a pixel. Such files are refused before decoding.
  std::string bmp("BM", 2);
  bmp += std::string(16, '\0');
  for (uint32_t v : {30000u, 30000u}) for (int shift : {0, 8, 16, 24}) bmp += static_cast<char>((v >> shift) & 0xFF);
  bmp += std::string(40, '\0');
  const std::string p = dir_->write("huge.bmp", bmp);
  try {
    decode_rgb(p);
    FAIL() << "a BMP header went to the decoder";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), p);
    EXPECT_NE(std::string(e.what()).find("not a PNG, JPEG or PNM"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("convert other formats to PNG or JPEG"), std::string::npos) << e.hint();
  }
  // a PNM over the limit is refused from its header, one within it decodes
  EXPECT_THROW(decode_rgb(dir_->write("huge.ppm", "P6 20000 20000 255\n"), 89478485), DataError);
}

TEST_F(ImageReference, PicturesOverThePixelLimitAreRefusedBeforeDecoding) {
  // issue 20: a 20000 x 20000 PNG was decoded whole (2.8 GB, 8-19 s per picture). Only its header
  // here: refused from the header (decoding would fail differently)
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  for (int v : {20000, 20000}) png += {static_cast<char>(0), static_cast<char>(0), static_cast<char>(v >> 8),
                                       static_cast<char>(v & 0xFF)};
  png += std::string(20, '\0');
  const std::string huge = dir_->write("huge.png", png);
  try {
    load_image(huge, {});
    FAIL() << "a 400 Mpx picture was not refused";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), huge);
    EXPECT_NE(std::string(e.what()).find("image of 20000 x 20000 = 400000000 pixels exceeds vision.max_image_pixels = 89478485"),
              std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("data.on_bad_sample: skip"), std::string::npos) << e.hint();
  }
  // the limit is the config's: a real 300 x 200 PNG and a JPEG against a limit below them
  ImageOptions small;
  small.max_pixels = 300 * 200 - 1;
  EXPECT_THROW(load_image(file("rgb_300x200.png"), small), DataError);
  small.max_pixels = 300 * 200;
  EXPECT_NO_THROW(load_image(file("rgb_300x200.png"), small));
  EXPECT_THROW(decode_rgb(file("const_rgb.jpg"), 30 * 20 - 1), DataError);
}

TEST_F(ImageReference, FilesLargerThanAPictureWithinTheLimitAreRefusedBeforeReading) {
  // A file was read whole before its header was looked at: a 3 GiB file named .png took 3 GB (and
  // its size did not fit the int cv::imdecode takes). Sparse files here: nothing is written to disk.
  auto sparse = [&](const std::string& name, uintmax_t bytes) {
    const std::string p = dir_->write(name, std::string("\x89PNG\r\n\x1a\n", 8));
    std::filesystem::resize_file(p, bytes);
    return p;
  };
  const std::string huge = sparse("huge-file.png", uintmax_t{3} << 30);
  try {
    decode_rgb(huge);
    FAIL() << "a 3 GiB file was read";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), huge);
    EXPECT_NE(std::string(e.what()).find("image file is 3072 MiB, more than a picture within "
                                         "vision.max_image_pixels = 89478485 can be (2047 MiB)"),
              std::string::npos) << e.what();
  }
  // the bound follows the limit: 100 pixels -> 24 bytes each + 64 MiB of metadata
  const std::string just_over = sparse("over.png", (uintmax_t{64} << 20) + 2401);
  try {
    decode_rgb(just_over, 100);
    FAIL() << "a file one byte over the bound was read";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("more than a picture within vision.max_image_pixels = 100 can be (64 MiB)"),
              std::string::npos) << e.what();
  }
  // at the bound it is read, and refused for what it holds (an IHDR cut short)
  try {
    decode_rgb(sparse("at.png", (uintmax_t{64} << 20) + 2400), 100);
    FAIL() << "a PNG without its IHDR decoded";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("not a PNG, JPEG or PNM"), std::string::npos) << e.what();
  }
}

TEST_F(ImageReference, HeaderSizesWhoseProductOverflowsAreRefused) {
  // found by fuzz_image: a PNG header's sizes are 32-bit each, and their product in int64 overflowed
  // (UBSan: signed integer overflow) instead of being compared with the limit
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  for (uint32_t v : {4143972598u, 4278190085u})
    for (int shift : {24, 16, 8, 0}) png += static_cast<char>((v >> shift) & 0xFF);
  png += std::string(20, '\0');
  try {
    load_image(dir_->write("overflow.png", png), {});
    FAIL() << "a 1.8e19-pixel header was not refused";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("image of 4143972598 x 4278190085 = 17728702481275290830 pixels exceeds"),
              std::string::npos) << e.what();
  }
}

TEST_F(ImageReference, AStripThatPadsOrScalesPastThePixelLimitIsRefused) {
  // found by fuzz_image: a 1 x N picture is under the pixel limit, but padded to a square (or scaled
  // to short side S before the centre crop) it asked for 12 GB
  const std::string strip = file("strip_4000x1.png");
  ImageOptions o;
  o.preprocess = Preprocess::kPadSquare;
  o.max_pixels = 4000 * 4000 - 1;
  try {
    load_image(strip, o);
    FAIL() << "a 4000 x 4000 padded square passed a limit of 4000^2 - 1";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), strip);
    EXPECT_NE(std::string(e.what()).find("image of 4000 x 1 becomes 16000000 pixels padded to a square"),
              std::string::npos) << e.what();
  }
  o.max_pixels = 4000 * 4000;
  EXPECT_EQ(load_image(strip, o).sizes(), (std::vector<int64_t>{3, o.size, o.size}));
  o.preprocess = Preprocess::kResizeCenterCrop;  // 224 x (224 * 4000) before the crop
  o.max_pixels = 89478485;
  EXPECT_THROW(load_image(strip, o), DataError);
  o.preprocess = Preprocess::kResize;  // straight to 224 x 224
  EXPECT_NO_THROW(load_image(strip, o));
}

TEST_F(ImageReference, TruncatedPngIsADataError) {
  const std::string whole = testing::read_text(file("rgb_300x200.png"));
  const std::string cut = dir_->write("cut.png", whole.substr(0, whole.size() / 2));
  EXPECT_THROW(decode_rgb(cut), DataError);
}

void write_ppm(const std::string& path, int64_t w, int64_t h,
               const std::function<std::array<uint8_t, 3>(int64_t, int64_t)>& px) {
  std::ofstream f(path, std::ios::binary);
  f << "P6\n" << w << " " << h << "\n255\n";
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const auto p = px(x, y);
      f.write(reinterpret_cast<const char*>(p.data()), 3);
    }
  }
}

TEST(Image, CorruptFileIsADataErrorNamingThePath) {
  testing::TempDir d;
  for (const std::string& bytes :
       {std::string("this is not an image"), std::string("\x89PNG\r\n\x1a\n garbage", 17)}) {
    const std::string p = d.write("bad.png", bytes);
    try {
      load_image(p, {});
      FAIL() << "no error for " << bytes;
    } catch (const DataError& e) {
      EXPECT_EQ(e.path(), p);
      EXPECT_NE(std::string(e.what()).find("cannot decode"), std::string::npos) << e.what();
      EXPECT_FALSE(e.hint().empty());
    }
  }
  EXPECT_THROW(decode_rgb(d.write("empty.png", "")), DataError);
  EXPECT_THROW(decode_rgb(d.path()), DataError);  // a directory
}

TEST_F(ImageReference, AnImageFromAPipeDecodesAsTheFileAndIsBounded) {
  // `mmtune chat --image <(curl ...)` hands over a pipe: it was refused as "not a regular file".
  // Now it is read as the file is, within the same bound (a pipe has no size to check up front).
  const std::string png = testing::read_text(file("rgb_300x200.png"));
  auto through_fifo = [&](const std::string& name, const std::string& bytes, int64_t max_pixels) {
    const std::string fifo = dir_->path() + "/" + name;
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
    std::thread writer([&] {
      std::ofstream(fifo, std::ios::binary) << bytes;  // blocks until the reader opens it
    });
    std::string error;
    RgbImage img;
    try {
      img = decode_rgb(fifo, max_pixels);
    } catch (const DataError& e) {
      error = e.what();
    }
    writer.join();
    if (error.empty()) {
      const RgbImage want = decode_rgb(file("rgb_300x200.png"));
      EXPECT_EQ(img.width, want.width);
      EXPECT_EQ(img.height, want.height);
      EXPECT_EQ(img.pixels, want.pixels) << name;
    } else {
      // 10 pixels -> 240 bytes + 64 MiB: a stream past that stops being read there
      EXPECT_GT(bytes.size(), (uint64_t{64} << 20) + 240) << error;
      EXPECT_NE(error.find("has more than 64 MiB, the most a picture within vision.max_image_pixels = 10 can be"),
                std::string::npos) << error;
    }
  };
  through_fifo("picture.fifo", png, 89478485);
  std::string huge = png;
  huge.resize((uint64_t{64} << 20) + 100000, '\0');  // trailing bytes after IEND: a decoder would ignore them
  // the reader stops early, so the writer's last writes meet a closed pipe: EPIPE, not SIGPIPE
  const auto old_handler = std::signal(SIGPIPE, SIG_IGN);
  through_fifo("endless.fifo", huge, 10);
  std::signal(SIGPIPE, old_handler);
}

TEST(Image, MissingFileIsADataErrorWithAHint) {
  const std::string p = "/nonexistent/dir/image.png";
  try {
    decode_rgb(p);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), p);
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("on_bad_sample"), std::string::npos) << e.hint();
  }
}

TEST(Image, PadSquareFillsWithTheMeanColourAndCentres) {
  // 20 x 10 red image padded to 20 x 20 at rows 5..14; S = 20 means no resampling, so exact.
  testing::TempDir d;
  const std::string p = d.path() + "/red.ppm";
  write_ppm(p, 20, 10, [](int64_t, int64_t) { return std::array<uint8_t, 3>{255, 0, 0}; });
  ImageOptions o;
  o.size = 20;
  o.preprocess = Preprocess::kPadSquare;
  o.norm = Normalization::kClip;
  const RgbImage out = preprocess_rgb(decode_rgb(p), o);
  ASSERT_EQ(out.width, 20);
  const std::array<uint8_t, 3> fill{122, 116, 104};  // int(255 * CLIP mean), LLaVA's background
  for (int64_t y = 0; y < 20; ++y) {
    const bool image_row = y >= 5 && y < 15;
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(out.pixels[(y * 20 + 7) * 3 + c], image_row ? (c == 0 ? 255 : 0) : fill[c])
          << y << " " << c;
    }
  }
}

TEST(Image, CenterCropKeepsTheMiddleOfTheLongSide) {
  // 31 x 10, S = 10: the short side already fits, long side int(10 * 31 / 10) = 31, crop at
  // (31 - 10) // 2 = 10 -> source columns 10..19.
  testing::TempDir d;
  const std::string p = d.path() + "/cols.ppm";
  write_ppm(p, 31, 10, [](int64_t x, int64_t y) {
    return std::array<uint8_t, 3>{uint8_t(x * 8), uint8_t(y), 7};
  });
  ImageOptions o;
  o.size = 10;
  o.preprocess = Preprocess::kResizeCenterCrop;
  const RgbImage out = preprocess_rgb(decode_rgb(p), o);
  for (int64_t y = 0; y < 10; ++y) {
    for (int64_t x = 0; x < 10; ++x) {
      EXPECT_EQ(int(out.pixels[(y * 10 + x) * 3 + 0]), (x + 10) * 8);
      EXPECT_EQ(int(out.pixels[(y * 10 + x) * 3 + 1]), y);
    }
  }
}

TEST(Image, ResizeKeepsConstantsAndIsIdentityAtTheSameSize) {
  RgbImage flat{13, 29, std::vector<uint8_t>(13 * 29 * 3)};
  for (size_t i = 0; i < flat.pixels.size(); ++i)
    flat.pixels[i] = i % 3 == 0 ? 201 : i % 3 == 1 ? 3 : 97;
  for (Interpolation in : {Interpolation::kBicubic, Interpolation::kBilinear}) {
    for (auto [w, h] : {std::pair<int64_t, int64_t>{224, 224}, {7, 5}, {29, 40}, {100, 13}}) {
      const RgbImage r = resize(flat, w, h, in);
      ASSERT_EQ(r.pixels.size(), static_cast<size_t>(w * h * 3));
      for (size_t i = 0; i < r.pixels.size(); ++i)
        ASSERT_EQ(r.pixels[i], flat.pixels[i % 3]) << w << "x" << h;
    }
  }
  RgbImage noise{9, 11, std::vector<uint8_t>(9 * 11 * 3)};
  for (size_t i = 0; i < noise.pixels.size(); ++i)
    noise.pixels[i] = static_cast<uint8_t>(i * 37 + 11);
  EXPECT_EQ(resize(noise, 11, 9, Interpolation::kBicubic).pixels, noise.pixels);
}

TEST(Image, OptionsComeFromTheVisionConfig) {
  config::VisionConfig v;
  ImageOptions o = image_options(v);  // LaVIN's defaults
  EXPECT_EQ(o.size, 224);
  EXPECT_EQ(o.preprocess, Preprocess::kResize);
  EXPECT_EQ(o.interpolation, Interpolation::kBicubic);
  EXPECT_EQ(o.norm, Normalization::kImagenet);
  v.image_size = 336;
  v.preprocess = "pad_square";
  v.interpolation = "bilinear";
  v.norm = "clip";
  o = image_options(v);
  EXPECT_EQ(o.size, 336);
  EXPECT_EQ(o.preprocess, Preprocess::kPadSquare);
  EXPECT_EQ(o.interpolation, Interpolation::kBilinear);
  EXPECT_EQ(o.norm, Normalization::kClip);
  EXPECT_FLOAT_EQ(norm_stats(o.norm).std[2], 0.27577711f);
  v.preprocess = "crop";
  EXPECT_THROW(image_options(v), Error);
}

}  // namespace test_image
}  // namespace mmtune::data
