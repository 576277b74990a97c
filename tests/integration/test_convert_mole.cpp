// scripts/convert_mole_checkpoint.py on fake released LLaVA-MoLE checkpoints (the wrapper's names
// and shapes for the tiny models, made by scripts/reference/make_mole_checkpoint.py): every released
// tensor lands at its mmtune name with its exact value (checked here against the released names,
// read from a safetensors copy: C++ never unpickles), the converted adapter loads through
// load_adapter, and the model then gives the logits of an independent Python MoLE forward over the
// unconverted weights, for the released dense path (dense_soft) and the top-1 path (st_top1). The
// wrapper's full state_dict (frozen LLM, CLIP tower) converts to the same adapter.
// Bad files exit 1 with a one-line message and leave nothing behind.
#include <gtest/gtest.h>

#include <filesystem>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_convert_mole {

namespace fs = std::filesystem;

ProcessResult python(std::vector<std::string> args) {
  args.insert(args.begin(), kPython);
  return run_process(args, {}, std::chrono::seconds(180));
}

std::string script(const std::string& rel) { return std::string(kSourceDir) + "/scripts/" + rel; }

// The fakes of one TempDir, made once for the whole suite (the Python reference takes a while).
class ConvertMole : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto r = python({script("reference/make_mole_checkpoint.py"), "--llama", std::string(kTinyDir) + "/llama-gqa",
                           "--vision-width", "64", "--clip", std::string(kTinyDir) + "/clip-vit", "--out", fakes(), "--experts", "3", "--rank", "4", "--alpha", "8"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string fakes() { return dir_->path() + "/fakes"; }
  static std::string out(const std::string& name) { return dir_->path() + "/" + name; }

  static ProcessResult convert(const std::string& input, const std::string& dest, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{script("convert_mole_checkpoint.py"), "--input", fakes() + "/" + input, "--out", dest,
                                  "--image-size", "32"};
    args.insert(args.end(), extra.begin(), extra.end());
    return python(args);
  }

  // The tiny MoLE model with the converted adapter's architecture (plus `extra`) and its weights.
  static runtime::BuiltModel load(const std::string& adapter, std::vector<std::string> extra = {}) {
    const std::string tiny = kTinyDir;
    std::vector<std::string> o{"model.path=" + tiny + "/llama-gqa", "vision.path=" + tiny + "/clip-vit"};
    for (auto& s : runtime::adapter_overrides(adapter)) o.push_back(s);
    o.insert(o.end(), extra.begin(), extra.end());
    const auto cfg = config::load_config(std::string(kSourceDir) + "/configs/mole/tiny.yaml", o, adapters::builtin_adapters());
    runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
    runtime::load_adapter(adapter, cfg, m);
    m.model->eval();
    return m;
  }

  static inline TempDir* dir_ = nullptr;
};

TEST_F(ConvertMole, EveryReleasedTensorLandsAtItsMmtuneNameWithItsExactValue) {
  // release-full.pt: the whole wrapper's state_dict (frozen LLM, CLIP tower, the adaptor's alias of
  // the text embedding): the same adapter, the frozen parts dropped with one line naming them
  for (const std::string input : {"release.pt", "release-ddp.pt", "release-full.pt"}) {
    const std::string dest = out("conv-" + input);
    const auto r = convert(input, dest, {"--alpha", "8"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("54 tensors, 40,329 parameters"), std::string::npos) << r.out;
    if (input == "release-full.pt") {
      // 25 frozen LLM tensors of release.pt + 3 post_attention_layernorm + norm + lm_head; the tiny
      // CLIPVisionModel's 71 tensors; in_adaptor.text_embed.weight
      EXPECT_NE(r.out.find("dropped 102 frozen tensor(s) the adapter does not need: 1 under in_adaptor.text_embed.* "
                           "(the input adaptor's alias of the frozen text embedding); 71 under vit.* (the frozen "
                           "CLIP tower); 30 under llm_model.* (the frozen LLM)"),
                std::string::npos)
          << r.out;
      EXPECT_EQ(r.err.find("unknown"), std::string::npos) << r.err;
    } else {
      EXPECT_NE(r.out.find("25 frozen tensor(s) skipped"), std::string::npos) << r.out;
    }
    const auto got = io::SafetensorsFile::open(dest + "/adapter_model.safetensors");
    const auto rel = io::SafetensorsFile::open(fakes() + "/release.safetensors");
    // the expected mapping, written out here from spec §5 (independent of both Python scripts)
    std::map<std::string, torch::Tensor> want;
    const std::string P = "llm_model.base_model.model.model.layers.";
    for (int i = 0; i < 3; ++i) {
      const std::string p = P + std::to_string(i) + ".", q = "llm.model.layers." + std::to_string(i) + ".adapters.mole.";
      for (const std::string a : {"q", "k", "v", "o"}) {
        want[q + a + ".lora_A"] = rel->tensor(p + "self_attn." + a + "_proj.lora_A.default.weight");
        want[q + a + ".lora_B"] = rel->tensor(p + "self_attn." + a + "_proj.lora_B.default.weight");
      }
      for (const std::string f : {"gate", "up", "down"}) {
        for (const std::string ab : {"A", "B"}) {
          std::vector<torch::Tensor> k;
          for (int e = 0; e < 3; ++e) k.push_back(rel->tensor(p + "mlp.moe_" + f + "." + std::to_string(e) + ".lora_" + ab));
          want[q + "moe_" + f + ".lora_" + ab] = torch::stack(k);  // [K, r, in] / [K, out, r]
        }
      }
      want[q + "router.weight"] = rel->tensor(p + "mlp.router.weight");
      want[q + "router.bias"] = rel->tensor(p + "mlp.router.bias");
    }
    for (const std::string n : {"projector.0.weight", "projector.0.bias", "projector.2.weight", "projector.2.bias",
                                "visual_start_token", "visual_end_token"})
      want["llm.adapters.mole." + n] = rel->tensor("in_adaptor." + n);
    std::vector<std::string> names;
    for (const auto& [n, t] : want) names.push_back(n);
    EXPECT_EQ(got->names(), names) << input;
    for (const auto& [n, t] : want) {
      if (!got->contains(n)) continue;
      const torch::Tensor g = got->tensor(n);
      EXPECT_EQ(g.scalar_type(), torch::kFloat32) << n;
      EXPECT_TRUE(torch::equal(g, t)) << n << " " << g.sizes() << " vs " << t.sizes();
    }
    EXPECT_EQ(got->tensor("llm.model.layers.0.adapters.mole.moe_down.lora_A").sizes(), (std::vector<int64_t>{3, 4, 176}));
    EXPECT_EQ(got->tensor("llm.model.layers.0.adapters.mole.k.lora_B").sizes(), (std::vector<int64_t>{32, 4}));
    // the recorded architecture
    const std::string cfg = read_text(dest + "/adapter_config.json");
    for (const char* s : {"\"family\": \"mole\"", "\"experts\": 3", "\"rank\": 4", "\"alpha\": 8.0",
                          "\"gate_mode\": \"dense_soft\"", "\"start_end_tokens\": true", "\"projector\": \"mlp2x_gelu\""})
      EXPECT_NE(cfg.find(s), std::string::npos) << s << "\n" << cfg;
  }
}

TEST_F(ConvertMole, ConvertedAdapterGivesThePythonReferenceLogitsDenseAndTopOne) {
  const std::string dest = out("conv-logits");
  const auto r = convert("release.pt", dest);  // alpha defaults to 2 r = 8, said on stderr
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("using 2 r = 8"), std::string::npos) << r.err;
  const auto ref = io::SafetensorsFile::open(fakes() + "/ref.safetensors");
  const torch::Tensor ids = ref->tensor("input_ids").clone(), mask = ref->tensor("attention_mask").to(torch::kBool);
  torch::NoGradGuard ng;
  struct Case {
    std::vector<std::string> extra;
    const char* logits;
  };
  for (const Case& c : {Case{{}, "logits_dense"}, Case{{"adapter.mole.gate_mode=st_top1"}, "logits_sparse"},
                        Case{{"adapter.mole.gate_mode=none"}, "logits_sparse"}}) {
    // float32, then the same model in float64 (the experts compute in their masters' dtype); the
    // reference wrote both (tests/numerics.h). A token whose top-1 expert differs between the
    // precisions would fail the noise check.
    runtime::BuiltModel m = load(dest, c.extra);
    std::vector<std::string> extra64 = c.extra;
    extra64.push_back("dtype=fp64");  // the base and the experts' masters in float64
    runtime::BuiltModel m64 = load(dest, extra64);
    adapters::ForwardContext ctx, ctx64;
    const torch::Tensor got = m.model->llm().forward({ids, {}, mask, {}}, nullptr, ctx);
    const torch::Tensor got64 = m64.model->llm().forward({ids, {}, mask, {}}, nullptr, ctx64);
    ASSERT_EQ(got.sizes(), ref->tensor(c.logits).sizes());
    testing::expect_oracle_parity(std::string("converted MoLE: ") + c.logits + (c.extra.empty() ? "" : " " + c.extra[0]),
                                  got, got64, ref->tensor(c.logits), ref->tensor(std::string(c.logits) + ".fp64"));
  }
  // the two released paths really differ on these weights (so each comparison tells them apart)
  EXPECT_FALSE(torch::allclose(ref->tensor("logits_dense"), ref->tensor("logits_sparse"), 1e-3, 1e-3));
}

// gate_mode none is the released sparse path (moe.py forward_lora_moe_sparse): the chosen expert's
// delta with weight 1, so the router learns from the balancing loss only. One training step's router
// gradients (text loss + 0.5 x the per-sample cross-layer balancing loss, a right-padded row) equal
// those of the reference step written from the released model.py; st_top1, which passes the text
// loss's gradient to the router, does not.
TEST_F(ConvertMole, GateModeNoneTrainsTheRouterExactlyAsTheReleasedSparsePath) {
  const std::string dest = out("conv-train");
  ASSERT_EQ(convert("release.pt", dest).exit_code, 0);
  const auto ref = io::SafetensorsFile::open(fakes() + "/ref.safetensors");
  const torch::Tensor ids = ref->tensor("input_ids").clone(), mask = ref->tensor("train_mask").to(torch::kBool);
  auto router_grads = [&](const std::string& mode, bool fp64) {
    std::vector<std::string> extra{"adapter.mole.gate_mode=" + mode, "adapter.mole.balance_weight=0.5"};
    if (fp64) extra.push_back("dtype=fp64");
    runtime::BuiltModel m = load(dest, extra);  // eval(): no dropout, as the reference
    adapters::ForwardContext ctx;
    const torch::Tensor logits = m.model->llm().forward({ids, {}, mask, {}}, nullptr, ctx);  // [B, T, V]
    // text loss over the shifted tokens whose input and target are both real
    const torch::Tensor logp = logits.narrow(1, 0, 11).log_softmax(-1).gather(2, ids.narrow(1, 1, 11).unsqueeze(2)).squeeze(2);
    const torch::Tensor lm = (mask.narrow(1, 1, 11) & mask.narrow(1, 0, 11)).to(logp.scalar_type());  // [B, T-1]
    EXPECT_EQ(ctx.aux_losses.size(), 1u) << mode;
    torch::Tensor loss = -(logp * lm).sum() / lm.sum();
    for (const auto& [name, l] : ctx.aux_losses) loss = loss + l;
    loss.backward();
    std::vector<torch::Tensor> w, b;
    const auto params = m.model->named_parameters();
    for (int i = 0; i < 3; ++i) {
      const std::string q = "llm.model.layers." + std::to_string(i) + ".adapters.mole.router.";  // the adapter file's names
      for (auto [part, into] : {std::pair{"weight", &w}, std::pair{"bias", &b}}) {
        const torch::Tensor* t = params.find(q + part);
        if (t == nullptr || !t->grad().defined()) ADD_FAILURE() << q << part << ": no such parameter or no gradient";
        else into->push_back(t->grad().clone());
      }
    }
    EXPECT_EQ(w.size(), 3u);
    EXPECT_EQ(b.size(), 3u);
    return torch::cat({torch::stack(w).reshape({-1}), torch::stack(b).reshape({-1})});  // [L K D + L K]
  };
  const torch::Tensor want = torch::cat({ref->tensor("router_grad_weight").reshape({-1}), ref->tensor("router_grad_bias").reshape({-1})});
  const torch::Tensor want64 =
      torch::cat({ref->tensor("router_grad_weight.fp64").reshape({-1}), ref->tensor("router_grad_bias.fp64").reshape({-1})});
  EXPECT_GT(want.abs().max().item<double>(), 1e-3);  // the balancing loss really moves the routers
  testing::expect_oracle_parity("released sparse training step: router gradients, gate_mode none",
                                router_grads("none", false), router_grads("none", true), want, want64);
  // st_top1's routers also get the text loss's gradient: far from the released step
  const torch::Tensor st = router_grads("st_top1", true);
  EXPECT_GT((st - want64).abs().max().item<double>(), 0.01 * want64.abs().max().item<double>())
      << "st_top1 should differ from the released sparse step";
}

TEST_F(ConvertMole, BadFilesExitOneWithOneLineAndWriteNothing) {
  struct Case {
    std::string input, message;
  };
  for (const Case& c : {Case{"bad-missing.pt", "missing llm_model.base_model.model.model.layers.1.mlp.moe_up.2.lora_B"},
                        Case{"bad-unknown.pt", "unknown tensors in_adaptor.extra.weight"},
                        Case{"evil.pt", "refused to unpickle: it references posix.getcwd"},
                        Case{"nope.pt", "not found"}}) {
    const std::string dest = out("bad-" + c.input);
    const auto r = convert(c.input, dest);
    EXPECT_EQ(r.exit_code, 1) << c.input << r.err;
    EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.input << ": " << r.err;
    EXPECT_FALSE(fs::exists(dest)) << c.input;
  }
  // an unknown tensor may be left out on request; an existing output needs --force
  const std::string dest = out("skip");
  auto r = convert("bad-unknown.pt", dest, {"--skip-unknown"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("left out 1 unknown tensor(s): in_adaptor.extra.weight"), std::string::npos) << r.err;
  r = convert("release.pt", dest);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists (pass --force"), std::string::npos) << r.err;
  EXPECT_EQ(convert("release.pt", dest, {"--force"}).exit_code, 0);
}

}  // namespace test_convert_mole
}  // namespace mmtune::testing
