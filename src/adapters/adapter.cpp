#include <mmtune/adapters/adapter.h>

namespace mmtune::adapters {

int64_t BlockAdapterImpl::saved_bytes_per_token(const BlockShape& s, int64_t act_bytes) const {
  int64_t total = 0;
  for (int i = 0; i < kNumSites; ++i)
    if (uses(static_cast<Site>(i))) total += s.width * 4;
  // x.to(fp32) is the same tensor for fp32 activations: projections reading one input share it
  auto group = [&](std::initializer_list<Proj> ps) {
    int64_t n = 0, in = 0;
    for (Proj p : ps)
      if (uses(p)) {
        ++n;
        in = s.in[static_cast<int>(p)];
      }
    return (act_bytes == 4 ? (n > 0 ? 1 : 0) : n) * in * 4;
  };
  total += group({Proj::kQ, Proj::kK, Proj::kV}) + group({Proj::kGate, Proj::kUp}) + group({Proj::kO}) +
           group({Proj::kDown});
  return total;
}

}  // namespace mmtune::adapters
