// The demo's ViT path (scripts/demo.sh, scripts/demo_vit.py, configs/demo-vit.yaml) on the tiny
// checkpoints: a few `train.trainable: all` steps, then the export keeps exactly the checkpoint's
// trained ViT tensors under Hugging Face names, and mmtune loads the result as a vision.path.
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>

#include "test_paths.h"
#include "test_utils.h"
#include <mmtune/io/safetensors.h>
#include <mmtune/model/clip_vit.h>

namespace mmtune::testing {
namespace test_demo_vit {

namespace fs = std::filesystem;

ProcessResult demo_vit(const std::vector<std::string>& args) {
  std::vector<std::string> argv{kPython, std::string(kSourceDir) + "/scripts/demo_vit.py"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, {{"OMP_NUM_THREADS", "1"}});
}

TEST(DemoVit, FullTrainingExportsTheTrainedVitAsAClipVisionModel) {
  TempDir d;
  const std::string init = std::string(kTinyDir) + "/clip-vit", vqa = d.path() + "/vqa",
                    run = d.path() + "/run", out = d.path() + "/vit";
  auto r = demo_vit({"vqa", "--root", kSyntheticSqaDir, "--out", vqa});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_process(
      {kMmtuneBin, "train", "--config", std::string(kSourceDir) + "/configs/demo-vit.yaml",
       "output_dir=" + run, std::string("model.path=") + kTinyDir + "/llama-gqa",
       "vision.path=" + init, "data.json=" + vqa + "/train.json",
       std::string("data.image_folder=") + kSyntheticSqaDir + "/images", "train.max_steps=2",
       "train.micro_batch_size=4", "train.global_batch_size=4"},
      {{"OMP_NUM_THREADS", "1"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string ckpt = run + "/checkpoint-2";
  r = demo_vit({"export", "--checkpoint", ckpt, "--init", init, "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // every tensor of the init, with the trained values of the checkpoint's "vision.vision_model.*"
  const auto trained = io::SafetensorsCheckpoint::open(ckpt + "/adapter_model.safetensors");
  const auto exported = io::SafetensorsCheckpoint::open(out);
  const auto original = io::SafetensorsCheckpoint::open(init);
  ASSERT_EQ(exported.names(), original.names());
  int changed = 0;
  for (const auto& name : exported.names()) {
    const std::string hf = name.rfind("vision_model.", 0) == 0 ? name.substr(13) : name;
    const torch::Tensor t = exported.tensor(name);
    EXPECT_TRUE(torch::equal(t, trained.tensor("vision.vision_model." + hf))) << name;
    changed += !torch::equal(t, original.tensor(name));
  }
  EXPECT_GT(changed, 0) << "two steps of full training changed no ViT tensor";
  EXPECT_EQ(read_text(out + "/config.json"), read_text(init + "/config.json"));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  const auto vit = model::load_clip_vision(out, torch::TensorOptions().dtype(torch::kFloat32));
  EXPECT_EQ(vit->config().num_layers,
            model::load_clip_vision(init, torch::TensorOptions())->config().num_layers);

  // an adapter-only checkpoint holds no ViT: refused with a hint
  const std::string adapter_only = d.path() + "/adapter-only";
  fs::copy(ckpt, adapter_only);
  std::string cfg = read_text(adapter_only + "/adapter_config.json");
  const auto at = cfg.find("\"trainable\": \"all\"");
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.replace(at, std::string("\"trainable\": \"all\"").size(), "\"trainable\": \"adapter\"");
  std::ofstream(adapter_only + "/adapter_config.json") << cfg;
  r = demo_vit(
      {"export", "--checkpoint", adapter_only, "--init", init, "--out", d.path() + "/refused"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("train.trainable"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(d.path() + "/refused"));
}

}  // namespace test_demo_vit
}  // namespace mmtune::testing
