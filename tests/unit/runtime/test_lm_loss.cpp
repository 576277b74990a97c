// runtime::lm_loss_sum_from_hidden (the training path: the LM head only where a label is) against
// runtime::lm_loss_sum over the full logits, written out by hand as the next-token cross-entropy.
#include <gtest/gtest.h>

#include <mmtune/data/batch.h>
#include <mmtune/runtime/lm_loss.h>

#include "numerics.h"

namespace mmtune::runtime {
namespace test_lm_loss {

// The loss and both gradients, computed the two ways in `dtype` from the same fp32 draws.
struct TwoWays {
  torch::Tensor full, rows;            // [1] loss sums
  torch::Tensor grad_full, grad_rows;  // d/dhidden and d/dW, flattened and concatenated
  double by_hand = 0;                  // the next-token cross-entropy written out (float64 arithmetic)
  double unsupervised_row_grad = 0;
};

TwoWays losses(torch::Dtype dtype) {
  torch::manual_seed(0);
  const int64_t B = 3, T = 7, D = 5, V = 11;
  const torch::Tensor hidden = torch::randn({B, T, D}, torch::kFloat32).to(dtype).requires_grad_(true);
  const torch::Tensor W = torch::randn({V, D}, torch::kFloat32).to(dtype).requires_grad_(true);
  torch::Tensor labels = torch::randint(0, V, {B, T}, torch::kLong);
  labels.index_put_({0, torch::indexing::Slice(0, 4)}, data::kIgnoreIndex);  // a prompt
  labels.index_put_({1, torch::indexing::Slice()}, data::kIgnoreIndex);       // nothing supervised
  labels.index_put_({2, 6}, data::kIgnoreIndex);                              // padding at the end
  auto head = [&](const torch::Tensor& h) { return torch::matmul(h, W.t()); };

  TwoWays r;
  r.full = runtime::lm_loss_sum(head(hidden), labels).to(dtype).reshape({1});
  r.rows = runtime::lm_loss_sum_from_hidden(hidden, labels, head).to(dtype).reshape({1});
  // by hand: sum over (b, t) with labels[b, t + 1] supervised of -log softmax(logits[b, t])[label]
  const torch::Tensor logp = torch::log_softmax(head(hidden).to(torch::kFloat64), -1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) {
      const int64_t y = labels[b][t + 1].item<int64_t>();
      if (y != data::kIgnoreIndex) r.by_hand -= logp[b][t][y].item<double>();
    }
  const auto g_full = torch::autograd::grad({r.full.sum()}, {hidden, W});
  const auto g_rows = torch::autograd::grad({r.rows.sum()}, {hidden, W});
  r.grad_full = torch::cat({g_full[0].reshape({-1}), g_full[1].reshape({-1})});
  r.grad_rows = torch::cat({g_rows[0].reshape({-1}), g_rows[1].reshape({-1})});
  r.unsupervised_row_grad = g_rows[0][1].abs().sum().item<double>();
  r.full = r.full.detach();
  r.rows = r.rows.detach();
  return r;
}

TEST(LmLoss, HeadAtSupervisedPositionsOnlyEqualsTheFullLogitsSum) {
  // Exact in float64 (1e-12: the same sum over other matmul shapes); in float32 the two ways and
  // the hand value agree within 4x the fp32-vs-fp64 noise of this computation (tests/numerics.h).
  const TwoWays f32 = losses(torch::kFloat32), f64 = losses(torch::kFloat64);
  EXPECT_NEAR(f64.full.item<double>(), f64.by_hand, 1e-12 * f64.by_hand);
  EXPECT_NEAR(f64.rows.item<double>(), f64.by_hand, 1e-12 * f64.by_hand);
  const double bound = testing::expect_same_result("LM loss: head at supervised rows vs full logits", f32.rows,
                                                   f32.full, f64.rows, f64.full, {}, 1e-12);
  EXPECT_NEAR(f32.full.item<double>(), f32.by_hand, bound);
  testing::expect_same_result("LM loss gradients: head at supervised rows vs full logits", f32.grad_rows,
                              f32.grad_full, f64.grad_rows, f64.grad_full, {}, 1e-12);
  EXPECT_EQ(f32.unsupervised_row_grad, 0.0) << "an unsupervised row gets no gradient";
}

}  // namespace test_lm_loss
}  // namespace mmtune::runtime
