// The data set a run reads, chosen by data.format: one split of it as Examples.
//   scienceqa   data.root's problems.json + pid_splits.json (data/scienceqa.h); any split the
//               splits file names (train, val, test, minitest, ...)
//   llava_json  data.json (data/llava_json.h): one file, so only data.train_split names it; other
//               splits (eval) need their own file, given as data.json by that run's config
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>

namespace mmtune::data {

struct SplitData {
  std::vector<Example> examples;
  int64_t skipped = 0;                   // dropped for a missing image (data.on_bad_sample: skip)
  std::vector<std::string> skipped_ids;
  std::string source;                    // what was read, for logs ("scienceqa <root> split train")
};

/// Reads `split` of the configured data set; `limit` > 0 keeps its first N samples (else
/// data.limit applies). Throws mmtune::DataError / ConfigError naming the file or key, with a hint.
SplitData read_split(const config::DataConfig& data, const SequenceLayout& layout, const std::string& split,
                     int64_t limit = 0);

}  // namespace mmtune::data
