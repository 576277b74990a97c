// Images for the vision tower: decode (OpenCV) -> 8-bit RGB -> the encoder's preprocessing ->
// normalised [3, S, S] float32.
//
// The pixels equal what the Python recipes feed their encoders, which all go through PIL:
//   - decode as PIL's Image.open(path).convert('RGB'): grey is replicated to three channels, alpha
//     is dropped (not composited onto a background), palette images map to their colours, EXIF
//     orientation is ignored (PIL does not apply it either);
//   - 16-bit samples are scaled to 8 bits with rounding, round(v * 255 / 65535), so 65535 -> 1.0
//   and
//     a 16-bit PNG that holds 8-bit data (v = x * 257) gives exactly the 8-bit image. (PIL itself
//     clips 16-bit grey to 255 in convert('RGB') and keeps the high byte of 16-bit RGB; we scale
//     instead, as the data intends.)
//   - resizing is Pillow's Image.resize re-implemented (separable filter, widened by the scale
//     factor when downscaling = antialiasing, 8-bit fixed point with rounding between the two
//     passes, and Pillow 13's choice of which pass runs first): equal to Pillow 13 bit for bit
//     (Pillow <= 12, which LaVIN and LLaVA ran, always resized horizontally first: the same up to
//     one grey level on some pixels). OpenCV's cv::resize does not antialias and differs from PIL
//     by up to 35 grey levels (mean 5.5) on a 300x200 -> 224 bicubic downscale of the test pattern
//     and 12-14 levels on upscales (another cubic kernel, a = -0.75), i.e. up to 0.6 in
//     normalised units; scripts/reference/image_reference.py is the oracle,
//     tests/unit/data/test_image.cpp the check;
//   - preprocessing (vision.preprocess):
//       resize              LaVIN, spec §1.4: exactly S x S, aspect not kept, no crop
//                           (torchvision Resize((S, S)));
//       pad_square          LLaVA-1.5 expand2square: pad the short side to a square with the mean
//                           colour int(mean * 255), image centred at offset (long - short) // 2,
//                           then S x S;
//       resize_center_crop  CLIP (Hugging Face CLIPImageProcessor): short side to S, long side to
//                           int(S * long / short), centre crop at offset (side - S) // 2;
//   - ToTensor + Normalize in float32: (p / 255 - mean) / std with `imagenet`
//     (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) or `clip` (0.48145466, 0.4578275, 0.40821073) /
//     (0.26862954, 0.26130258, 0.27577711) statistics.
// All functions are thread-safe (the data loader calls them from its workers).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include <mmtune/config/config.h>

namespace mmtune::data {

enum class Preprocess { kResize, kPadSquare, kResizeCenterCrop };
enum class Interpolation { kBicubic, kBilinear };
enum class Normalization { kImagenet, kClip };

/// How images become encoder inputs (from the `vision` config section).
struct ImageOptions {
  int64_t size = 224;  // S: the encoder's input side
  Preprocess preprocess = Preprocess::kResize;
  Interpolation interpolation = Interpolation::kBicubic;
  Normalization norm = Normalization::kImagenet;
  int64_t max_pixels = 89478485;  // vision.max_image_pixels: checked from the file header, before decoding
};

/// vision.image_size / preprocess / interpolation / norm. Throws mmtune::Error on a name that the
/// config validation should have rejected.
ImageOptions image_options(const config::VisionConfig& vision);

/// Per-channel mean and std of a normalisation (RGB order).
struct NormStats {
  std::array<float, 3> mean;
  std::array<float, 3> std;
};
NormStats norm_stats(Normalization norm);

/// 8-bit RGB pixels, row-major and interleaved: pixels[(y * width + x) * 3 + c].
struct RgbImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;
};

/// Decodes a PNG, JPEG or PNM (PPM / PGM / PBM) file into 8-bit RGB, as described above. Throws
/// mmtune::DataError naming `path` when the file is missing, unreadable, empty, of another format
/// (OpenCV reads more, but their headers are not checked), of an unsupported pixel depth, or
/// larger than `max_pixels` (the size is read from the header, before any pixel is decoded), or a
/// file larger than such a picture can be (checked before it is read), with a hint.
RgbImage decode_rgb(const std::string& path, int64_t max_pixels = ImageOptions{}.max_pixels);

/// The bytes of the image file at `path`, its size first checked against what a picture within
/// `max_pixels` can take (a pipe is read up to that bound). Throws mmtune::DataError naming `path`
/// (missing, not a file, too large, unreadable, empty), as decode_rgb does.
std::string read_image_file(const std::string& path, int64_t max_pixels = ImageOptions{}.max_pixels);

/// Width and height from a PNG's IHDR, a JPEG's SOF or a PNM header, read as the decoders read
/// them, without decoding; nullopt for other formats or a header the decoder would refuse.
std::optional<std::pair<int64_t, int64_t>> header_size(std::span<const uint8_t> bytes);

/// Pillow's Image.resize(size, BICUBIC | BILINEAR) to `width` x `height`, bit-identical to
/// Pillow 13.
RgbImage resize(const RgbImage& image, int64_t width, int64_t height, Interpolation interpolation);

/// The 8-bit S x S image the encoder sees, before normalisation (resize / pad_square /
/// resize_center_crop as in `options`).
RgbImage preprocess_rgb(const RgbImage& image, const ImageOptions& options);

/// Normalised encoder input: [3, S, S] float32 (contiguous, CPU).
torch::Tensor to_tensor(const RgbImage& square, Normalization norm);

/// decode_rgb + preprocess_rgb + to_tensor: [3, S, S] float32. Throws mmtune::DataError (see
/// decode_rgb).
torch::Tensor load_image(const std::string& path, const ImageOptions& options);

}  // namespace mmtune::data
