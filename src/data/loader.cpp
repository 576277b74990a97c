// Deterministic per-epoch sampling (shuffle, length grouping, distributed shares) and the
// background-prefetching DataLoader (see loader.h).
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/loader.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace mmtune::data {
namespace {

constexpr int64_t kMegaBatches = 50;  // group_by_length: sort within 50 global batches

// Uniform integer in [0, bound) from 64-bit draws, without modulo bias (reject the top sliver).
uint64_t draw_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

}  // namespace

std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch) {
  const auto e = static_cast<uint64_t>(epoch);
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(e), static_cast<uint32_t>(e >> 32)};
  std::mt19937_64 rng(seq);
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(p[i], p[draw_below(rng, static_cast<uint64_t>(i) + 1)]);
  return p;
}

Sampler::Sampler(int64_t n_samples, SamplerOptions options, std::vector<int64_t> lengths)
    : n_(n_samples), o_(options), lengths_(std::move(lengths)) {
  if (o_.batch_size <= 0) throw Error(cat("batch size must be > 0, got ", o_.batch_size));
  if (o_.world_size <= 0 || o_.rank < 0 || o_.rank >= o_.world_size) {
    throw Error(cat("rank ", o_.rank, " of world size ", o_.world_size, " is not a valid rank"));
  }
  if (o_.group_by_length && static_cast<int64_t>(lengths_.size()) != n_) {
    throw Error(cat("group_by_length needs one length per sample: ", lengths_.size(), " for ", n_,
                    " samples"));
  }
  const int64_t w = o_.world_size, b = o_.batch_size;
  if (o_.drop_last) {
    batches_per_epoch_ = n_ / w / b;
    if (batches_per_epoch_ == 0) {
      throw Error(cat(n_, " samples over ", w, " rank(s) make no full batch of ", b, " per rank"),
                  "lower train.micro_batch_size (or the number of processes), or use more data");
    }
  } else {
    const int64_t share = o_.rank < n_ ? (n_ - o_.rank + w - 1) / w : 0;
    batches_per_epoch_ = (share + b - 1) / b;
  }
}

std::vector<std::vector<int64_t>> Sampler::epoch(int64_t epoch) const {
  std::vector<int64_t> order(n_);
  if (o_.shuffle) {
    order = permutation(n_, o_.seed, epoch);
  } else {
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  const int64_t w = o_.world_size, b = o_.batch_size;
  if (o_.group_by_length) {
    const int64_t mega = kMegaBatches * b * w;
    for (int64_t at = 0; at < n_; at += mega) {
      std::stable_sort(order.begin() + at, order.begin() + std::min(n_, at + mega),
                       [&](int64_t x, int64_t y) { return lengths_[x] > lengths_[y]; });
    }
  }
  const int64_t used = o_.drop_last ? n_ / w * w : n_;
  std::vector<std::vector<int64_t>> batches;
  for (int64_t i = o_.rank; i < used; i += w) {
    if (batches.empty() || static_cast<int64_t>(batches.back().size()) == b) batches.emplace_back();
    batches.back().push_back(order[i]);
  }
  batches.resize(batches_per_epoch_);  // drop_last: the incomplete batch goes
  return batches;
}

DataLoader::DataLoader(std::vector<Example> examples,
                       std::shared_ptr<const text::Tokenizer> tokenizer, SequenceLayout layout,
                       LoaderOptions options, LoaderPosition start)
    : examples_(std::move(examples)),
      tok_(std::move(tokenizer)),
      layout_(std::move(layout)),
      o_(std::move(options)),
      sampler_(static_cast<int64_t>(examples_.size()), o_.sampler,
               [&] {
                 std::vector<int64_t> lengths;
                 if (!o_.sampler.group_by_length) return lengths;
                 for (const Example& ex : examples_) {
                   lengths.push_back(
                       std::min(sequence_length(ex, *tok_, layout_), o_.collate.max_length));
                 }
                 return lengths;
               }()),
      pos_(start) {
  const int64_t N = sampler_.batches_per_epoch();
  if (start.epoch < 0 || start.batch < 0 || start.batch > N) {
    throw Error(cat("loader position (epoch ", start.epoch, ", batch ", start.batch,
                    ") is outside the data: an epoch has ", N, " batches"),
                "resume with the data, batch size and world size of the checkpointed run");
  }
  base_ = start.epoch * N + start.batch;
  capacity_ = o_.prefetch > 0 ? o_.prefetch : 2 * std::max<int64_t>(1, o_.num_workers);
  if (N == 0) return;  // nothing to collate, ever (evaluation on a rank without samples)
  for (int64_t i = 0; i < o_.num_workers; ++i) workers_.emplace_back([this] { work(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_.notify_all();
  for (std::thread& t : workers_) t.join();
}

std::shared_ptr<const std::vector<std::vector<int64_t>>> DataLoader::plan(int64_t epoch) {
  std::lock_guard<std::mutex> lock(plan_mutex_);
  auto it = plans_.find(epoch);
  if (it != plans_.end()) return it->second;
  auto p = std::make_shared<const std::vector<std::vector<int64_t>>>(sampler_.epoch(epoch));
  plans_.erase(plans_.begin(),
               plans_.lower_bound(epoch - 1));  // keep the previous epoch for stragglers
  plans_.emplace(epoch, p);
  return p;
}

DataLoader::Result DataLoader::make(int64_t seq) {
  const int64_t N = sampler_.batches_per_epoch();
  const int64_t global = base_ + seq;
  const auto batches = plan(global / N);
  std::vector<Example> rows;
  for (int64_t i : (*batches)[global % N]) rows.push_back(examples_[i]);
  Result r;
  r.batch = collate(rows, *tok_, layout_, o_.collate, &r.skipped);
  return r;
}

void DataLoader::work() {
  for (;;) {
    int64_t seq = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_.wait(lock, [this] { return stop_ || next_task_ < consumed_ + capacity_; });
      if (stop_) return;
      seq = next_task_++;
    }
    Result r;
    try {
      r = make(seq);
    } catch (...) {
      r.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      results_.emplace(seq, std::move(r));
    }
    ready_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  if (pos_.batch == sampler_.batches_per_epoch()) {
    pos_ = {pos_.epoch + 1, 0};
    return std::nullopt;
  }
  Result r;
  if (workers_.empty()) {
    const int64_t seq = consumed_++;
    ++pos_.batch;
    r = make(seq);  // throws straight to the caller
  } else {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return results_.count(consumed_) > 0; });
      auto it = results_.find(consumed_);
      r = std::move(it->second);
      results_.erase(it);
      ++consumed_;
    }
    space_.notify_all();
    ++pos_.batch;
  }
  skipped_ids_.insert(skipped_ids_.end(), r.skipped.begin(), r.skipped.end());
  if (r.error) std::rethrow_exception(r.error);
  return std::move(r.batch);
}

}  // namespace mmtune::data
