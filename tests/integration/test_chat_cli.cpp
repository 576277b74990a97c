// `mmtune chat` scripted through a pipe on the tiny checkpoints (issue 7 item 3): one answer line
// per message, greedy runs identical, /clear really forgets, a missing picture is an error the
// session survives, and a checkpoint of another base or family is refused with a clear message.
#include <gtest/gtest.h>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/strings.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>

#include <filesystem>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_chat_cli {

std::string tiny(const std::string& name) {
  return std::string(kTinyDir) + "/" + name;
}
std::string config(const std::string& rel) {
  return std::string(kSourceDir) + "/configs/" + rel;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < s.size()) {
    const size_t nl = s.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(s.substr(start));
      break;
    }
    lines.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// A 48x40 RGB gradient with a square, written by the setup venv's PIL.
std::string write_picture(const TempDir& d) {
  const std::string path = d.path() + "/picture.png";
  const std::string script =
      "import sys\nfrom PIL import Image\nim = Image.new('RGB', (48, 40))\n"
      "im.putdata([(x * 5, y * 6, 255 if 10 <= x < 30 and 8 <= y < 28 else 40) for y in range(40) "
      "for x in range(48)])\n"
      "im.save(sys.argv[1])\n";
  const auto r = run_process({kPython, "-c", script, path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path;
}

// A LaVIN adapter with random non-zero weights (a fresh one is the identity on the base).
std::string write_lavin_checkpoint(const TempDir& d) {
  const config::RunConfig cfg =
      config::load_config(config("lavin/tiny.yaml"),
                          {"model.path=" + tiny("llama-gqa"), "vision.path=" + tiny("clip-vit")},
                          adapters::builtin_adapters());
  runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kLoad);
  torch::manual_seed(11);
  {
    torch::NoGradGuard ng;
    for (auto& [name, t] : built.trainable) t.normal_(0.0, 0.3);
  }
  const std::string dir = d.path() + "/lavin-ckpt";
  runtime::save_adapter(dir, cfg, built);
  return dir;
}

// `mmtune chat ARGS` with `input` piped to stdin.
ProcessResult chat(const TempDir& d, const std::vector<std::string>& args,
                   const std::string& input) {
  const std::string in = d.write("input.txt", input);
  std::string cmd = "exec '" + std::string(kMmtuneBin) + "' chat";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " < '" + in + "'";
  return run_process({"/bin/sh", "-c", cmd}, {}, std::chrono::seconds(120));
}

std::vector<std::string> lavin_args(const std::string& checkpoint = "") {
  std::vector<std::string> a{"--config",
                             config("lavin/tiny.yaml"),
                             "model.path=" + tiny("llama-gqa"),
                             "vision.path=" + tiny("clip-vit"),
                             "--temperature",
                             "0",
                             "--max-new-tokens",
                             "8"};
  if (!checkpoint.empty()) {
    a.push_back("--checkpoint");
    a.push_back(checkpoint);
  }
  return a;
}

TEST(ChatCli, ScriptedSessionIsDeterministicAndClearForgets) {
  TempDir d;
  const std::string picture = write_picture(d), ckpt = write_lavin_checkpoint(d);
  const std::string script =
      "the cell is a science word\n/image " + picture +
      "\nwhat colour is the square in the image?\n/clear\nthe cell is a science word\n";
  const auto first = chat(d, lavin_args(ckpt), script);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto lines = split_lines(first.out);
  ASSERT_EQ(lines.size(), 3u) << "one answer line per message:\n"
                              << first.out << "\nstderr:\n"
                              << first.err;
  for (const auto& l : lines) EXPECT_FALSE(l.empty()) << first.out;
  // /clear forgot the first exchange and the picture: the same message gets the same answer
  EXPECT_EQ(lines[2], lines[0]);
  EXPECT_NE(first.err.find("picture attached"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("conversation cleared"), std::string::npos) << first.err;

  const auto second = chat(d, lavin_args(ckpt), script);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, first.out);

  // the picture reached the model: the same question without it is answered through the text path
  const auto blind = chat(d, lavin_args(ckpt),
                          "the cell is a science word\nwhat colour is the square in the image?\n");
  ASSERT_EQ(blind.exit_code, 0) << blind.err;
  const auto blind_lines = split_lines(blind.out);
  ASSERT_EQ(blind_lines.size(), 2u) << blind.out;
  EXPECT_EQ(blind_lines[0], lines[0]);
  EXPECT_NE(blind_lines[1], lines[1]) << "the image turn should differ from the text-only one";
}

TEST(ChatCli, MissingPictureIsAnErrorAndTheSessionGoesOn) {
  TempDir d;
  const auto plain = chat(d, lavin_args(), "hello\nhow are you\n");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto r = chat(d, lavin_args(),
                      "hello\n/image /nonexistent/cat.png\nhow are you\n/bogus\n/workflow mm\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/cat.png"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unknown command /bogus"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no IAA workflows"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, plain.out) << "the failed /image changed nothing";
  EXPECT_EQ(split_lines(r.out).size(), 2u) << r.out;
}

TEST(ChatCli, ABadImageFlagEndsTheRunAndSaysSo) {
  // issue 20: --image missing.png exited 1 with the /image hint "the session goes on without it"
  TempDir d;
  auto args = lavin_args();
  args.insert(args.end(), {"--image", "/nonexistent/cat.png"});
  const auto r = chat(d, args, "hello\n");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/cat.png"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint: check the --image path"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("goes on"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(ChatCli, APictureFromAPipeIsKeptForEveryTurn) {
  // `--image <(curl -s URL)` hands over a pipe, which can be read once, while the session reads its
  // picture on every turn: the first answer already failed with "image file is empty". Now the
  // answers equal those for the file itself, and the copy the session keeps goes when it ends.
  TempDir d;
  const std::string picture = write_picture(d), ckpt = write_lavin_checkpoint(d);
  const std::string script = "what colour is the square?\nand the background?\n";
  auto file_args = lavin_args(ckpt);
  file_args.insert(file_args.end(), {"--image", picture});
  const auto from_file = chat(d, file_args, script);
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  ASSERT_EQ(split_lines(from_file.out).size(), 2u) << from_file.out;

  const std::string in = d.write("input.txt", script), tmp = d.path() + "/tmp";
  std::filesystem::create_directories(tmp);
  auto through_pipe = [&](const std::string& producer) {
    std::string cmd = "TMPDIR='" + tmp + "' exec '" + std::string(kMmtuneBin) + "' chat";
    for (const auto& a : lavin_args(ckpt)) cmd += " '" + a + "'";
    cmd += " --image <(" + producer + ") < '" + in + "'";
    return run_process({"/bin/bash", "-c", cmd}, {}, std::chrono::seconds(120));
  };
  const auto from_pipe = through_pipe("cat '" + picture + "'");
  ASSERT_EQ(from_pipe.exit_code, 0) << from_pipe.err;
  EXPECT_EQ(from_pipe.out, from_file.out) << from_pipe.err;
  EXPECT_TRUE(std::filesystem::is_empty(tmp)) << "the session's copy of the picture was left in " << tmp;

  // a pipe that holds no picture is named as the user gave it, not by the session's copy
  const auto junk = through_pipe("echo not a picture");
  EXPECT_EQ(junk.exit_code, 1) << junk.err;
  EXPECT_NE(junk.err.find("/dev/fd/"), std::string::npos) << junk.err;
  EXPECT_NE(junk.err.find("cannot decode image"), std::string::npos) << junk.err;
  EXPECT_EQ(junk.err.find("mmtune-chat-"), std::string::npos) << junk.err;
  EXPECT_TRUE(std::filesystem::is_empty(tmp)) << tmp;
}

TEST(ChatCli, ATrainingOutputDirMeansItsLatestCheckpointAsInEval) {
  // issue 20: `chat --checkpoint runs/X` (as the README shows) failed where eval resolved it
  TempDir d;
  const std::string out = d.path() + "/run";
  const auto t = run_process({kMmtuneBin, "train", "--config", config("lavin/tiny.yaml"), "model.path=" + tiny("llama-gqa"),
                              "vision.path=" + tiny("clip-vit"), std::string("data.root=") + kSyntheticSqaDir,
                              "output_dir=" + out, "train.max_steps=2", "train.save_every=1", "data.num_workers=0"},
                             {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(180));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const auto r = chat(d, lavin_args(out), "hello\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(out + "/checkpoint-2"), std::string::npos) << "the latest one:\n" << r.err;
  EXPECT_EQ(split_lines(r.out).size(), 1u) << r.out;
  // the same run through --checkpoint DIR/checkpoint-2 answers alike
  const auto direct = chat(d, lavin_args(out + "/checkpoint-2"), "hello\n");
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  EXPECT_EQ(direct.out, r.out);
}

TEST(ChatCli, IaaSessionSwitchesWorkflows) {
  TempDir d;
  const std::string picture = write_picture(d);
  const std::vector<std::string> args{"--config",
                                      config("iaa/tiny.yaml"),
                                      "model.path=" + tiny("llama-gqa"),
                                      "vision.path=" + tiny("clip-vit"),
                                      "--temperature",
                                      "0",
                                      "--max-new-tokens",
                                      "6"};
  const std::string script = "hello\n/workflow\n/image " + picture +
                             "\nwhat is it?\n/workflow nope\n/workflow text\nmore?\n";
  const auto r = chat(d, args, script);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("workflows: text, mm; now: auto"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no workflow 'nope'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the text workflow cannot see the picture"), std::string::npos) << r.err;
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;  // the refused turn still has its (empty) line
  EXPECT_TRUE(lines[2].empty()) << r.out;
  EXPECT_EQ(chat(d, args, script).out, r.out);
}

TEST(ChatCli, CheckpointOfAnotherBaseOrFamilyIsRefused) {
  TempDir d;
  const std::string ckpt = write_lavin_checkpoint(d);
  std::vector<std::string> other_base = lavin_args(ckpt);
  other_base[2] = "model.path=" + tiny("llama-mha-tied");
  const auto base = chat(d, other_base, "hello\n");
  EXPECT_EQ(base.exit_code, 1) << base.err;
  EXPECT_NE(base.err.find("was trained on another base"), std::string::npos) << base.err;
  EXPECT_NE(base.err.find("num_layers 3 (this model: 2)"), std::string::npos) << base.err;
  EXPECT_TRUE(base.out.empty()) << base.out;

  const auto family = chat(d,
                           {"--config", config("mole/tiny.yaml"), "model.path=" + tiny("llama-gqa"),
                            "vision.path=" + tiny("clip-vit"), "--checkpoint", ckpt},
                           "hello\n");
  EXPECT_EQ(family.exit_code, 1) << family.err;
  EXPECT_NE(family.err.find("holds a 'mma' adapter, but the config builds adapter.family 'mole'"),
            std::string::npos)
      << family.err;

  const auto missing = chat(d, lavin_args(d.path() + "/no-such-checkpoint"), "hello\n");
  EXPECT_EQ(missing.exit_code, 1) << missing.err;
  EXPECT_NE(missing.err.find("no-such-checkpoint"), std::string::npos) << missing.err;
}

}  // namespace test_chat_cli
}  // namespace mmtune::testing
