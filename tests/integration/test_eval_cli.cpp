// `mmtune eval` as a user runs it, on the synthetic ScienceQA set and a LaVIN adapter trained for a
// few steps on the tiny random checkpoints by `mmtune train`:
//   * results.json in the official layout, recounted independently in Python from problems.json
//     (scripts/reference/scienceqa_recount.py: categories, extraction, the unparsable rule);
//   * 2 ranks (Gloo) give the results of 1 process, for generation and for the loss;
//   * the loss task equals the trainer's own validation loss of the same weights;
//   * unknown task / split, another base model, another adapter family: clear errors;
//   * the JSONL tasks (mcq, grounding) run end to end.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/file.h>
#include <unistd.h>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_eval_cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kTrainSteps = 80;  // enough for the tiny model to answer "The answer is X." (mostly)

std::string config_file() { return std::string(kSourceDir) + "/configs/lavin/tiny.yaml"; }

/// Synthetic data + an adapter trained by `mmtune train`, shared by the test processes ctest starts
/// (one per test): the first one makes them under a file lock, the others reuse them until the
/// mmtune binary changes.
class EvalCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::create_directories(kScratchDir);
    const int fd = ::open((std::string(kScratchDir) + "/eval-cli-fixture.lock").c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(fd, 0);
    ::flock(fd, LOCK_EX);
    const std::string stamp = std::to_string(fs::last_write_time(kMmtuneBin).time_since_epoch().count()) + " " +
                              std::to_string(kTrainSteps) + "\n";
    if (read_text(fixture() + "/stamp") != stamp) make_fixture(stamp);
    ::flock(fd, LOCK_UN);
    ::close(fd);
    dir_ = new TempDir();
  }
  static void make_fixture(const std::string& stamp) {
    fs::remove_all(fixture());
    fs::create_directories(fixture());
    const auto data = run_process({kPython, std::string(kSourceDir) + "/scripts/make_synthetic_scienceqa.py", "--out",
                                   sqa(), "--train", "64", "--val", "16", "--test", "30", "--image-size", "32",
                                   "--seed", "0"});
    ASSERT_EQ(data.exit_code, 0) << data.err;
    auto argv = base_args("train");
    for (const std::string& a : {"output_dir=" + run(), "train.max_steps=" + std::to_string(kTrainSteps),
                                 std::string("train.epochs=100"), "train.save_every=" + std::to_string(kTrainSteps),
                                 "train.eval_every=" + std::to_string(kTrainSteps)})
      argv.push_back(a);
    const auto r = run_process(argv, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(280));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(fs::exists(checkpoint() + "/adapter_config.json")) << r.err;
    std::ofstream(fixture() + "/stamp") << stamp;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string fixture() { return std::string(kScratchDir) + "/eval-cli-fixture"; }
  static std::string sqa() { return fixture() + "/sqa"; }
  static std::string run() { return fixture() + "/run"; }
  static std::string checkpoint() { return run() + "/checkpoint-" + std::to_string(kTrainSteps); }
  /// mmtune <verb> --config tiny.yaml with the tiny models and the synthetic data.
  static std::vector<std::string> base_args(const std::string& verb) {
    const std::string tiny = kTinyDir;
    return {kMmtuneBin, verb, "--config", config_file(), "model.path=" + tiny + "/llama-gqa",
            "vision.path=" + tiny + "/clip-vit", "data.root=" + sqa()};
  }
  static std::vector<std::string> eval_args(std::vector<std::string> extra) {
    auto argv = base_args("eval");
    argv.insert(argv.end(), {"--checkpoint", checkpoint(), "--no-progress"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  static ProcessResult eval(std::vector<std::string> extra) {
    return run_process(eval_args(std::move(extra)), {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(240));
  }
  /// The same eval over `world` Gloo ranks; returns rank 0's stderr (fails the test on a non-zero exit).
  static std::string eval_ranks(std::vector<std::string> extra, int world, const std::string& logs) {
    const std::string port = std::to_string(free_port());
    std::vector<int> pids;
    for (int r = 0; r < world; ++r) {
      pids.push_back(spawn_process(eval_args(extra),
                                   {{"RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(world)},
                                    {"LOCAL_RANK", std::to_string(r)}, {"MASTER_ADDR", "127.0.0.1"},
                                    {"MASTER_PORT", port}, {"OMP_NUM_THREADS", "1"}},
                                   logs + ".out" + std::to_string(r), logs + ".err" + std::to_string(r)));
    }
    for (int r = 0; r < world; ++r)
      EXPECT_EQ(wait_process(pids[r], std::chrono::seconds(240)), 0) << read_text(logs + ".err" + std::to_string(r));
    return read_text(logs + ".err0");
  }
  static json read_json(const std::string& path) {
    std::ifstream f(path);
    return json::parse(f);
  }
  static ProcessResult recount(const std::string& results, const std::string& split, const std::string& unparsable,
                               int limit = 0) {
    return run_process({kPython, std::string(kSourceDir) + "/scripts/reference/scienceqa_recount.py", "--data", sqa(),
                        "--results", results, "--split", split, "--unparsable", unparsable, "--limit",
                        std::to_string(limit)});
  }

  static TempDir* dir_;
};
TempDir* EvalCli::dir_ = nullptr;

TEST_F(EvalCli, ScienceQAResultsRecountIndependentlyFromProblemsJson) {
  for (const std::string mode : {"wrong", "random"}) {
    const std::string out = dir_->path() + "/sqa-" + mode + "/results.json";
    const auto r = eval({"--task", "scienceqa", "--split", "test", "--batch-size", "8", "--unparsable", mode,
                         "--output", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* k : {"NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg"})
      EXPECT_NE(r.out.find(k), std::string::npos) << "the table misses " << k << ":\n" << r.out;
    const auto check = recount(out, "test", mode);
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    std::cout << "[ recount " << mode << " ] " << check.out;
    const json j = read_json(out);
    EXPECT_EQ(j["count"], 30);
    EXPECT_EQ(j["args"]["split"], "test");
    EXPECT_EQ(j["args"]["unparsable"], mode);
    EXPECT_EQ(j["timing"]["world_size"], 1);
    EXPECT_TRUE(fs::exists(fs::path(out).parent_path() / "config.yaml")) << "the evaluation's resolved config";
    if (mode == "random") {
      EXPECT_GT(j["correct"].get<int>(), 0) << "a random pick among 2-5 options hits sometimes";
    }
  }
}

TEST_F(EvalCli, TwoRanksGiveTheResultsOfOneProcess) {
  const std::vector<std::string> common{"--task", "scienceqa", "--split", "test", "--batch-size", "4",
                                        "--unparsable", "random"};
  auto one = common, two = common;
  one.insert(one.end(), {"--output", dir_->path() + "/one/results.json"});
  two.insert(two.end(), {"--output", dir_->path() + "/two/results.json"});
  const auto r1 = eval(one);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  const std::string err = eval_ranks(two, 2, dir_->path() + "/two-log");
  const json a = read_json(dir_->path() + "/one/results.json"), b = read_json(dir_->path() + "/two/results.json");
  EXPECT_EQ(b["timing"]["world_size"], 2) << err;
  for (const char* k : {"acc", "correct", "count", "results", "outputs", "categories", "unparsable", "args"})
    EXPECT_EQ(a[k], b[k]) << k;
  EXPECT_EQ(recount(dir_->path() + "/two/results.json", "test", "random").exit_code, 0);

  // the loss: per-batch sums added in batch order, so bitwise equal
  const auto l1 = eval({"--task", "loss", "--split", "val", "--batch-size", "3", "--output", dir_->path() + "/l1.json"});
  ASSERT_EQ(l1.exit_code, 0) << l1.err;
  eval_ranks({"--task", "loss", "--split", "val", "--batch-size", "3", "--output", dir_->path() + "/l2.json"}, 2,
             dir_->path() + "/loss-log");
  const json la = read_json(dir_->path() + "/l1.json"), lb = read_json(dir_->path() + "/l2.json");
  EXPECT_EQ(la["loss"].get<double>(), lb["loss"].get<double>());
  EXPECT_EQ(la["supervised_tokens"], lb["supervised_tokens"]);
  EXPECT_EQ(la["samples"], 16);
}

TEST_F(EvalCli, LossTaskEqualsTheTrainersValidationLossOfTheSameWeights) {
  // the trainer ran validation after its last step (eval_every = max_steps), the step it saved
  std::ifstream m(run() + "/metrics.jsonl");
  double val_loss = -1;
  for (std::string line; std::getline(m, line);) {
    const json j = json::parse(line);
    if (j.contains("val_loss")) val_loss = j["val_loss"].get<double>();
  }
  ASSERT_GT(val_loss, 0) << "no val_loss in metrics.jsonl";
  // same batches as the trainer's validation (micro_batch_size 4, data order)
  const auto r = eval({"--task", "loss", "--split", "val", "--batch-size", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = read_json(checkpoint() + "/eval-loss-val/results.json");
  // The same batches through the same kernels on both sides; only how the per-batch sums are
  // combined and divided may round differently: a few fp32 ulps of the loss on any CPU (1e-6 = ~16)
  EXPECT_NEAR(j["loss"].get<double>(), val_loss, 1e-6 * val_loss);
  EXPECT_NE(r.out.find("loss "), std::string::npos) << r.out;
  std::cout << "[ measured ] eval loss " << j["loss"].get<double>() << ", trainer val_loss " << val_loss << "\n";
}

TEST_F(EvalCli, AnOutputDirEvaluatesItsLatestCheckpointAndWritesBesideIt) {
  auto argv = base_args("eval");
  argv.insert(argv.end(), {"--checkpoint", run(), "--no-progress", "--split", "minitest"});  // task from eval.task
  const auto r = run_process(argv, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(240));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string out = checkpoint() + "/eval-scienceqa-minitest/results.json";
  ASSERT_TRUE(fs::exists(out)) << r.err;
  EXPECT_EQ(read_json(out)["count"], 3);
  EXPECT_EQ(recount(out, "minitest", "wrong").exit_code, 0);
  EXPECT_NE(r.err.find("results: " + out), std::string::npos) << r.err;
}

TEST_F(EvalCli, UnknownTaskOrSplitIsAClearError) {
  const auto task = eval({"--task", "sciencqa"});
  EXPECT_EQ(task.exit_code, 2);
  EXPECT_NE(task.err.find("unknown eval task 'sciencqa'"), std::string::npos) << task.err;
  EXPECT_NE(task.err.find("did you mean scienceqa?"), std::string::npos) << task.err;
  const auto split = eval({"--task", "scienceqa", "--split", "tset"});
  EXPECT_EQ(split.exit_code, 1);
  EXPECT_NE(split.err.find("no split 'tset'"), std::string::npos) << split.err;
  EXPECT_NE(split.err.find("available splits:"), std::string::npos) << split.err;
  const auto mcq_split = eval({"--task", "mcq", "--split", "test", "--data", "x.jsonl"});
  EXPECT_EQ(mcq_split.exit_code, 2);
  EXPECT_NE(mcq_split.err.find("--split does not apply to --task mcq"), std::string::npos) << mcq_split.err;
  const auto ppl = eval({"--task", "perplexity", "--data", config_file()});
  EXPECT_EQ(ppl.exit_code, 2);
  EXPECT_NE(ppl.err.find("takes no --checkpoint"), std::string::npos) << ppl.err;
  auto argv = base_args("eval");
  argv.insert(argv.end(), {"--checkpoint", dir_->path() + "/nope"});
  const auto missing = run_process(argv);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no such checkpoint directory"), std::string::npos) << missing.err;
}

TEST_F(EvalCli, ACheckpointOfAnotherBaseModelIsRefused) {
  const auto r = eval({"--task", "scienceqa", "--limit", "2", "model.path=" + std::string(kTinyDir) + "/llama-mha-tied"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("was trained on another base"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("base_model.num_layers 3 (this model: 2)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("base_model.id: llama-gqa"), std::string::npos) << r.err;
}

TEST_F(EvalCli, AnAdapterOnAnotherPrecisionOfItsBaseLoadsAndSaysSo) {
  // the fixture's run trained on the fp32 base, unquantized; adapter_config.json records that
  const json cfg = read_json(checkpoint() + "/adapter_config.json");
  EXPECT_EQ(cfg["base_model"]["dtype"], "fp32");
  EXPECT_EQ(cfg["base_model"]["quantize"], "none");
  EXPECT_EQ(cfg["vision_model"]["quantize"], "none");
  // QLoRA's use: the same adapter on an int8 base is loaded (not refused) and the difference named
  const auto r = eval({"--task", "scienceqa", "--limit", "2", "model.quantize=int8"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("the adapter was trained with model.quantize none (now int8)"), std::string::npos) << r.err;
  const auto same = eval({"--task", "scienceqa", "--limit", "2"});
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(same.err.find("the adapter was trained with"), std::string::npos) << "same precision: nothing to say";
}

TEST_F(EvalCli, AnAdapterOfAnotherFamilyIsRefused) {
  // the config asks for LoRA, the checkpoint holds LaVIN's MMA
  const auto r = eval({"--task", "scienceqa", "--limit", "2", "adapter.family=lora"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("holds a 'mma' adapter, but the config builds adapter.family 'lora'"), std::string::npos) << r.err;
  // an adapter_config.json that names another family than its weights: the tensors do not fit
  TempDir d;
  fs::copy(checkpoint(), d.path() + "/ck");
  json cfg = read_json(d.path() + "/ck/adapter_config.json");
  cfg["family"] = "lora";
  cfg["adapter"]["family"] = "lora";
  std::ofstream(d.path() + "/ck/adapter_config.json") << cfg.dump();
  auto argv = base_args("eval");
  argv.insert(argv.end(), {"--checkpoint", d.path() + "/ck", "--limit", "2", "adapter.family=none"});
  const auto r2 = run_process(argv, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
  EXPECT_EQ(r2.exit_code, 1);
  EXPECT_NE(r2.err.find("does not fit the model"), std::string::npos) << r2.err;
}

TEST_F(EvalCli, ChoiceAndGroundingJsonlTasksRunEndToEnd) {
  // items on the synthetic pictures: yes/no, multiple choice, text-only
  const json problems = read_json(sqa() + "/problems.json");
  std::ostringstream mcq, grd;
  int n = 0;
  for (const auto& [pid, p] : problems.items()) {
    if (p["image"].is_null() || p["split"] != "test" || n >= 6) continue;
    const std::string image = sqa() + "/images/test/" + pid + "/" + p["image"].get<std::string>();
    mcq << json{{"id", "yn" + pid}, {"image", image}, {"question", "Is there a shape?"}, {"answer", n % 2 ? "yes" : "no"}}.dump()
        << "\n";
    mcq << json{{"id", "mc" + pid}, {"image", image}, {"question", p["question"]}, {"choices", p["choices"]},
                {"answer", p["answer"]}}.dump()
        << "\n";
    grd << json{{"id", "g" + pid}, {"image", image}, {"expression", "the big shape"}, {"box", {0.1, 0.1, 0.9, 0.9}}}.dump()
        << "\n";
    ++n;
  }
  mcq << json{{"id", "text"}, {"question", "Is two more than one?"}, {"answer", "yes"}}.dump() << "\n";
  const std::string pope = dir_->write("pope.jsonl", mcq.str()), refs = dir_->write("refs.jsonl", grd.str());

  const auto r = eval({"--task", "mcq", "--data", pope, "--batch-size", "5", "--output", dir_->path() + "/mcq/results.json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = read_json(dir_->path() + "/mcq/results.json");
  EXPECT_EQ(j["count"], 13);
  EXPECT_EQ(j["yes_no"]["count"], 7);
  EXPECT_EQ(j["choices"]["count"], 6);
  EXPECT_EQ(j["outputs"].size(), 13u);
  const auto t = j["yes_no"];
  EXPECT_EQ(t["tp"].get<int>() + t["fp"].get<int>() + t["tn"].get<int>() + t["fn"].get<int>() <= 7, true);
  EXPECT_NE(r.out.find("accuracy"), std::string::npos) << r.out;

  const auto g = eval({"--task", "grounding", "--data", refs});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const json gj = read_json(checkpoint() + "/eval-grounding-refs/results.json");
  EXPECT_EQ(gj["count"], 6);
  EXPECT_NE(g.out.find("precision@0.5"), std::string::npos) << g.out;
}

TEST_F(EvalCli, MoleAndIaaCheckpointsEvaluateThroughTheSameTasks) {
  const std::string tiny = kTinyDir;
  for (const std::string family : {"mole", "iaa"}) {
    const std::string cfg = std::string(kSourceDir) + "/configs/" + family + "/tiny.yaml", out = dir_->path() + "/" + family;
    const std::vector<std::string> common{"model.path=" + tiny + "/llama-gqa", "vision.path=" + tiny + "/clip-vit"};
    std::vector<std::string> sqa_data{"data.format=scienceqa", "data.root=" + sqa()};
    auto train = std::vector<std::string>{kMmtuneBin, "train", "--config", cfg, "output_dir=" + out, "train.max_steps=2",
                                          "train.save_every=2"};
    train.insert(train.end(), common.begin(), common.end());
    train.insert(train.end(), sqa_data.begin(), sqa_data.end());
    const auto t = run_process(train, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
    ASSERT_EQ(t.exit_code, 0) << t.err;
    auto eval_argv = [&](std::vector<std::string> extra, bool scienceqa_data) {
      std::vector<std::string> a{kMmtuneBin, "eval", "--config", cfg, "--checkpoint", out, "--no-progress"};
      a.insert(a.end(), common.begin(), common.end());
      if (scienceqa_data) a.insert(a.end(), sqa_data.begin(), sqa_data.end());
      a.insert(a.end(), extra.begin(), extra.end());
      return a;
    };
    const auto q = run_process(eval_argv({"--split", "minitest", "--output", out + "/q.json"}, true),
                               {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
    ASSERT_EQ(q.exit_code, 0) << family << "\n" << q.err;
    EXPECT_EQ(recount(out + "/q.json", "minitest", "wrong").exit_code, 0) << family;
    const auto l = run_process(eval_argv({"--task", "loss", "--split", "val", "--limit", "6", "--output", out + "/l.json"}, true),
                               {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
    ASSERT_EQ(l.exit_code, 0) << family << "\n" << l.err;
    EXPECT_GT(read_json(out + "/l.json")["loss"].get<double>(), 0) << family;
    // the family's own prompt template (data.format llava_json, vicuna_v1) for a JSONL task
    const std::string pope = dir_->write("yn.jsonl", "{\"id\": \"a\", \"question\": \"Is it?\", \"answer\": \"yes\"}\n"
                                                    "{\"id\": \"b\", \"question\": \"Which?\", \"choices\": [\"x\", \"y\"], "
                                                    "\"answer\": \"A\"}\n");
    const auto m = run_process(eval_argv({"--task", "mcq", "--data", pope, "--output", out + "/m.json"}, false),
                               {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
    ASSERT_EQ(m.exit_code, 0) << family << "\n" << m.err;
    EXPECT_EQ(read_json(out + "/m.json")["count"], 2) << family;
  }
}

}  // namespace test_eval_cli
}  // namespace mmtune::testing
