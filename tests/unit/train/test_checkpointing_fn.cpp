// Activation checkpointing: a stack of frozen MLP blocks with trainable bottleneck adapters gives
// the same loss and the same input and parameter gradients with and without checkpointing, dropout
// included (the RNG state is replayed), and a forgotten trainable tensor is an error.
#include <gtest/gtest.h>

#include <mmtune/train/checkpointing_fn.h>

namespace mmtune::train {
namespace test_checkpointing_fn {

/// A frozen MLP block (fc1, fc2) with a trainable adapter x + up(silu(down(x))) and dropout.
struct BlockImpl : torch::nn::Module {
  BlockImpl(int64_t d, double p) : drop(p) {
    fc1 = register_module("fc1", torch::nn::Linear(d, 2 * d));
    fc2 = register_module("fc2", torch::nn::Linear(2 * d, d));
    down = register_module("down", torch::nn::Linear(d, 3));
    up = register_module("up", torch::nn::Linear(3, d));
    for (auto& p : fc1->parameters()) p.requires_grad_(false);
    for (auto& p : fc2->parameters()) p.requires_grad_(false);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = x + up(torch::silu(down(x)));
    h = torch::dropout(h, drop, is_training());
    return h + fc2(torch::gelu(fc1(h)));
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, down{nullptr}, up{nullptr};
  double drop;
};
TORCH_MODULE(Block);

struct Grads {
  torch::Tensor loss, x_grad;
  std::vector<torch::Tensor> param_grads;
};

Grads run(bool use_checkpoint, double dropout, uint64_t seed) {
  torch::manual_seed(0);
  std::vector<Block> blocks;
  for (int i = 0; i < 3; ++i) blocks.emplace_back(8, dropout);
  torch::manual_seed(seed);
  torch::Tensor x = torch::randn({4, 5, 8}).set_requires_grad(true);
  torch::Tensor h = x * 1.5;  // a non-leaf input, as inside a model
  for (auto& b : blocks) {
    if (use_checkpoint) {
      Block blk = b;  // the holder is a shared pointer: captured by value
      h = checkpoint([blk](const torch::Tensor& in) mutable { return blk->forward(in); }, h,
                     trainable_tensors(*b));
    } else {
      h = b->forward(h);
    }
  }
  torch::Tensor loss = (h * h).mean() + torch::randn({1}).sum() * 0;  // RNG use after the blocks
  loss.backward();
  Grads g;
  g.loss = loss.detach();
  g.x_grad = x.grad().clone();
  for (auto& b : blocks) {
    for (const auto& p : b->parameters()) {
      g.param_grads.push_back(p.requires_grad() ? p.grad().clone() : torch::Tensor());
    }
  }
  return g;
}

// Bitwise: the recomputation runs the same kernels on the same shapes in the same order as the
// plain forward, and each gradient is accumulated from the same terms in the same order, so no
// fp32 rounding can differ, on any CPU and at any fixed thread count.
void expect_same(const Grads& a, const Grads& b) {
  EXPECT_TRUE(torch::equal(a.loss, b.loss));
  EXPECT_TRUE(torch::equal(a.x_grad, b.x_grad));
  ASSERT_EQ(a.param_grads.size(), b.param_grads.size());
  int trainable = 0;
  for (size_t i = 0; i < a.param_grads.size(); ++i) {
    ASSERT_EQ(a.param_grads[i].defined(), b.param_grads[i].defined()) << "parameter " << i;
    if (!a.param_grads[i].defined()) continue;
    ++trainable;
    EXPECT_GT(a.param_grads[i].abs().sum().item<double>(), 0.0)
        << "parameter " << i << " got no gradient";
    EXPECT_TRUE(torch::equal(a.param_grads[i], b.param_grads[i])) << "parameter " << i;
  }
  EXPECT_EQ(trainable, 3 * 4);  // down/up weight+bias per block
}

TEST(CheckpointingFn, GradientsEqualWithoutCheckpointing) {
  expect_same(run(false, 0.0, 7), run(true, 0.0, 7));
}

TEST(CheckpointingFn, DropoutIsReplayedInTheRecomputation) {
  const Grads plain = run(false, 0.3, 11), ckpt = run(true, 0.3, 11);
  expect_same(plain, ckpt);
  // and the dropout really drew random numbers: another seed gives another loss
  EXPECT_GT((run(false, 0.3, 12).loss - plain.loss).abs().item<double>(), 1e-6);
}

TEST(CheckpointingFn, TheCallersRandomStreamContinuesAsWithoutCheckpointing) {
  auto draw_after = [](bool use_checkpoint) {
    torch::manual_seed(3);
    Block b(8, 0.5);
    torch::Tensor x = torch::randn({2, 8}).set_requires_grad(true);
    Block blk = b;
    torch::Tensor y =
        use_checkpoint
            ? checkpoint([blk](const torch::Tensor& in) mutable { return blk->forward(in); }, x,
                         trainable_tensors(*b))
            : b->forward(x);
    y.sum().backward();  // the recomputation must not advance the caller's generator
    return torch::rand({4});
  };
  EXPECT_TRUE(torch::equal(draw_after(false), draw_after(true)));
}

TEST(CheckpointingFn, ForgottenTrainableTensorIsAnError) {
  Block b(8, 0.0);
  torch::Tensor x = torch::randn({2, 8}).set_requires_grad(true);
  Block blk = b;
  // params omitted: the adapter's weights would silently get no gradient
  torch::Tensor y =
      checkpoint([blk](const torch::Tensor& in) mutable { return blk->forward(in); }, x, {});
  try {
    y.sum().backward();
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not in `params`"), std::string::npos) << e.what();
  }
}

TEST(CheckpointingFn, UnderNoGradItJustRunsOnce) {
  Block b(8, 0.0);
  int calls = 0;
  Block blk = b;
  torch::NoGradGuard ng;
  torch::Tensor y = checkpoint(
      [blk, &calls](const torch::Tensor& in) mutable {
        ++calls;
        return blk->forward(in);
      },
      torch::randn({2, 8}), trainable_tensors(*b));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(y.requires_grad());
}

TEST(CheckpointingFn, SeveralInputsAndOutputsAndAnInputWithoutGradient) {
  torch::manual_seed(5);
  torch::Tensor w = torch::randn({6, 6}).set_requires_grad(true);
  torch::Tensor a = torch::randn({3, 6}).set_requires_grad(true);
  torch::Tensor mask = torch::rand({3, 6}).gt(0.5).to(torch::kFloat32);  // no gradient wanted
  auto fn = [w](const std::vector<torch::Tensor>& in) {
    torch::Tensor h = torch::tanh(in[0].matmul(w)) * in[1];
    return std::vector<torch::Tensor>{h, h.sum(-1)};
  };
  auto loss_of = [](const std::vector<torch::Tensor>& o) {
    return (o[0] * o[0]).sum() + o[1].pow(3).sum();
  };
  loss_of(fn({a, mask})).backward();
  const auto ga = a.grad().clone(), gw = w.grad().clone();
  a.mutable_grad() = torch::Tensor();
  w.mutable_grad() = torch::Tensor();
  const auto out = checkpoint(fn, {a, mask}, {w});
  ASSERT_EQ(out.size(), 2u);
  loss_of(out).backward();
  EXPECT_TRUE(torch::equal(a.grad(), ga));  // bitwise, as expect_same says
  EXPECT_TRUE(torch::equal(w.grad(), gw));
  // only the first output used: the second gets no gradient, which is fine
  a.mutable_grad() = torch::Tensor();
  checkpoint(fn, {a, mask}, {w})[0].sum().backward();
  EXPECT_TRUE(a.grad().defined());
}

}  // namespace test_checkpointing_fn
}  // namespace mmtune::train
