// The grounding workflow end to end (issue 8 item 6): RefCOCO-style JSONL
// (scripts/make_synthetic_grounding.py) -> LLaVA conversations (scripts/grounding_to_llava.py) ->
// `mmtune train` (IAA, tiny checkpoints) -> `mmtune eval --task grounding` (P@0.5), with the
// results recounted in Python from the answers; the converter asks the eval's question and writes
// boxes as the eval parses them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include <mmtune/eval/grounding.h>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_grounding {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

ProcessResult script(const std::string& name, std::vector<std::string> args) {
  args.insert(args.begin(), {kPython, std::string(kSourceDir) + "/scripts/" + name});
  return run_process(args, {{"OMP_NUM_THREADS", "1"}});
}

TEST(Grounding, ConverterAsksTheEvalsQuestionAndWritesTheEvalsBoxes) {
  TempDir d;
  const std::string in = d.write("g.jsonl",
                                 "{\"id\": \"a\", \"image\": \"a.png\", \"expression\": \"the red circle\", "
                                 "\"box\": [0.5, 0.0, 0.90625, 0.4]}\n"
                                 "{\"id\": 7, \"image\": \"b.png\", \"question\": \"left dog\", \"box\": [0, 0.125, 1, 0.375]}\n");
  const auto r = script("grounding_to_llava.py", {"--in", in, "--out", d.path() + "/g.json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = read_json(d.path() + "/g.json");
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["conversations"][0]["value"], "<image>\n" + eval::grounding_query("the red circle"));
  EXPECT_EQ(j[0]["conversations"][1]["value"], eval::format_box({0.5, 0.0, 0.90625, 0.4}));
  EXPECT_EQ(j[1]["id"], "7");
  EXPECT_EQ(j[1]["conversations"][0]["value"], "<image>\n" + eval::grounding_query("left dog"));
  EXPECT_EQ(j[1]["conversations"][1]["value"], eval::format_box({0, 0.125, 1, 0.375}));  // "[0.00, 0.12, 1.00, 0.38]"
  // a bad line names the file and line, writes nothing
  const std::string bad = d.write("bad.jsonl", "{\"id\": \"a\", \"image\": \"a.png\", \"expression\": \"x\", \"box\": [1, 2]}\n");
  const auto b = script("grounding_to_llava.py", {"--in", bad, "--out", d.path() + "/bad.json"});
  EXPECT_NE(b.exit_code, 0);
  EXPECT_NE(b.err.find("bad.jsonl:1"), std::string::npos) << b.err;
  EXPECT_FALSE(fs::exists(d.path() + "/bad.json"));
}

TEST(Grounding, IaaTrainsOnGroundingDataAndIsScoredAtPrecision05) {
  TempDir d;
  const std::string data = d.path() + "/grounding", run = d.path() + "/run";
  auto r = script("make_synthetic_grounding.py", {"--out", data, "--train", "24", "--val", "0", "--test", "6"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = script("grounding_to_llava.py", {"--in", data + "/train.jsonl", "--out", data + "/train.json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string cfg = std::string(kSourceDir) + "/configs/iaa/tiny.yaml";
  const std::vector<std::string> common{"model.path=" + std::string(kTinyDir) + "/llama-gqa",
                                        "vision.path=" + std::string(kTinyDir) + "/clip-vit",
                                        "data.image_folder=" + data + "/images"};
  std::vector<std::string> train{kMmtuneBin, "train", "--config", cfg, "output_dir=" + run, "data.json=" + data + "/train.json",
                                 "train.max_steps=3", "train.save_every=3", "data.num_workers=0"};
  train.insert(train.end(), common.begin(), common.end());
  r = run_process(train, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> ev{kMmtuneBin, "eval", "--config", cfg, "--checkpoint", run, "--task", "grounding",
                              "--data", data + "/test.jsonl", "--no-progress", "--output", d.path() + "/g.json",
                              "eval.generation.max_new_tokens=12"};
  ev.insert(ev.end(), common.begin(), common.end());
  r = run_process(ev, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("precision@0.5"), std::string::npos) << r.out;
  const json res = read_json(d.path() + "/g.json");
  EXPECT_EQ(res["count"], 6);
  // recounted in Python from the answers and the JSONL: the first [a, b, c, d] boxes, IoU >= 0.5
  const std::string recount =
      "import json, re, sys\n"
      "res = json.load(open(sys.argv[1]))\n"
      "items = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]\n"
      "num = r'\\s*(-?[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\\s*'\n"
      "pat = re.compile(r'\\[' + ','.join([num] * 4) + r'\\]')\n"
      "def iou(a, b):\n"
      "    w = min(a[2], b[2]) - max(a[0], b[0]); h = min(a[3], b[3]) - max(a[1], b[1])\n"
      "    if w <= 0 or h <= 0 or a[2] <= a[0] or a[3] <= a[1]: return 0.0\n"
      "    i = w * h; return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)\n"
      "correct = 0\n"
      "for it in items:\n"
      "    boxes = [[float(v) for v in m] for m in pat.findall(res['outputs'][it['id']])]\n"
      "    ok = any(iou(b, it['box']) >= 0.5 for b in boxes)\n"
      "    assert ok == res['results'][it['id']]['correct'], it['id']\n"
      "    correct += ok\n"
      "assert correct == res['correct'], (correct, res['correct'])\n"
      "assert abs(100.0 * correct / len(items) - res['precision_at_0.5']) < 1e-9\n";
  r = run_process({kPython, "-c", recount, d.path() + "/g.json", data + "/test.jsonl"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace test_grounding
}  // namespace mmtune::testing
