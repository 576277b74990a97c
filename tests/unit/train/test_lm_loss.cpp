// lm_loss_sum_from_hidden (the training path: the LM head only where a label is) against
// lm_loss_sum over the full logits, written out by hand as the next-token cross-entropy.
#include <gtest/gtest.h>

#include <mmtune/data/batch.h>
#include <mmtune/train/lm_loss.h>

namespace mmtune::train {
namespace {

TEST(LmLoss, HeadAtSupervisedPositionsOnlyEqualsTheFullLogitsSum) {
  torch::manual_seed(0);
  const int64_t B = 3, T = 7, D = 5, V = 11;
  const torch::Tensor hidden = torch::randn({B, T, D}, torch::kFloat32).requires_grad_(true);
  const torch::Tensor W = torch::randn({V, D}, torch::kFloat32).requires_grad_(true);
  torch::Tensor labels = torch::randint(0, V, {B, T}, torch::kLong);
  labels.index_put_({0, torch::indexing::Slice(0, 4)}, data::kIgnoreIndex);  // a prompt
  labels.index_put_({1, torch::indexing::Slice()}, data::kIgnoreIndex);       // nothing supervised
  labels.index_put_({2, 6}, data::kIgnoreIndex);                              // padding at the end
  auto head = [&](const torch::Tensor& h) { return torch::matmul(h, W.t()); };

  const torch::Tensor full = lm_loss_sum(head(hidden), labels);
  const torch::Tensor rows = lm_loss_sum_from_hidden(hidden, labels, head);
  // by hand: sum over (b, t) with labels[b, t + 1] supervised of -log softmax(logits[b, t])[label]
  double expect = 0;
  const torch::Tensor logp = torch::log_softmax(head(hidden).to(torch::kFloat64), -1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) {
      const int64_t y = labels[b][t + 1].item<int64_t>();
      if (y != data::kIgnoreIndex) expect -= logp[b][t][y].item<double>();
    }
  EXPECT_NEAR(full.item<double>(), expect, 1e-4);  // fp32 sums of ~15 terms of ~3
  EXPECT_NEAR(rows.item<double>(), expect, 1e-4);

  const auto g_full = torch::autograd::grad({full}, {hidden, W});
  const auto g_rows = torch::autograd::grad({rows}, {hidden, W});
  EXPECT_TRUE(torch::allclose(g_full[0], g_rows[0], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(g_full[1], g_rows[1], 1e-5, 1e-6));
  EXPECT_EQ(g_rows[0][1].abs().sum().item<double>(), 0.0) << "an unsupervised row gets no gradient";
}

}  // namespace
}  // namespace mmtune::train
