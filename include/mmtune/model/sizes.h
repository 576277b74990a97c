// Named model shapes (configs only, no logic): what `model.arch` / `vision.arch` refer to, so a
// recipe can be dry-run (meta device, parameter table) before any weights are downloaded.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <mmtune/model/clip_vit.h>
#include <mmtune/model/llama_config.h>

namespace mmtune::model {

LlamaConfig llama_7b();       // LLaMA-1/2 7B: D 4096, 32 layers, 32 heads, FFN 11008, V 32000
LlamaConfig llama_13b();      // LLaMA-1/2 13B: D 5120, 40 layers, 40 heads, FFN 13824
LlamaConfig llama3_8b();      // Llama-3-8B: D 4096, 32 layers, 32/8 heads, FFN 14336, V 128256, theta 5e5
ClipVisionConfig clip_vit_l14();      // OpenAI ViT-L/14 at 224 px (LaVIN)
ClipVisionConfig clip_vit_l14_336();  // ViT-L/14 at 336 px (LLaVA-1.5, IAA, MoLE)

/// By name ("llama-7b", "llama-13b", "llama3-8b"); nullopt if unknown.
std::optional<LlamaConfig> llama_arch(const std::string& name);
/// By name ("clip-vit-l14", "clip-vit-l14-336"); nullopt if unknown.
std::optional<ClipVisionConfig> clip_arch(const std::string& name);
std::vector<std::string> llama_arch_names();
std::vector<std::string> clip_arch_names();

}  // namespace mmtune::model
