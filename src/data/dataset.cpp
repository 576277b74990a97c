#include <mmtune/core/errors.h>
#include <mmtune/data/dataset.h>
#include <mmtune/data/llava_json.h>
#include <mmtune/data/scienceqa.h>

namespace mmtune::data {

SplitData read_split(const config::DataConfig& data, const SequenceLayout& layout, const std::string& split,
                     int64_t limit) {
  SplitData out;
  if (data.format == "scienceqa") {
    auto o = scienceqa_options(data);
    if (limit > 0) o.limit = limit;
    auto d = read_scienceqa(o, split);
    out.examples = std::move(d.examples);
    out.skipped = d.skipped;
    out.skipped_ids = std::move(d.skipped_ids);
    out.source = "scienceqa " + o.root + " split " + split;
    return out;
  }
  if (data.format == "llava_json") {
    if (split != data.train_split)
      throw ConfigError({{"data.json", "data.json",
                          "llava_json has one file, read as split '" + data.train_split + "'; split '" + split +
                              "' has none",
                          "point data.json at that split's file and set data.train_split: " + split +
                              " for this run, or use data.format: scienceqa"}});
    auto o = llava_json_options(data, layout);
    if (limit > 0) o.limit = limit;
    auto d = read_llava_json(o);
    out.examples = std::move(d.examples);
    out.skipped = d.skipped;
    out.skipped_ids = std::move(d.skipped_ids);
    out.source = "llava_json " + o.json_path;
    return out;
  }
  throw ConfigError({{"data.format", "data.format", "unknown data format '" + data.format + "'",
                      "use scienceqa or llava_json"}});
}

}  // namespace mmtune::data
