// IAA: Inner-Adaptor Architecture.
// Wang, Xie, Leng, Yin, "Inner-Adaptor Architecture Empowers Frozen Large Language Model with
// Multimodal Capabilities", AAAI 2025, arXiv:2408.12902. Spec: ../shared/spec/adapters.md §2.
//   for i in 0..L-1:  h = Frozen_i(h);  if i in S: h = Inserted_k(h)      (k = index of i in S)
//   Inserted_k starts as a copy of Frozen_i; the MM workflow has its own embedding, final norm,
//   LM head and projector; the Text workflow is the untouched LLM, bit for bit.
// Optional gates (spec §2.4 a/b) scale the inserted layer's contribution, zero-initialised.
// This file holds the family's options (adapter.iaa.*).
#pragma once

#include <mmtune/adapters/registry.h>

namespace mmtune::adapters {

struct IaaConfig final : config::FamilyConfig {
  std::vector<int64_t> insert_layers{0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31};  // IAA-14
  std::string workflow = "mm";     // name this adapter serves under (--adapter NAME=DIR, /workflow)
  std::string gate = "none";       // none (final IAA) | parallel (a) | gated (b)
  std::string gate_type = "scalar";  // scalar | linear (D -> D), zero-initialised
  std::vector<std::string> trainable{"projector", "layers", "embedding", "norm", "head"};
  std::string image_token = "<|reserved_special_token_44|>";  // placeholder replaced by the image

  std::string family() const override { return "iaa"; }
  std::unique_ptr<config::FamilyConfig> clone() const override { return std::make_unique<IaaConfig>(*this); }
  void visit(config::Visitor& v) override;
  void validate(config::Problems& p, const std::string& path) const override;
};

FamilyEntry iaa_family();

}  // namespace mmtune::adapters
