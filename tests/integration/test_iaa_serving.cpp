// Several IAA workflows on one frozen base in one process (issue 8 item 4): `--adapter NAME=DIR`
// (repeated) in `mmtune eval` and `mmtune chat`. Each workflow served together with another gives
// exactly what its adapter gives loaded alone with --checkpoint (loss and greedy answers), a
// workflow may serve under another name than it was trained under, one on another precision of its
// base loads and says so, and wrong uses are clear errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_iaa_serving {

using json = nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

std::string tiny(const std::string& name) { return std::string(kTinyDir) + "/" + name; }
std::string iaa_config() { return std::string(kSourceDir) + "/configs/iaa/tiny.yaml"; }
const std::vector<std::string> kBase{"model.path=" + tiny("llama-gqa"), "vision.path=" + tiny("clip-vit"),
                                     "data.format=scienceqa", std::string("data.root=") + kSyntheticSqaDir};

// An IAA adapter trained under workflow `trained_as` with random non-zero weights drawn from `seed`
// (a fresh one is the base), saved as `mmtune train` saves it.
std::string write_iaa_adapter(const TempDir& d, const std::string& name, const std::string& trained_as, uint64_t seed) {
  std::vector<std::string> o = kBase;
  o.push_back("adapter.iaa.workflow=" + trained_as);
  const config::RunConfig cfg = config::load_config(iaa_config(), o, adapters::builtin_adapters());
  runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kLoad);
  torch::manual_seed(seed);
  {
    torch::NoGradGuard ng;
    for (auto& [n, t] : built.trainable) t.add_(torch::randn_like(t) * 0.05);
  }
  const std::string dir = d.path() + "/" + name;
  runtime::save_adapter(dir, cfg, built);
  return dir;
}

ProcessResult mmtune(const std::vector<std::string>& args, const std::string& stdin_file = "") {
  std::string cmd = "exec '" + std::string(kMmtuneBin) + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  if (!stdin_file.empty()) cmd += " < '" + stdin_file + "'";
  return run_process({"/bin/sh", "-c", cmd}, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
}

std::vector<std::string> with_base(std::vector<std::string> a) {
  a.insert(a.end(), kBase.begin(), kBase.end());
  return a;
}

// The validation loss of the first 6 samples under `how` (--checkpoint DIR or --adapter ... --workflow ...).
double val_loss(const TempDir& d, const std::vector<std::string>& how, const std::string& out) {
  std::vector<std::string> a{"eval", "--config", iaa_config(), "--task", "loss", "--split", "val", "--limit", "6",
                             "--no-progress", "--output", d.path() + "/" + out};
  a.insert(a.end(), how.begin(), how.end());
  const auto r = mmtune(with_base(a));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return read_json(d.path() + "/" + out)["loss"].get<double>();
}

TEST(IaaServing, EachWorkflowServedTogetherEqualsItsAdapterAlone) {
  TempDir d;
  const std::string a = write_iaa_adapter(d, "a", "mm", 1), b = write_iaa_adapter(d, "b", "caption", 2);
  const double alone_a = val_loss(d, {"--checkpoint", a}, "a.json");
  const double alone_b = val_loss(d, {"--checkpoint", b}, "b.json");
  ASSERT_NE(alone_a, alone_b);
  const std::vector<std::string> both{"--adapter", "first=" + a, "--adapter", "second=" + b};
  auto pick = [&](const std::string& w) {
    auto v = both;
    v.insert(v.end(), {"--workflow", w});
    return v;
  };
  EXPECT_EQ(val_loss(d, pick("first"), "1.json"), alone_a);
  EXPECT_EQ(val_loss(d, pick("second"), "2.json"), alone_b);
  EXPECT_EQ(val_loss(d, both, "default.json"), alone_a) << "the first --adapter is the default";
}

TEST(IaaServing, ChatSwitchesBetweenServedWorkflowsAsBetweenSeparateProcesses) {
  TempDir d;
  const std::string a = write_iaa_adapter(d, "a", "mm", 3), b = write_iaa_adapter(d, "b", "mm", 4);
  const std::string picture = std::string(kSyntheticSqaDir) + "/images/test/" +
                              [] {
                                // the first test problem with a picture
                                const json p = read_json(std::string(kSyntheticSqaDir) + "/problems.json");
                                for (const auto& [pid, q] : p.items())
                                  if (q["split"] == "test" && !q["image"].is_null()) return pid;
                                return std::string();
                              }() +
                              "/image.png";
  const std::vector<std::string> gen{"--temperature", "0", "--max-new-tokens", "6"};
  auto chat = [&](std::vector<std::string> how, const std::string& script) {
    std::vector<std::string> args{"chat", "--config", iaa_config()};
    args.insert(args.end(), how.begin(), how.end());
    args.insert(args.end(), gen.begin(), gen.end());
    return mmtune(with_base(args), d.write("in-" + std::to_string(std::hash<std::string>{}(script + how.back())), script));
  };
  const std::string q = "/image " + picture + "\nWhat is in the picture?\n";
  const auto alone_a = chat({"--checkpoint", a}, q), alone_b = chat({"--checkpoint", b}, q);
  ASSERT_EQ(alone_a.exit_code, 0) << alone_a.err;
  ASSERT_EQ(alone_b.exit_code, 0) << alone_b.err;
  ASSERT_NE(alone_a.out, alone_b.out) << "the two adapters should answer differently";
  // each question in a conversation of its own (/clear), as in the separate processes
  const auto served = chat({"--adapter", "x=" + a, "--adapter", "y=" + b},
                           q + "/clear\n/workflow y\n" + q + "/clear\n/workflow x\n" + q);
  ASSERT_EQ(served.exit_code, 0) << served.err;
  EXPECT_EQ(served.out, alone_a.out + alone_b.out + alone_a.out) << served.err;
  EXPECT_NE(served.err.find("workflows x=" + a + ", y=" + b), std::string::npos) << served.err;
}

TEST(IaaServing, AWorkflowOnAnotherPrecisionOfItsBaseLoadsAndSaysSo) {
  // as --checkpoint does (EvalCli.AnAdapterOnAnotherPrecisionOfItsBaseLoadsAndSaysSo): the adapter
  // was saved from the fp32, unquantized base; served on its int8 form it loads and the log says so
  TempDir d;
  const std::string a = write_iaa_adapter(d, "a", "mm", 6);
  auto eval = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"eval", "--config", iaa_config(), "--task", "loss", "--split", "val", "--limit",
                                  "2", "--no-progress", "--output", d.path() + "/x.json", "--adapter", "x=" + a};
    args.insert(args.end(), extra.begin(), extra.end());
    return mmtune(with_base(args));
  };
  const auto other = eval({"model.quantize=int8"});
  EXPECT_EQ(other.exit_code, 0) << other.err;
  EXPECT_NE(other.err.find(a + "/adapter_config.json: the adapter was trained with model.quantize none (now int8)"),
            std::string::npos)
      << other.err;
  const auto same = eval({});
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(same.err.find("the adapter was trained with"), std::string::npos) << "same precision: nothing to say";
}

TEST(IaaServing, WrongUsesAreClearErrors) {
  TempDir d;
  const std::string a = write_iaa_adapter(d, "a", "mm", 5);
  auto eval = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"eval", "--config", iaa_config(), "--task", "loss", "--split", "val",
                                  "--limit", "2", "--no-progress", "--output", d.path() + "/x.json"};
    args.insert(args.end(), extra.begin(), extra.end());
    return mmtune(with_base(args));
  };
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases{
      {{"--adapter", a}, 2, "is not NAME=DIR"},
      {{"--adapter", "text=" + a}, 2, "is reserved"},
      {{"--adapter", "a.b=" + a}, 2, "letters, digits and '_' only"},
      {{"--adapter", "x=" + a, "--checkpoint", a}, 2, "do not go together"},
      {{"--adapter", "x=" + a, "--adapter", "x=" + a}, 2, "is given twice"},
      {{"--adapter", "x=" + a, "--workflow", "nope"}, 2, "no workflow 'nope'"},
      {{"--adapter", "x=" + d.path() + "/missing"}, 1, "no such checkpoint directory"},
  };
  for (const auto& c : cases) {
    const auto r = eval(c.args);
    EXPECT_EQ(r.exit_code, c.code) << c.args[1] << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(d.path() + "/x.json"));
  }
  // an MMA adapter is not a workflow
  const config::RunConfig lcfg = config::load_config(std::string(kSourceDir) + "/configs/lavin/tiny.yaml",
                                                     {"model.path=" + tiny("llama-gqa"), "vision.path=" + tiny("clip-vit")},
                                                     adapters::builtin_adapters());
  runtime::BuiltModel lb = runtime::build_model(lcfg, runtime::Weights::kLoad);
  runtime::save_adapter(d.path() + "/lavin", lcfg, lb);
  const auto r = eval({"--adapter", "x=" + a, "--adapter", "y=" + d.path() + "/lavin"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("holds a 'mma' adapter; --adapter y=... serves workflows of iaa adapters"), std::string::npos) << r.err;
}

}  // namespace test_iaa_serving
}  // namespace mmtune::testing
