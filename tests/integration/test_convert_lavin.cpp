// scripts/convert_lavin_checkpoint.py on fake official LaVIN checkpoints (LaVIN's parameter names
// and shapes for the tiny models, made by scripts/reference/make_lavin_checkpoint.py): the
// converted adapter holds exactly the original tensors under mmtune's names, its config records
// LaVIN's options, and bad files exit 1 with a one-line message and leave nothing behind. The
// checks on the output run in Python (safetensors), so this test needs no C++ adapter loader.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_convert_lavin {

namespace fs = std::filesystem;

ProcessResult python(std::vector<std::string> args) {
  args.insert(args.begin(), kPython);
  return run_process(args, {}, std::chrono::seconds(120));
}

std::string script(const std::string& rel) { return std::string(kSourceDir) + "/scripts/" + rel; }

// Makes the fake checkpoints into dir/lv (extra: make_lavin_checkpoint.py options).
void make_fakes(const std::string& dir, std::vector<std::string> extra = {}) {
  const std::string tiny = kTinyDir;
  std::vector<std::string> args{script("reference/make_lavin_checkpoint.py"), "--llama", tiny + "/llama-gqa", "--clip",
                                tiny + "/clip-vit", "--out", dir + "/lv"};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = python(args);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
}

ProcessResult convert(const std::string& input, const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{script("convert_lavin_checkpoint.py"), "--input", input, "--out", out,
                                "--cls-every", "1", "--image-size", "32"};
  args.insert(args.end(), extra.begin(), extra.end());
  return python(args);
}

// Compares out/adapter_model.safetensors with the expected tensors (same names, bitwise, fp32) and
// prints the config fields the tests check, space separated.
const char* kCheck = R"(
import json, sys, torch
from safetensors.torch import load_file
want, got = load_file(sys.argv[1]), load_file(sys.argv[2] + '/adapter_model.safetensors')
assert sorted(want) == sorted(got), sorted(set(want) ^ set(got))[:5]
bad = [k for k in want if got[k].dtype != torch.float32 or not torch.equal(want[k], got[k])]
assert not bad, bad[:5]
j = json.load(open(sys.argv[2] + '/adapter_config.json'))
m = j['adapter']['mma']
print(j['format'], j['family'], m['dim'], m['temperature'], m['scale'], m['llm_placement'], m['vision_placement'],
      m['clip_router_mode'], m['rope_decode_offset'], j['vision']['cls_every'], j['vision']['projector_hidden'],
      j['base_model']['hidden_size'], j['base_model']['num_layers'], j['vision_model']['hidden_size'],
      j['vision_model']['num_layers'], j['trainable_parameters'])
)";

std::string check(const std::string& expected, const std::string& out) {
  const auto r = python({"-c", kCheck, expected, out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(ConvertLavin, OfficialCheckpointsBecomeTheSameTensorsUnderMmtuneNames) {
  TempDir d;
  make_fakes(d.path());
  const std::string lv = d.path() + "/lv/", expected = lv + "expected.safetensors";
  // plain and DDP ("module.") names; args.temperature (5) is read from the pickled Namespace
  for (const std::string name : {"checkpoint-19", "checkpoint-19-ddp"}) {
    const auto r = convert(lv + name + ".pth", d.path() + "/" + name);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(check(expected, d.path() + "/" + name),
              "mmtune.adapter mma 8 5.0 1.0 attn router official_lnd_quirk 0 1 16 64 3 64 4 11286\n")
        << name;
  }
  // without args: LaVIN's defaults, said on stderr; --clean: per-sample CLIP routing, clean positions
  auto r = convert(lv + "checkpoint-noargs.pth", d.path() + "/noargs", {"--clean"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("no args.temperature"), std::string::npos) << r.err;
  EXPECT_EQ(check(expected, d.path() + "/noargs"),
            "mmtune.adapter mma 8 10.0 1.0 attn router per_sample_cls 1 1 16 64 3 64 4 11286\n");
  // an explicit flag wins over args
  r = convert(lv + "checkpoint-19.pth", d.path() + "/t7", {"--temperature", "7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(check(expected, d.path() + "/t7").find(" 7.0 "), std::string::npos);
}

TEST(ConvertLavin, BlockPlacementsAreDetectedFromTheTensors) {
  TempDir d;
  make_fakes(d.path(), {"--llm-placement", "block", "--vision-placement", "router_block"});
  const auto r = convert(d.path() + "/lv/checkpoint-19.pth", d.path() + "/out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 3 LLM blocks x 2 x 1,290 + 4 ViT blocks x 2 x 1,290 + neck 2,128 + modality 128
  EXPECT_EQ(check(d.path() + "/lv/expected.safetensors", d.path() + "/out"),
            "mmtune.adapter mma 8 5.0 1.0 block router_block official_lnd_quirk 0 1 16 64 3 64 4 20316\n");
}

TEST(ConvertLavin, BadCheckpointsExitOneWithOneLineAndWriteNothing) {
  TempDir d;
  make_fakes(d.path());
  const std::string lv = d.path() + "/lv/";
  const std::vector<std::pair<std::string, std::string>> cases{
      {lv + "bad-missing.pth", "not a LaVIN checkpoint: missing layers.1.adapter_attn.conv_D.bias"},
      {lv + "bad-unknown.pth", "unknown tensors layers.0.adapter_gate.weight"},
      {lv + "bad-normal.pth", "plain RepAdapter (visual_adapter_type 'normal'"},
      {lv + "garbage.pth", "not a torch checkpoint"},
      {lv + "evil.pth", "refused to unpickle: it references posix.getcwd"},
      {lv + "expected.safetensors", "not a torch checkpoint"},
      {lv + "nope.pth", "nope.pth: not found"},
      {lv, "is a directory"},
  };
  for (const auto& [input, needle] : cases) {
    const std::string out = d.path() + "/out";
    const auto r = convert(input, out);
    EXPECT_EQ(r.exit_code, 1) << input << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "not one line:\n" << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out)) << input;
  }
  // an existing output is kept unless --force
  ASSERT_EQ(convert(lv + "checkpoint-19.pth", d.path() + "/out").exit_code, 0);
  const auto again = convert(lv + "checkpoint-19-ddp.pth", d.path() + "/out");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  EXPECT_EQ(convert(lv + "checkpoint-19-ddp.pth", d.path() + "/out", {"--force"}).exit_code, 0);
  // no temp directories left behind
  for (const auto& e : fs::directory_iterator(d.path())) {
    EXPECT_NE(e.path().filename().string().front(), '.') << e.path();
  }
}

}  // namespace test_convert_lavin
}  // namespace mmtune::testing
