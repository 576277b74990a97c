// Printing, saving and listing configs.
#include <gtest/gtest.h>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/config/run_dir.h>
#include <mmtune/core/logging.h>

#include <filesystem>
#include <set>

#include "test_utils.h"

namespace mmtune::config {
namespace test_print {

using mmtune::testing::TempDir;

RunConfig load(const std::string& path, const std::vector<std::string>& overrides = {}) {
  return load_config(path, overrides, adapters::builtin_adapters());
}

TEST(ConfigPrint, PrintedConfigLoadsBackToTheSameConfig) {
  TempDir d;
  const auto path = d.write("c.yaml",
                            "model:\n  path: /m\n  id: \"it's: quoted\"\n"
                            "adapter:\n  family: iaa\n  iaa:\n    insert_layers: [2, 3]\n"
                            "train:\n  blr: 9e-3\n  betas: [0.9, 0.999]\n"
                            "eval:\n  generation:\n    stop: ['a b', 'true', '1']\n");
  const RunConfig c = load(path, {"seed=7", "train.eps=1e-12"});
  const std::string text = to_yaml(c);
  EXPECT_NE(text.find("  blr: 0.009\n"), std::string::npos) << text;  // shortest form
  EXPECT_NE(text.find("  lr: ~\n"), std::string::npos);
  EXPECT_NE(text.find("  eps: 1e-12\n"), std::string::npos);
  EXPECT_NE(text.find("    insert_layers: [2, 3]\n"), std::string::npos);
  const RunConfig back = load(d.write("printed.yaml", text));
  EXPECT_EQ(to_yaml(back), text);
  EXPECT_EQ(back.model.id, "it's: quoted");
  EXPECT_EQ(back.eval.generation.stop, (std::vector<std::string>{"a b", "true", "1"}));
  EXPECT_EQ(back.seed, 7);
}

TEST(ConfigPrint, StringsWithLineBreaksAndControlCharactersLoadBack) {
  // single-quoted YAML folds a line break into a space: a stop string "\n###" saved that way read
  // back as " ###" (the print-and-reload property tests/fuzz/fuzz_config.cpp checks on any input)
  TempDir d;
  const auto path = d.write("c.yaml", "model:\n  path: /m\ntrain:\n  lr: 1e-3\neval:\n  generation:\n    stop: [\"\\n###\", \"a\\tb\\\\c\\\"\", \"\\x01'\"]\n");
  const RunConfig c = load(path);
  ASSERT_EQ(c.eval.generation.stop, (std::vector<std::string>{"\n###", "a\tb\\c\"", "\x01'"}));
  const std::string text = to_yaml(c);
  EXPECT_EQ(load(d.write("printed.yaml", text)).eval.generation.stop, c.eval.generation.stop) << text;
}

TEST(ConfigPrint, SavedResolvedConfigIsCompleteAndAtomic) {
  TempDir d;
  const RunConfig c = load(d.write("c.yaml", "model:\n  path: /m\ntrain:\n  lr: 1e-4\n"));
  const std::string out = d.path() + "/run/nested";
  save_resolved_config(c, out);
  std::set<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(out)) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"config.yaml"}));  // no temporary left behind
  EXPECT_EQ(to_yaml(load(out + "/config.yaml")), to_yaml(c));
}

TEST(ConfigPrint, SaveIntoAnUnwritablePlaceThrowsWithAHint) {
  TempDir d;
  const RunConfig c = load(d.write("c.yaml", "model:\n  path: /m\ntrain:\n  lr: 1e-4\n"));
  const std::string blocker = d.write("file", "x");  // a file where a directory should go
  try {
    save_resolved_config(c, blocker + "/sub");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(blocker), std::string::npos);
    EXPECT_FALSE(e.hint().empty());
  }
}

TEST(RunDir, SavesTheConfigAndLogsIntoTheOutputDirectory) {
  TempDir d;
  RunConfig c = load(d.write("c.yaml", "model:\n  path: /m\ntrain:\n  lr: 1e-4\n"));
  c.output_dir = d.path() + "/run";
  log::init(log::Level::kInfo, 0, 1);
  EXPECT_EQ(prepare_run_dir(c, 0), c.output_dir + "/mmtune.log");
  log::close_file();
  EXPECT_EQ(to_yaml(load(c.output_dir + "/config.yaml")), to_yaml(c));
  EXPECT_NE(testing::read_text(c.output_dir + "/mmtune.log").find("[rank 0/1] [info] output directory"),
            std::string::npos);
  // Other ranks write no config, only their own log.
  RunConfig other = c;
  other.output_dir = d.path() + "/run1";
  EXPECT_EQ(prepare_run_dir(other, 1), other.output_dir + "/mmtune.rank1.log");
  log::close_file();
  EXPECT_FALSE(std::filesystem::exists(other.output_dir + "/config.yaml"));
  log::init(log::Level::kWarn, 0, 1);
}

TEST(ConfigKeys, ListsEveryKeyOnceIncludingEachFamily) {
  const auto keys = list_keys(adapters::builtin_adapters());
  std::set<std::string> paths;
  for (const auto& k : keys) {
    EXPECT_TRUE(paths.insert(k.path).second) << "duplicate key " << k.path;
    EXPECT_FALSE(k.help.empty()) << k.path << " has no help text";
  }
  for (const char* k : {"train.lr", "train.blr", "adapter.family", "adapter.mma.clip_router_mode",
                        "adapter.mma.rope_decode_offset", "adapter.iaa.insert_layers", "adapter.mole.gate_mode",
                        "adapter.lora.targets", "eval.generation.top_p", "chat.generation.seed", "dist.timeout_s",
                        "data.on_bad_sample", "vision.feature"}) {
    EXPECT_TRUE(paths.count(k)) << k;
  }
  for (const auto& k : keys) {
    if (k.path == "data.padding") {
      EXPECT_EQ(k.type, "one of dynamic | fixed");
      EXPECT_EQ(k.default_value, "dynamic");
    }
    if (k.path == "train.lr") {
      EXPECT_EQ(k.type, "float or null");
    }
  }
}

}  // namespace test_print
}  // namespace mmtune::config
