// LlamaConfig: the shape of a LLaMA-family decoder, read from a Hugging Face config.json of
// LlamaForCausalLM (also what scripts/convert_*.py write).
#pragma once

#include <cstdint>
#include <string>

namespace mmtune::model {

/// RoPE frequency scaling. "default" = none; "llama3" = Llama-3.1's piecewise wavelength scaling.
struct RopeScaling {
  std::string type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

/// What the decoder's Linear layers are quantized to (model/quantize.h has the formats). A
/// pre-quantized directory says so in config.json's "quantization" block. `fallback = "int8"` lets
/// an int4 model keep a weight whose input width the group does not divide in int8 instead of
/// refusing it.
struct Quantization {
  std::string mode = "none";      // none | int8 | int4
  int64_t group = 128;            // int4: inputs per scale and zero point (32 | 64 | 128 | 256)
  std::string fallback = "none";  // int4: none (refuse such weights) | int8
  bool enabled() const { return mode != "none"; }
  /// "int4 (group 128)", "int8", "none".
  std::string describe() const;
  /// The same as one token, for files and reports: "int4-g128", "int8", "none".
  std::string label() const;
  bool operator==(const Quantization&) const = default;
};

struct LlamaConfig {
  int64_t vocab_size = 32000;        // V
  int64_t hidden_size = 4096;        // D
  int64_t intermediate_size = 11008; // F
  int64_t num_layers = 32;           // L
  int64_t num_heads = 32;            // H
  int64_t num_kv_heads = 32;         // Hkv (< H: grouped-query attention)
  int64_t head_dim = 128;            // D / H unless config.json says otherwise
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  Quantization quantization;  // of every Linear of the decoder (lm_head included, not the embedding)

  /// Reads `dir`/config.json (or a config.json path). Accepts transformers 4's `rope_scaling` and
  /// transformers 5's `rope_parameters` spellings. Throws mmtune::CheckpointError naming the file
  /// and key, with a hint.
  static LlamaConfig from_hf(const std::string& dir_or_file);
  /// A short human description ("L=5 D=64 H=8/4 F=172 V=512 tied").
  std::string describe() const;
};

}  // namespace mmtune::model
