// libFuzzer target: an image file through data::decode_rgb (the pixel limit read from the header
// before decoding) and data::load_image in each preprocessing mode, as train, eval, chat and serve
// read images. The limit is small here (1 Mpx) so that a header claiming more is refused
// before any pixel is decoded; a decoded image must be within it and the encoder input [3, S, S].
#include <mmtune/core/errors.h>
#include <mmtune/data/image.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  constexpr int64_t kMaxPixels = 1 << 20;
  const std::string path =
      fuzz::write_file("image", std::string_view(reinterpret_cast<const char*>(data), size));
  (void)data::header_size(std::span<const uint8_t>(data, size));
  data::RgbImage img;
  try {
    img = data::decode_rgb(path, kMaxPixels);
  } catch (const Error&) {
    return 0;
  }
  if (img.width <= 0 || img.height <= 0 || img.width * img.height > kMaxPixels ||
      img.pixels.size() != static_cast<size_t>(img.width * img.height * 3))
    fuzz::finding("decode_rgb returned an image outside its contract");
  data::ImageOptions opt;
  opt.size = 16;
  opt.max_pixels = kMaxPixels;
  // the product's path (load_image: decode, the limit on what preprocessing makes, preprocess, tensor)
  for (auto pre : {data::Preprocess::kResize, data::Preprocess::kPadSquare, data::Preprocess::kResizeCenterCrop}) {
    opt.preprocess = pre;
    torch::Tensor t;
    try {
      t = data::load_image(path, opt);
    } catch (const Error&) {
      continue;  // e.g. a strip whose padded square is over the limit
    }
    if (t.sizes() != torch::IntArrayRef({3, 16, 16})) fuzz::finding("the encoder input is not [3, S, S]");
  }
  return 0;
}
