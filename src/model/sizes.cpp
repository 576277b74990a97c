#include <mmtune/model/sizes.h>

namespace mmtune::model {

LlamaConfig llama_7b() {
  LlamaConfig c;  // the struct's defaults are LLaMA-7B
  return c;
}

LlamaConfig llama_13b() {
  LlamaConfig c;
  c.hidden_size = 5120;
  c.intermediate_size = 13824;
  c.num_layers = 40;
  c.num_heads = c.num_kv_heads = 40;
  c.head_dim = 128;
  return c;
}

LlamaConfig llama3_8b() {
  LlamaConfig c;
  c.vocab_size = 128256;
  c.intermediate_size = 14336;
  c.num_kv_heads = 8;
  c.rope_theta = 500000.0;
  c.rms_norm_eps = 1e-5;
  c.max_position_embeddings = 8192;
  c.bos_token_id = 128000;
  c.eos_token_id = 128009;
  return c;
}

ClipVisionConfig clip_vit_l14() {
  ClipVisionConfig c;  // the struct's defaults are ViT-L/14 at 224 px
  return c;
}

ClipVisionConfig clip_vit_l14_336() {
  ClipVisionConfig c;
  c.image_size = 336;
  return c;
}

std::optional<LlamaConfig> llama_arch(const std::string& name) {
  if (name == "llama-7b") return llama_7b();
  if (name == "llama-13b") return llama_13b();
  if (name == "llama3-8b") return llama3_8b();
  return std::nullopt;
}

std::optional<ClipVisionConfig> clip_arch(const std::string& name) {
  if (name == "clip-vit-l14") return clip_vit_l14();
  if (name == "clip-vit-l14-336") return clip_vit_l14_336();
  return std::nullopt;
}

std::vector<std::string> llama_arch_names() { return {"llama-7b", "llama-13b", "llama3-8b"}; }
std::vector<std::string> clip_arch_names() { return {"clip-vit-l14", "clip-vit-l14-336"}; }

}  // namespace mmtune::model
