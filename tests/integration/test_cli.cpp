// The mmtune binary as a user runs it: verbs, help, exit codes, config printing.
#include <gtest/gtest.h>

#include <mmtune/io/safetensors.h>

#include <filesystem>
#include <limits>
#include <map>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_cli {

ProcessResult mmtune(std::vector<std::string> args) {
  args.insert(args.begin(), kMmtuneBin);
  return run_process(args);
}

std::string config(const std::string& rel) { return std::string(kSourceDir) + "/configs/" + rel; }

TEST(Cli, HelpListsEveryVerb) {
  const auto r = mmtune({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* verb : {"train", "eval", "chat", "generate", "convert", "bench", "config", "version"}) {
    EXPECT_NE(r.out.find(std::string("\n  ") + verb + " "), std::string::npos) << verb << " missing in\n" << r.out;
  }
}

TEST(Cli, EveryVerbHelpHasAnExample) {
  for (const char* verb : {"train", "eval", "chat", "generate", "convert", "bench", "config", "version"}) {
    const auto r = mmtune({verb, "--help"});
    EXPECT_EQ(r.exit_code, 0) << verb;
    EXPECT_NE(r.out.find("Example"), std::string::npos) << verb << ":\n" << r.out;
  }
}

TEST(Cli, ConfigPrintShowsOverriddenValue) {
  const auto r = mmtune({"config", "print", "--config", config("lavin/tiny.yaml"), "train.lr=1e-4"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\n  lr: 1e-4\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n  family: mma\n"), std::string::npos);
}

TEST(Cli, UnknownOverrideExitsTwoNamingKeyAndSuggestion) {
  const auto r = mmtune({"config", "print", "--config", config("lavin/tiny.yaml"), "train.lrr=1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.out.empty()) << "nothing printed on error, got:\n" << r.out;
  EXPECT_NE(r.err.find("train.lrr"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean train.lr?"), std::string::npos) << r.err;
}

TEST(Cli, MissingConfigFileExitsTwo) {
  const auto r = mmtune({"config", "validate", "--config", "/nonexistent/x.yaml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("/nonexistent/x.yaml: config file not found"), std::string::npos) << r.err;
}

TEST(Cli, UnknownVerbIsNamedWithTheVerbsAndAGuess) {
  // issue 20: it said "A subcommand is required"
  auto r = mmtune({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("error: unknown verb 'frobnicate'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the verbs are train, eval, chat, generate"), std::string::npos) << r.err;
  r = mmtune({"trian", "--config", "x.yaml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("did you mean train?"), std::string::npos) << r.err;
}

TEST(Cli, GenerateChecksItsFlagsBeforeLoading) {
  // issue 20: a negative repetition penalty was accepted; a missing --model said "tokenizer file not found"
  auto r = mmtune({"generate", "--model", std::string(kTinyDir) + "/llama-gqa", "--repetition-penalty", "-2"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--repetition-penalty: must be > 0 (1 = off), got -2"), std::string::npos) << r.err;
  r = mmtune({"generate", "--model", "/nonexistent/model", "--prompt", "hi"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--model /nonexistent/model does not exist"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint: point --model at a Hugging Face model directory"), std::string::npos) << r.err;
}

TEST(Cli, WeightsHoldingNanOrInfAreReportedAtLoad) {
  // issue 20: weights containing NaN/Inf loaded silently. One NaN, one +Inf and one -Inf, each a
  // single value in another tensor (a matrix, a norm, the last value of the LM head), found in each
  // load path: fp32 as stored (the file's pages kept), cast to bf16, and quantized from the file
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::map<std::string, float> bad{{"model.layers.1.mlp.up_proj.weight", nan},
                                         {"model.layers.0.input_layernorm.weight", inf},
                                         {"lm_head.weight", -inf}};
  TempDir d;
  const std::string src = std::string(kTinyDir) + "/llama-gqa", dst = d.path() + "/model";
  std::filesystem::create_directories(dst);
  for (const char* f : {"config.json", "tokenizer.model"}) std::filesystem::copy_file(src + "/" + f, dst + "/" + f);
  const auto ckpt = io::SafetensorsCheckpoint::open(src);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : ckpt.names()) {
    torch::Tensor t = ckpt.tensor(name).clone();
    if (const auto it = bad.find(name); it != bad.end()) t.view({-1})[name == "lm_head.weight" ? -1 : 0] = it->second;
    tensors.emplace_back(name, t);
  }
  ASSERT_EQ(tensors.size(), ckpt.names().size());
  io::save_safetensors(dst + "/model.safetensors", tensors);
  for (const std::vector<std::string>& how : {std::vector<std::string>{}, {"--dtype", "bf16"}, {"--quantize", "int8"}}) {
    std::vector<std::string> args{"generate", "--model", dst, "--prompt", "hi", "--max-new-tokens", "1"};
    args.insert(args.end(), how.begin(), how.end());
    const auto r = mmtune(args);
    EXPECT_NE(r.err.find("3 tensor(s) hold NaN or Inf after loading, e.g. "), std::string::npos)
        << (how.empty() ? "fp32" : how[1]) << "\n" << r.err;
  }
  const auto clean = mmtune({"generate", "--model", src, "--prompt", "hi", "--max-new-tokens", "1"});
  EXPECT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(clean.err.find("NaN"), std::string::npos) << clean.err;
}

TEST(Cli, ConfigJsonSizesAreCheckedAgainstTheWeightsBeforeAllocating) {
  // issue 20: vocab_size 1e12 / hidden_size 1e9 aborted in the allocator, num_hidden_layers 1e9
  // ate all memory; the weights' own shapes say what config.json should
  const std::string src = std::string(kTinyDir) + "/llama-gqa";
  struct Case {
    std::string key, value, message;
  };
  for (const Case& c : {Case{"vocab_size", "1000000000000", "model.embed_tokens.weight is [400, 64] in the weights, [1000000000000, 64]"},
                        Case{"hidden_size", "1000000000", "by config.json's vocab_size x hidden_size"},
                        Case{"num_hidden_layers", "1000000000", "num_hidden_layers is 1000000000, the weights have 3"}}) {
    TempDir d;
    const std::string dst = d.path() + "/model";
    std::filesystem::create_directories(dst);
    for (const char* f : {"tokenizer.model", "model.safetensors"})
      std::filesystem::create_symlink(src + "/" + f, dst + "/" + f);
    std::string json = read_text(src + "/config.json");
    const auto at = json.find("\"" + c.key + "\"");
    ASSERT_NE(at, std::string::npos) << c.key;
    const auto colon = json.find(':', at), end = json.find_first_of(",}", colon);
    json = json.substr(0, colon + 1) + " " + c.value + json.substr(end);
    d.write("model/config.json", json);
    const auto r = run_process({kMmtuneBin, "generate", "--model", dst, "--prompt", "hi"}, {}, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_code, 1) << c.key << ": " << r.err;
    EXPECT_NE(r.err.find("config.json does not match the weights"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(mmtune({}).exit_code, 2);
  EXPECT_EQ(mmtune({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(mmtune({"train"}).exit_code, 2);  // --config is required
  EXPECT_EQ(mmtune({"bench", "fly", "--config", config("lavin/tiny.yaml")}).exit_code, 2);
}

TEST(Cli, TrainReportsABadConfigBeforeBuildingAnything) {
  const auto bad = mmtune({"train", "--config", config("lavin/tiny.yaml"), "adapter.mma.dim=-2"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("adapter.mma.dim"), std::string::npos) << bad.err;
}

TEST(Cli, AdaptersTooLargeForThisMachineAreAConfigErrorNamingTheKey) {
  // issue 20: adapter.mma.dim=100000000 aborted inside the allocator; the adapters are counted on
  // the meta device against the available memory before anything is built
  const std::string tiny(kTinyDir);
  TempDir d;
  const auto r = run_process({kMmtuneBin, "train", "--config", config("lavin/tiny.yaml"), "model.path=" + tiny + "/llama-gqa",
                              "vision.path=" + tiny + "/clip-vit", "adapter.mma.dim=100000000", "output_dir=" + d.path() + "/run"},
                             {}, std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("adapter.mma.dim"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is 100000000: the model as configured needs"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d.path() + "/run/checkpoint-1"));
  EXPECT_NE(r.err.find("of memory available"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lower adapter.mma.dim"), std::string::npos) << r.err;
}

TEST(Cli, TrainDryRunPrintsTheOfficialLavinCounts) {
  const auto r7 = mmtune({"train", "--config", config("lavin/scienceqa-7b.yaml"), "--dry-run"});
  EXPECT_EQ(r7.exit_code, 0) << r7.err;
  EXPECT_NE(r7.out.find("trainable                                                                3,781,296"), std::string::npos) << r7.out;
  const auto r13 = mmtune({"train", "--config", config("lavin/scienceqa-13b.yaml"), "--dry-run"});
  EXPECT_EQ(r13.exit_code, 0) << r13.err;
  EXPECT_NE(r13.out.find("5,390,080"), std::string::npos) << r13.out;
}

TEST(Cli, ConfigKeysAndVersion) {
  const auto keys = mmtune({"config", "keys"});
  EXPECT_EQ(keys.exit_code, 0);
  EXPECT_NE(keys.out.find("adapter.mma.clip_router_mode  (one of per_sample_cls | official_lnd_quirk"),
            std::string::npos);
  const auto v = mmtune({"version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("torch 2."), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("gloo"), std::string::npos);
}

}  // namespace test_cli
}  // namespace mmtune::testing
