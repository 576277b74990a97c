// Sampling and background batching: which samples form each batch of each epoch on this rank
// (Sampler), and a DataLoader that collates those batches ahead of the trainer on worker threads.
//
// Order of one epoch, a pure function of (seed, epoch, options), so every rank computes the same
// global order and a resumed run the same remaining batches:
//   1. a Fisher-Yates permutation of 0..n-1 driven by std::mt19937_64 seeded through std::seed_seq
//      with (seed, epoch) (both fully specified by the standard; std::shuffle and
//      std::uniform_int_distribution are not, so neither is used);
//   2. group_by_length: the permuted order is cut into mega-batches of 50 x batch x world samples,
//      each sorted by token length, longest first (stable), so every batch holds samples of
//      similar length while the mega-batches stay in random order (Hugging Face's
//      LengthGroupedSampler, per global batch);
//   3. distributed: rank r of w takes positions r, r + w, r + 2w, ... of that order;
//   4. batches of `batch_size` consecutive samples of the rank's share.
// drop_last (training): the order is first cut to a multiple of w so ranks get equal shares, and
// an incomplete last batch is dropped: every rank runs the same number of steps. Without it
// (evaluation) every sample is used once; ranks' shares differ by at most one sample and the last
// batch may be short.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <mmtune/data/batch.h>
#include <mmtune/data/collate.h>
#include <mmtune/text/tokenizer.h>

namespace mmtune::data {

/// The permutation of 0..n-1 for (seed, epoch): Fisher-Yates over std::mt19937_64, identical on
/// every platform.
std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch);

struct SamplerOptions {
  int64_t batch_size = 4;  // samples per batch on this rank (train.micro_batch_size)
  uint64_t seed = 0;
  bool shuffle = true;    // false: the data set's order every epoch
  bool drop_last = true;  // see the file comment
  int64_t rank = 0;
  int64_t world_size = 1;
  bool group_by_length = false;  // needs one length per sample
};

/// Batches of sample indices per epoch for one rank.
class Sampler {
 public:
  /// `lengths` (token counts, one per sample) are required when group_by_length is set. Throws
  /// mmtune::Error on invalid options, or when drop_last leaves no full batch (a training epoch
  /// would do nothing).
  Sampler(int64_t n_samples, SamplerOptions options, std::vector<int64_t> lengths = {});
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  /// This rank's batches of `epoch`, each a list of sample indices, in order.
  std::vector<std::vector<int64_t>> epoch(int64_t epoch) const;

 private:
  int64_t n_;
  SamplerOptions o_;
  std::vector<int64_t> lengths_;
  int64_t batches_per_epoch_ = 0;
};

/// Where a run is: the epoch and the number of batches of it already taken. Saved with a
/// checkpoint; a loader constructed at it continues with exactly the batches that were next.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;  // 0..batches_per_epoch()
  bool operator==(const LoaderPosition&) const = default;
};

struct LoaderOptions {
  SamplerOptions sampler;
  CollateOptions collate;
  int64_t num_workers = 2;  // data.num_workers; 0 = collate on the caller's thread in next()
  int64_t prefetch = 0;     // batches collated ahead at most; 0 = 2 x num_workers
};

/// Yields the batches of one rank, epoch after epoch, collated by `num_workers` background
/// threads into a bounded queue. Batches come out in sampler order whatever the thread timing. A
/// worker's exception (e.g. a DataError for a bad image with on_bad_sample: error) is re-thrown by
/// next() at that batch's turn (the batch counts as taken). The destructor stops and joins the
/// workers (a batch being collated is finished first).
class DataLoader {
 public:
  /// With group_by_length, tokenises every example once here for its length. Throws mmtune::Error
  /// when `start` is outside the data (batch > batches_per_epoch()) or the sampler options are
  /// invalid (see Sampler).
  DataLoader(std::vector<Example> examples, std::shared_ptr<const text::Tokenizer> tokenizer,
             SequenceLayout layout, LoaderOptions options, LoaderPosition start = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  /// The next batch of the current epoch, or std::nullopt once the epoch is over; the position
  /// then moves to (epoch + 1, 0) and the following call starts that epoch. A batch may have
  /// fewer rows than batch_size, even none, when on_bad_sample: skip dropped samples from it.
  std::optional<Batch> next();
  /// The position of the batch next() returns next.
  LoaderPosition position() const { return pos_; }
  int64_t batches_per_epoch() const { return sampler_.batches_per_epoch(); }
  /// Samples dropped (on_bad_sample: skip) from the batches returned so far, and their ids.
  int64_t skipped() const { return static_cast<int64_t>(skipped_ids_.size()); }
  const std::vector<std::string>& skipped_ids() const { return skipped_ids_; }

 private:
  struct Result {
    Batch batch;
    std::vector<std::string> skipped;
    std::exception_ptr error;
  };
  Result make(int64_t seq);  // collates the seq-th batch after `start`
  std::shared_ptr<const std::vector<std::vector<int64_t>>> plan(int64_t epoch);
  void work();

  std::vector<Example> examples_;
  std::shared_ptr<const text::Tokenizer> tok_;
  SequenceLayout layout_;
  LoaderOptions o_;
  Sampler sampler_;
  int64_t base_ = 0;  // global batch index of `start`: epoch * batches_per_epoch + batch
  LoaderPosition pos_;
  std::vector<std::string> skipped_ids_;

  std::mutex plan_mutex_;
  std::map<int64_t, std::shared_ptr<const std::vector<std::vector<int64_t>>>>
      plans_;  // epoch -> batches

  std::mutex mutex_;  // guards everything below
  std::condition_variable space_, ready_;
  int64_t next_task_ = 0;  // next seq a worker starts
  int64_t consumed_ = 0;   // next seq next() returns
  int64_t capacity_ = 0;
  bool stop_ = false;
  std::map<int64_t, Result> results_;
  std::vector<std::thread> workers_;
};

}  // namespace mmtune::data
