// runtime::LoaderSource: the trainer's runtime::BatchSource over the real data::DataLoader. Seeking gives exactly the
// batches an uninterrupted loader yields from there, and the trainer runs (and resumes) on it.
#include <gtest/gtest.h>

#include "test_utils.h"
#include <mmtune/text/tokenizer.h>
#include <mmtune/train/trainer.h>

namespace mmtune::runtime {
namespace test_task {
using train::StepMetrics;
using train::Trainer;
using train::TrainerHooks;

std::shared_ptr<const text::Tokenizer> tokenizer() {
  static const std::shared_ptr<const text::Tokenizer> t =
      text::load_tokenizer(std::string(testing::kSharedDir) + "/models/stories260K/tok512.model");
  return t;
}

std::vector<data::Example> examples(int n) {
  std::vector<data::Example> out;
  for (int i = 0; i < n; ++i) {
    data::Example ex;
    ex.id = "s" + std::to_string(i);
    ex.prompt = std::string(static_cast<size_t>(i % 5 + 1), 'a') + " is?";
    ex.answer = i % 2 ? " yes" : " no";
    out.push_back(ex);
  }
  return out;
}

runtime::LoaderSource::Factory factory(int n, int64_t batch) {
  return [n, batch](data::LoaderPosition pos) {
    data::LoaderOptions o;
    o.sampler.batch_size = batch;
    o.sampler.seed = 3;
    o.num_workers = 1;
    o.collate.max_length = 64;
    o.collate.image.size = 4;
    return std::make_unique<data::DataLoader>(examples(n), tokenizer(), data::SequenceLayout{}, o,
                                              pos);
  };
}

TEST(LoaderSource, SeekYieldsTheBatchesAnUninterruptedLoaderYields) {
  runtime::LoaderSource full(factory(24, 4));
  EXPECT_EQ(full.batches_per_epoch(), 6);
  std::vector<std::vector<std::string>> all;
  for (int e = 0; e < 2; ++e) {
    while (auto b = full.next()) all.push_back(b->ids);
  }
  ASSERT_EQ(all.size(), 12u);
  runtime::LoaderSource s(factory(24, 4));
  s.next();
  s.seek({1, 2});
  EXPECT_EQ(s.position(), (data::LoaderPosition{1, 2}));
  for (size_t i = 8; i < 12; ++i) EXPECT_EQ(s.next().value().ids, all[i]) << "batch " << i;
  EXPECT_FALSE(s.next().has_value());
  EXPECT_EQ(s.position(), (data::LoaderPosition{2, 0}));
}

/// A bigram LM over the 512-token vocabulary.
class BigramTask : public runtime::TrainTask {
 public:
  BigramTask() {
    torch::manual_seed(0);
    table_ = (torch::randn({512, 512}) * 0.01).set_requires_grad(true);
  }
  runtime::NamedTensors trainable_parameters() override { return {{"bigram.weight", table_}}; }
  runtime::StepLoss forward(const data::Batch& b) override {
    const int64_t t = b.tokens.size(1);
    const torch::Tensor logits = table_.index_select(0, b.tokens.slice(1, 0, t - 1).reshape(-1));
    return {torch::nn::functional::cross_entropy(logits, b.labels.slice(1, 1).reshape(-1),
                                                 torch::nn::functional::CrossEntropyFuncOptions()
                                                     .reduction(torch::kSum)
                                                     .ignore_index(data::kIgnoreIndex)),
            {},
            {}};
  }
  void set_training(bool) override {}

 private:
  torch::Tensor table_;
};

TEST(LoaderSource, TrainerRunsAndResumesOnTheRealLoader) {
  testing::TempDir a, b;
  config::RunConfig cfg;
  cfg.train.lr = 0.1;
  cfg.train.epochs = 2;
  cfg.train.micro_batch_size = 4;
  cfg.train.global_batch_size = 8;
  cfg.train.save_every = 2;
  cfg.output_dir = a.path();
  BigramTask task_a;
  runtime::LoaderSource src_a(factory(24, 4));
  const auto full = Trainer(task_a, src_a, cfg).train();  // 6 micro-batches per epoch: 3 steps
  ASSERT_EQ(full.losses.size(), 6u);
  EXPECT_LT(full.losses.back(), full.losses.front());

  cfg.output_dir = b.path();
  cfg.train.max_steps = 0;
  {
    BigramTask task;
    runtime::LoaderSource src(factory(24, 4));
    TrainerHooks hooks;
    hooks.on_step = [](const StepMetrics& m) {
      if (m.step == 3) throw std::runtime_error("stop");
    };
    EXPECT_THROW(Trainer(task, src, cfg, nullptr, hooks).train(), std::runtime_error);
  }
  BigramTask task_b;
  runtime::LoaderSource src_b(factory(24, 4));
  Trainer t(task_b, src_b, cfg);
  t.resume(runtime::resolve_checkpoint(b.path(), "latest"));  // checkpoint-2: mid-epoch 0, position {0, 4}
  const auto rest = t.train();
  ASSERT_EQ(rest.losses.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(rest.losses[i], full.losses[2 + i]) << "step " << i + 3;
}

}  // namespace test_task
}  // namespace mmtune::runtime
