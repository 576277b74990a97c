#include "fixtures.h"

#include <torch/torch.h>

namespace mmtune::testing {

data::Batch mixed_image_batch(int64_t slots, int64_t image_size, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t T = 1 + 2 + slots + 9;
  data::Batch x;
  x.tokens = torch::randint(3, 400, {3, T});
  x.tokens.select(1, 0).fill_(1);  // BOS
  x.attention_mask = torch::ones({3, T}, torch::kBool);
  x.image_slots = torch::zeros({3, T}, torch::kBool);
  for (int64_t r : {0, 2}) {
    x.image_slots[r].narrow(0, 3, slots).fill_(true);
    x.tokens[r].narrow(0, 3, slots).fill_(0);
  }
  x.attention_mask[1].narrow(0, T - 4, 4).fill_(false);  // row 1: 4 padding positions
  x.tokens[1].narrow(0, T - 4, 4).fill_(0);
  x.labels = x.tokens.clone();
  x.labels.narrow(1, 0, T - 5).fill_(data::kIgnoreIndex);  // supervise the last positions only
  x.labels.masked_fill_(~x.attention_mask, data::kIgnoreIndex);
  x.images = torch::randn({3, 3, image_size, image_size});
  x.images[1].zero_();  // the text-only sample's zero image
  x.has_image = torch::tensor({1, 0, 1}, torch::kLong);
  return x;
}

}  // namespace mmtune::testing
