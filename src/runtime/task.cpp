#include <mmtune/core/errors.h>
#include <mmtune/runtime/task.h>

namespace mmtune::runtime {

LoaderSource::LoaderSource(Factory make, data::LoaderPosition start) : make_(std::move(make)) {
  if (!make_) throw Error("LoaderSource needs a DataLoader factory");
  loader_ = make_(start);
}

void LoaderSource::seek(data::LoaderPosition pos) {
  if (pos == loader_->position()) return;
  loader_.reset();  // joins the old workers before the new ones start
  loader_ = make_(pos);
}

}  // namespace mmtune::runtime
