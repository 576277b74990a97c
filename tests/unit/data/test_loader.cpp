// Sampling and the background DataLoader: the permutation is a fair Fisher-Yates, epochs and seeds
// differ, ranks partition the data, length grouping sorts within mega-batches, loaders agree with
// each other whatever their thread count, resuming gives the same remaining batches, and bad
// images surface in the consumer (error) or are counted (skip).
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/data/loader.h>

#include <map>
#include <numeric>
#include <set>

#include "test_utils.h"

namespace mmtune::data {
namespace test_loader {

std::shared_ptr<const text::Tokenizer> tokenizer() {
  static const std::shared_ptr<const text::Tokenizer> t =
      text::load_tokenizer(std::string(testing::kSharedDir) + "/models/stories260K/tok512.model");
  return t;
}

// n text samples "s0".."s{n-1}"; sample i has a prompt of i % 7 + 1 words (lengths differ).
std::vector<Example> samples(int n) {
  std::vector<Example> out;
  for (int i = 0; i < n; ++i) {
    std::string prompt;
    for (int w = 0; w <= i % 7; ++w) prompt += "word ";
    Example ex;
    ex.id = "s" + std::to_string(i);
    ex.prompt = prompt + "?";
    ex.answer = " answer";
    out.push_back(ex);
  }
  return out;
}

LoaderOptions options(int64_t batch, int64_t workers) {
  LoaderOptions o;
  o.sampler.batch_size = batch;
  o.sampler.seed = 17;
  o.num_workers = workers;
  o.collate.max_length = 64;
  o.collate.image.size = 4;
  return o;
}

// Every batch's ids for `epochs` epochs.
std::vector<std::vector<std::string>> drain(DataLoader& l, int epochs) {
  std::vector<std::vector<std::string>> out;
  for (int e = 0; e < epochs; ++e) {
    while (auto b = l.next()) out.push_back(b->ids);
  }
  return out;
}

TEST(LoaderSampler, PermutationIsDeterministicAndDiffersAcrossEpochsAndSeeds) {
  const auto p = permutation(100, 5, 0);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(100);
  std::iota(iota.begin(), iota.end(), int64_t{0});
  EXPECT_EQ(sorted, iota);
  EXPECT_NE(p, iota);
  EXPECT_EQ(p, permutation(100, 5, 0));
  EXPECT_NE(p, permutation(100, 5, 1));
  EXPECT_NE(p, permutation(100, 6, 0));
  EXPECT_TRUE(permutation(0, 1, 0).empty());
  EXPECT_EQ(permutation(1, 1, 0), std::vector<int64_t>{0});
  // Regression guard for portability: mt19937_64 and seed_seq are specified exactly by the
  // standard, so this order is the same on every platform (recorded from this implementation).
  EXPECT_EQ(permutation(8, 1, 0), (std::vector<int64_t>{7, 6, 0, 5, 2, 3, 1, 4}));
}

TEST(LoaderSampler, PermutationIsUniform) {
  // Fisher-Yates draws j from [0, i]; a [0, i) slip (Sattolo) never leaves an element in place.
  // Over 6000 seeds each of the 3! orders of 3 elements appears about 1000 times.
  std::map<std::vector<int64_t>, int> count;
  for (uint64_t seed = 0; seed < 6000; ++seed) ++count[permutation(3, seed, 0)];
  ASSERT_EQ(count.size(), 6u);
  // a count is Binomial(6000, 1/6): sd = sqrt(6000 * 1/6 * 5/6) = 28.9, so 150 is 5.2 sd (integer
  // arithmetic on a fixed hash: the same counts on every machine)
  for (const auto& [perm, c] : count) EXPECT_NEAR(c, 1000, 150);
}

TEST(LoaderSampler, RanksPartitionTheDataAndRunTheSameNumberOfSteps) {
  const int64_t n = 103, w = 4, b = 5;
  std::set<int64_t> seen;
  for (int64_t r = 0; r < w; ++r) {
    SamplerOptions o{b, 3, true, true, r, w, false};
    const Sampler s(n, o);
    EXPECT_EQ(s.batches_per_epoch(), 103 / 4 / 5);  // drop_last: 25 samples each, 5 full batches
    for (const auto& batch : s.epoch(2)) {
      ASSERT_EQ(static_cast<int64_t>(batch.size()), b);
      for (int64_t i : batch)
        EXPECT_TRUE(seen.insert(i).second) << "sample " << i << " on two ranks";
    }
  }
  EXPECT_EQ(seen.size(), 100u);
  // rank r takes every w-th sample of the epoch's permutation
  const auto perm = permutation(n, 3, 2);
  const auto r1 = Sampler(n, {b, 3, true, true, 1, w, false}).epoch(2);
  EXPECT_EQ(r1[0], (std::vector<int64_t>{perm[1], perm[5], perm[9], perm[13], perm[17]}));
}

TEST(LoaderSampler, WithoutDropLastEverySampleIsUsedOnce) {
  const int64_t n = 23, w = 3;
  std::multiset<int64_t> seen;
  for (int64_t r = 0; r < w; ++r) {
    const Sampler s(n, {4, 9, true, false, r, w, false});
    const auto batches = s.epoch(0);
    EXPECT_EQ(static_cast<int64_t>(batches.size()), s.batches_per_epoch());
    for (const auto& batch : batches) seen.insert(batch.begin(), batch.end());
  }
  EXPECT_EQ(seen.size(), 23u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 23u);
  EXPECT_THROW(Sampler(3, {4, 0, true, true, 0, 1, false}), Error);  // no full batch to train on
}

TEST(LoaderSampler, GroupByLengthSortsWithinMegaBatches) {
  const int64_t n = 1000, b = 2, w = 2, mega = 50 * b * w;
  std::vector<int64_t> lengths(n);
  for (int64_t i = 0; i < n; ++i) lengths[i] = (i * 7919) % 97;
  const auto perm = permutation(n, 4, 1);
  for (int64_t r = 0; r < w; ++r) {
    const Sampler s(n, {b, 4, true, true, r, w, true}, lengths);
    const auto batches = s.epoch(1);
    std::vector<int64_t> mine;
    for (const auto& batch : batches) mine.insert(mine.end(), batch.begin(), batch.end());
    // within each mega-batch the rank's share is longest first, and holds the mega-batch's samples
    for (int64_t m = 0; m < n / mega; ++m) {
      const std::vector<int64_t> part(mine.begin() + m * mega / w,
                                      mine.begin() + (m + 1) * mega / w);
      for (size_t k = 1; k < part.size(); ++k) EXPECT_GE(lengths[part[k - 1]], lengths[part[k]]);
      const std::set<int64_t> from_perm(perm.begin() + m * mega, perm.begin() + (m + 1) * mega);
      for (int64_t i : part) EXPECT_TRUE(from_perm.count(i)) << i;
    }
  }
  EXPECT_THROW(Sampler(n, {b, 4, true, true, 0, 1, true}, {}), Error);  // lengths required
}

TEST(Loader, SameSeedSameBatchesWhateverTheWorkersAndEpochsDiffer) {
  DataLoader a(samples(40), tokenizer(), {}, options(4, 3));
  DataLoader b(samples(40), tokenizer(), {}, options(4, 0));
  const auto ba = drain(a, 3), bb = drain(b, 3);
  ASSERT_EQ(ba.size(), 30u);
  EXPECT_EQ(ba, bb);
  const std::vector<std::vector<std::string>> e0(ba.begin(), ba.begin() + 10),
      e1(ba.begin() + 10, ba.begin() + 20);
  EXPECT_NE(e0, e1);
  std::set<std::string> ids;
  for (const auto& batch : e1) ids.insert(batch.begin(), batch.end());
  EXPECT_EQ(ids.size(), 40u);  // an epoch sees every sample once
  EXPECT_EQ(a.position(), (LoaderPosition{3, 0}));
}

TEST(Loader, ResumingAtAPositionGivesTheSameRemainingBatches) {
  DataLoader full(samples(30), tokenizer(), {}, options(4, 2));  // 7 batches per epoch
  std::vector<std::vector<std::string>> all;
  LoaderPosition at_k;
  for (int e = 0; e < 3; ++e) {
    while (auto b = full.next()) {
      all.push_back(b->ids);
      if (all.size() == 10) at_k = full.position();  // "checkpoint" after 10 batches
    }
  }
  EXPECT_EQ(at_k, (LoaderPosition{1, 3}));
  DataLoader resumed(samples(30), tokenizer(), {}, options(4, 2), at_k);
  std::vector<std::vector<std::string>> rest;
  while (rest.size() < all.size() - 10) {
    if (auto b = resumed.next()) rest.push_back(b->ids);
  }
  EXPECT_EQ(rest, std::vector<std::vector<std::string>>(all.begin() + 10, all.end()));
  // a position saved at an epoch's end resumes with that epoch's end
  DataLoader at_end(samples(30), tokenizer(), {}, options(4, 1), {0, 7});
  EXPECT_FALSE(at_end.next().has_value());
  EXPECT_EQ(at_end.position(), (LoaderPosition{1, 0}));
  EXPECT_THROW(DataLoader(samples(30), tokenizer(), {}, options(4, 1), {0, 8}), Error);
}

TEST(Loader, BatchesAreCollatedTensors) {
  LoaderOptions o = options(4, 2);
  o.collate.pad_to_max_length = true;
  DataLoader l(samples(8), tokenizer(), {}, o);
  auto b = l.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->tokens.sizes(), (torch::IntArrayRef{4, 64}));
  EXPECT_EQ(b->images.sizes(), (torch::IntArrayRef{4, 3, 4, 4}));
  EXPECT_GT(b->supervised_tokens, 0);
}

std::vector<Example> with_a_bad_image(const testing::TempDir& d) {
  auto exs = samples(12);
  exs[5].image_path = d.write("bad.png", "definitely not a png");
  return exs;
}

TEST(Loader, AWorkersErrorSurfacesInTheConsumer) {
  testing::TempDir d;
  DataLoader l(with_a_bad_image(d), tokenizer(), {}, options(3, 2));
  try {
    drain(l, 1);
    FAIL() << "the bad image did not surface";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), d.path() + "/bad.png");
    EXPECT_NE(std::string(e.what()).find("sample 's5'"), std::string::npos) << e.what();
  }
  // the loader stays usable and is destroyed cleanly with workers still running ahead
}

TEST(Loader, SkipModeDropsAndCountsBadSamples) {
  testing::TempDir d;
  LoaderOptions o = options(3, 2);
  o.collate.skip_bad_samples = true;
  DataLoader l(with_a_bad_image(d), tokenizer(), {}, o);
  int64_t rows = 0;
  while (auto b = l.next()) rows += b->size();
  EXPECT_EQ(rows, 11);
  EXPECT_EQ(l.skipped(), 1);
  EXPECT_EQ(l.skipped_ids(), std::vector<std::string>{"s5"});
}

TEST(Loader, DestroyingMidEpochStopsTheWorkers) {
  for (int k = 0; k < 5; ++k) {
    DataLoader l(samples(200), tokenizer(), {}, options(2, 4));
    ASSERT_TRUE(l.next().has_value());
  }  // each destructor joins workers blocked on the full queue
}

}  // namespace test_loader
}  // namespace mmtune::data
