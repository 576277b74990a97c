// Plain LoRA interop (issue 9): an adapter exported by mmtune loads in the Python peft library with
// the same logits, an adapter made by peft loads in mmtune with the same logits, merged = unmerged,
// and what mmtune's LoRA cannot compute is refused with a named error.
#include <gtest/gtest.h>

#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/lora.h>
#include <mmtune/adapters/peft.h>
#include <mmtune/core/errors.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/weights.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::adapters {
namespace test_lora_peft {

using mmtune::testing::TempDir;

const std::string kModel = std::string(testing::kTinyDir) + "/llama-gqa";

config::AdapterConfig adapter_of(const LoraConfig& c) {
  config::AdapterConfig a;
  a.family = "lora";
  a.options["lora"] = std::make_unique<LoraConfig>(c);
  return a;
}

LoraConfig options(int64_t rank, double alpha, std::vector<std::string> targets, std::vector<int64_t> layers = {}) {
  LoraConfig c;
  c.rank = rank;
  c.alpha = alpha;
  c.dropout = 0.0;
  c.targets = std::move(targets);
  c.layers = std::move(layers);
  return c;
}

model::LlamaDecoder lora_model(const LoraConfig& c, uint64_t seed, double std = 0.3) {
  auto m = model::load_llama(kModel, torch::kFloat32);
  const auto trainable = attach_to_llama(*m, adapter_of(c));
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& p : trainable) p.copy_(torch::randn_like(p) * std);  // B non-zero: the adapter matters
  return m;
}

torch::Tensor logits_of(model::LlamaDecoderImpl& m, const torch::Tensor& ids, const torch::Tensor& mask) {
  ForwardContext ctx;
  torch::NoGradGuard ng;
  return m.forward({ids, {}, mask, {}}, nullptr, ctx);
}

// max over real positions of |mmtune - reference| for the batch stored in dir/ref.safetensors
double diff_to_reference(model::LlamaDecoderImpl& m, const std::string& dir) {
  const auto ref = io::SafetensorsFile::open(dir + "/ref.safetensors");
  const torch::Tensor mask = ref->tensor("attention_mask").clone();
  return testing::max_abs_diff(logits_of(m, ref->tensor("input_ids").clone(), mask), ref->tensor("logits"), mask);
}

// mmtune's logits for the reference's batch in float32, then with its float64 twin (base and LoRA
// masters in float64), against peft's float32 and float64 logits (tests/numerics.h).
void expect_peft_parity(const std::string& label, model::LlamaDecoderImpl& m, const LoraConfig& c,
                        const std::string& dir) {
  const auto ref = io::SafetensorsFile::open(dir + "/ref.safetensors");
  const torch::Tensor mask = ref->tensor("attention_mask").clone(), ids = ref->tensor("input_ids").clone();
  auto m64 = testing::llama_fp64_twin(kModel, adapter_of(c), m);
  testing::expect_oracle_parity(label, logits_of(m, ids, mask), logits_of(*m64, ids, mask), ref->tensor("logits"),
                                ref->tensor("logits.fp64"), mask);
}

testing::ProcessResult peft_reference(std::vector<std::string> args) {
  args.insert(args.begin(), {testing::kPython, std::string(testing::kSourceDir) + "/scripts/reference/peft_reference.py"});
  return testing::run_process(args, {}, std::chrono::seconds(180));
}

TEST(LoraPeft, AnAdapterExportedByMmtuneLoadsInPeftWithTheSameLogits) {
  TempDir d;
  // a layer subset, four of seven projections, scale 12 / 4 = 3
  const LoraConfig c = options(4, 12.0, {"q", "v", "gate", "down"}, {0, 2});
  auto m = lora_model(c, 5);
  export_peft(*m, c, kModel, d.path());
  const auto r = peft_reference({"load", "--model", kModel, "--adapter", d.path(), "--out", d.path()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("load: 16 LoRA tensors"), std::string::npos) << r.out;  // 2 layers x 4 projections x A, B
  expect_peft_parity("mmtune -> peft: logits", *m, c, d.path());
  // the file is PEFT's layout exactly
  std::ifstream f(d.path() + "/adapter_config.json");
  const auto j = nlohmann::json::parse(f);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["lora_alpha"], 12);
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["target_modules"], nlohmann::json({"q_proj", "v_proj", "gate_proj", "down_proj"}));
  EXPECT_EQ(j["layers_to_transform"], nlohmann::json({0, 2}));
  EXPECT_EQ(j["base_model_name_or_path"], kModel);
  const auto w = io::SafetensorsFile::open(d.path() + "/adapter_model.safetensors");
  EXPECT_TRUE(w->contains("base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight"));
  EXPECT_TRUE(w->contains("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"));
  EXPECT_EQ(w->names().size(), 16u);
}

TEST(LoraPeft, AnAdapterMadeByPeftLoadsInMmtuneWithTheSameLogits) {
  TempDir d;
  const auto r = peft_reference({"make", "--model", kModel, "--out", d.path()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::string base;
  const LoraConfig c = read_peft_config(d.path(), &base);
  EXPECT_EQ(c.rank, 4);
  EXPECT_EQ(c.alpha, 12.0);
  EXPECT_EQ(c.layers, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(std::set<std::string>(c.targets.begin(), c.targets.end()), (std::set<std::string>{"q", "v", "o", "gate", "down"}));
  EXPECT_EQ(base, kModel);
  auto m = model::load_llama(kModel, torch::kFloat32);
  attach_to_llama(*m, adapter_of(c));
  import_peft(*m, d.path());
  expect_peft_parity("peft -> mmtune: logits", *m, c, d.path());
  // and an mmtune model without those weights is far off (the check can fail)
  auto fresh = model::load_llama(kModel, torch::kFloat32);
  attach_to_llama(*fresh, adapter_of(c));
  EXPECT_GT(diff_to_reference(*fresh, d.path()), 1e-2);
}

TEST(LoraPeft, ExportThenImportIsBitwise) {
  TempDir d;
  const LoraConfig c = options(3, 6.0, {"q", "k", "v", "o", "gate", "up", "down"});
  auto m = lora_model(c, 7);
  export_peft(*m, c, "tiny", d.path());
  const LoraConfig back = read_peft_config(d.path());
  EXPECT_EQ(back.rank, 3);
  EXPECT_TRUE(back.layers.empty()) << "every layer: layers_to_transform null";
  auto m2 = model::load_llama(kModel, torch::kFloat32);
  attach_to_llama(*m2, adapter_of(back));
  import_peft(*m2, d.path());
  const torch::Tensor ids = torch::randint(3, 400, {2, 9});
  EXPECT_TRUE(torch::equal(logits_of(*m, ids, {}), logits_of(*m2, ids, {})));
}

TEST(LoraPeft, MergedEqualsUnmergedAndSavesAsAHuggingFaceModel) {
  TempDir d;
  const LoraConfig c = options(4, 8.0, {"q", "k", "v", "o", "gate", "up", "down"}, {1, 2});
  // trained-LoRA magnitudes (scale B A a few per cent of W), so the merged weights round like real ones
  auto m = lora_model(c, 9, 0.05);
  torch::manual_seed(2);
  const torch::Tensor ids = torch::randint(3, 400, {2, 11});
  torch::Tensor mask = torch::ones({2, 11}, torch::kLong);
  mask[1].narrow(0, 0, 4).zero_();
  // the same model in float64: merged = unmerged to 1e-12 there; the fp32 bound is 4x the larger
  // fp32-vs-fp64 difference of the two ways (tests/numerics.h)
  auto m64 = testing::llama_fp64_twin(kModel, adapter_of(c), *m);
  const torch::Tensor unmerged64 = logits_of(*m64, ids, mask);
  merge_lora(*m64);
  const torch::Tensor merged64 = logits_of(*m64, ids, mask);
  const torch::Tensor unmerged = logits_of(*m, ids, mask);
  const torch::Tensor w_before = m->block(1).named_parameters()["self_attn.q_proj.weight"].clone();
  EXPECT_EQ(merge_lora(*m), 2 * 7);
  EXPECT_FALSE(torch::equal(m->block(1).named_parameters()["self_attn.q_proj.weight"], w_before));
  for (int64_t i = 0; i < 3; ++i) {
    for (const auto& a : m->block(i).block_adapters()) EXPECT_FALSE(a->enabled()) << "merged LoRA must be switched off";
  }
  const torch::Tensor merged = logits_of(*m, ids, mask);
  testing::expect_same_result("LoRA merged vs unmerged: logits", merged, unmerged, merged64, unmerged64, mask, 1e-12);
  // written as a Hugging Face directory, it loads as a plain model with the same logits
  save_llama(*m, kModel, d.path() + "/merged");
  auto reloaded = model::load_llama(d.path() + "/merged", torch::kFloat32);
  EXPECT_TRUE(torch::equal(logits_of(*reloaded, ids, mask), merged));
  EXPECT_TRUE(std::filesystem::exists(d.path() + "/merged/tokenizer.model") ||
              !std::filesystem::exists(kModel + "/tokenizer.model"));
}

void write_config(const std::string& dir, const nlohmann::json& j) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/adapter_config.json") << j.dump();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.one_line();
  }
  return "no error";
}

TEST(LoraPeft, RefusesWhatMmtunesLoraDoesNotCompute) {
  TempDir d;
  const nlohmann::json ok = {{"peft_type", "LORA"}, {"r", 4}, {"lora_alpha", 8}, {"target_modules", {"q_proj"}}, {"bias", "none"}};
  write_config(d.path() + "/ok", ok);
  EXPECT_EQ(read_peft_config(d.path() + "/ok").targets, std::vector<std::string>{"q"});
  {  // PEFT matches target_modules and layers_to_transform as sets (fuzz_peft: 'v' attached twice aborted)
    nlohmann::json j = ok;
    j["target_modules"] = {"v_proj", "q_proj", "v_proj"};
    j["layers_to_transform"] = {2, 0, 2};
    write_config(d.path() + "/repeats", j);
    const LoraConfig c = read_peft_config(d.path() + "/repeats");
    EXPECT_EQ(c.targets, (std::vector<std::string>{"v", "q"}));
    EXPECT_EQ(c.layers, (std::vector<int64_t>{0, 2}));
  }
  {  // mmtune's own config names each projection and layer once
    struct Collect final : config::Problems {
      std::vector<std::string> lines;
      void add(const std::string& key, std::string message, std::string hint) override { lines.push_back(key + ": " + message); }
    } problems;
    LoraConfig c = options(2, 4.0, {"v", "q", "v"});
    c.layers = {1, 1};
    c.validate(problems, "adapter.lora");
    EXPECT_EQ(problems.lines, (std::vector<std::string>{"adapter.lora.targets: lists 'v' twice",
                                                         "adapter.lora.layers: lists layer 1 twice"}));
  }
  for (const auto& [key, value, expect] :
       std::vector<std::tuple<std::string, nlohmann::json, std::string>>{{"use_dora", true, "use_dora=true"},
                                                                        {"use_rslora", true, "use_rslora=true"},
                                                                        {"rank_pattern", {{"q_proj", 8}}, "rank_pattern="},
                                                                        {"bias", "all", "bias=\"all\""},
                                                                        {"modules_to_save", {"lm_head"}, "modules_to_save="},
                                                                        {"target_modules", {"lm_head"}, "'lm_head' is not a LLaMA projection"},
                                                                        {"target_modules", "all-linear", "must be a list"},
                                                                        {"peft_type", "IA3", "not a PEFT LoRA config"},
                                                                        // fuzz_peft: a null peft_type escaped as a json type_error
                                                                        {"peft_type", nullptr, "not a PEFT LoRA config"},
                                                                        {"layers_to_transform", {"a"}, "layers_to_transform must be null"}}) {
    nlohmann::json j = ok;
    j[key] = value;
    write_config(d.path() + "/bad", j);
    const std::string msg = error_of([&] { read_peft_config(d.path() + "/bad"); });
    EXPECT_NE(msg.find(expect), std::string::npos) << key << ": " << msg;
    EXPECT_NE(msg.find("hint"), std::string::npos) << msg;
  }
  EXPECT_NE(error_of([&] { read_peft_config(d.path() + "/none"); }).find("adapter_config.json: not found"), std::string::npos);
  // weights of another rank: named, with the shapes
  const LoraConfig c = options(4, 8.0, {"q", "v"});
  auto m = lora_model(c, 1);
  export_peft(*m, c, "tiny", d.path() + "/r4");
  auto m2 = model::load_llama(kModel, torch::kFloat32);
  attach_to_llama(*m2, adapter_of(options(2, 4.0, {"q", "v", "o"})));
  const std::string msg = error_of([&] { import_peft(*m2, d.path() + "/r4"); });
  EXPECT_NE(msg.find("wrong shape base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [4, 64] (model: [2, 64])"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("missing base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight"), std::string::npos) << msg;
  // a MoLE model cannot be merged
  auto mole = model::load_llama(kModel, torch::kFloat32);
  config::AdapterConfig a;
  a.family = "mole";
  a.options["mole"] = builtin_adapters().make_family_config("mole");
  attach_to_llama(*mole, a);
  EXPECT_NE(error_of([&] { merge_lora(*mole); }).find("non-LoRA adapter"), std::string::npos);
}

}  // namespace test_lora_peft
}  // namespace mmtune::adapters
