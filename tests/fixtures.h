// Inputs shared by the model tests of several families (unit and integration executables).
#pragma once

#include <cstdint>

#include <mmtune/data/batch.h>

namespace mmtune::testing {

/// A right-padded mixed batch in the data/batch.h layout, drawn from torch's generator seeded
/// with `seed`: rows 0 and 2 carry an image (BOS, 2 prefix tokens, `slots` image slots, 9 text
/// tokens), row 1 is text-only with 4 padding positions at the end and a zero image. Token ids
/// are arbitrary ids of the tiny 400-token vocabulary; the last 4 real tokens of each row are
/// supervised. tokens/labels [3, T] (T = 12 + slots), images [3, 3, image_size, image_size] ~ N(0, 1).
data::Batch mixed_image_batch(int64_t slots, int64_t image_size = 32, uint64_t seed = 7);

}  // namespace mmtune::testing
