// Grounding: generate a box for each referring expression and count precision@IoU 0.5
// (eval/grounding.h has the file layout and the rules).
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/strings.h>
#include <mmtune/eval/grounding.h>
#include <mmtune/eval/task.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "jsonl.h"

namespace mmtune::eval {

using json = nlohmann::json;

std::vector<Box> parse_boxes(std::string_view text) {
  std::vector<Box> out;
  for (size_t open = text.find('['); open != std::string_view::npos; open = text.find('[', open + 1)) {
    const size_t close = text.find(']', open);
    if (close == std::string_view::npos) break;
    const std::string inner(text.substr(open + 1, close - open - 1));
    const auto parts = split(inner, ',');
    if (parts.size() != 4) continue;
    double v[4];
    bool ok = true;
    for (int i = 0; i < 4 && ok; ++i) {
      const char* s = parts[static_cast<size_t>(i)].c_str();
      char* end = nullptr;
      v[i] = std::strtod(s, &end);
      ok = end != s;
      while (ok && *end) ok = std::isspace(static_cast<unsigned char>(*end++)) != 0;
    }
    if (ok) out.push_back({v[0], v[1], v[2], v[3]});
  }
  return out;
}

double box_iou(const Box& a, const Box& b) {
  const double area_a = std::max(0.0, a.x2 - a.x1) * std::max(0.0, a.y2 - a.y1);
  const double area_b = std::max(0.0, b.x2 - b.x1) * std::max(0.0, b.y2 - b.y1);
  const double iw = std::max(0.0, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
  const double ih = std::max(0.0, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
  const double inter = iw * ih, uni = area_a + area_b - inter;
  return uni > 0 ? inter / uni : 0.0;
}

std::string format_box(const Box& b, int decimals) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(decimals) << "[" << b.x1 << ", " << b.y1 << ", " << b.x2 << ", " << b.y2 << "]";
  return os.str();
}

std::string grounding_query(const std::string& expression) {
  return "Please provide the bounding box coordinate of the region this sentence describes: " + expression;
}

std::vector<GroundingItem> read_grounding_items(const std::string& path, const std::string& image_folder,
                                                int64_t limit) {
  std::vector<GroundingItem> items;
  for (const auto& l : detail::read_jsonl_objects(path, limit)) {
    GroundingItem it;
    it.id = detail::string_field(path, l, "id", false);
    if (it.id.empty()) it.id = std::to_string(l.line);
    it.image = detail::resolve_image(path, l, detail::string_field(path, l, "image"), image_folder);
    it.expression = detail::string_field(path, l, "expression", false);
    if (it.expression.empty()) it.expression = detail::string_field(path, l, "question", false);
    if (it.expression.empty()) throw DataError(path, cat("line ", l.line, " has no \"expression\""));
    const auto b = l.value.find("box");
    bool ok = b != l.value.end() && b->is_array() && b->size() == 4;
    double v[4] = {0, 0, 0, 0};
    for (int i = 0; ok && i < 4; ++i) {
      ok = (*b)[static_cast<size_t>(i)].is_number();
      if (ok) v[i] = (*b)[static_cast<size_t>(i)].get<double>();
      ok = ok && v[i] >= 0 && v[i] <= 1;
    }
    if (!ok || v[0] > v[2] || v[1] > v[3])
      throw DataError(path, cat("line ", l.line, ": \"box\" must be [x1, y1, x2, y2] in [0, 1] with x1 <= x2, y1 <= y2"),
                      "coordinates are normalised to the image padded to a square");
    it.box = {v[0], v[1], v[2], v[3]};
    items.push_back(std::move(it));
  }
  return items;
}

namespace {

EvalReport grounding_report(const EvalEnv& env, const std::vector<GroundingItem>& items, const std::vector<json>& rows) {
  int64_t correct = 0, unparsable = 0;
  double iou_sum = 0;
  json results = json::object(), outputs = json::object();
  for (size_t i = 0; i < items.size(); ++i) {
    const double iou = rows[i]["iou"].get<double>();
    correct += iou >= 0.5;
    unparsable += rows[i]["boxes"].get<int64_t>() == 0;
    iou_sum += iou;
    results[items[i].id] = {{"iou", iou}, {"correct", iou >= 0.5}};
    outputs[items[i].id] = rows[i]["output"];
  }
  const auto n = static_cast<double>(items.size());
  const double precision = 100.0 * static_cast<double>(correct) / n;
  std::ostringstream console;
  console << std::fixed << std::setprecision(2) << "precision@0.5 " << precision << " (" << correct << "/"
          << items.size() << ")  mean_iou " << iou_sum / n << "\n";
  if (unparsable > 0) console << unparsable << " answer(s) without a box counted wrong\n";
  const json j{{"task", "grounding"},
               {"acc", precision},
               {"precision_at_0.5", precision},
               {"correct", correct},
               {"count", items.size()},
               {"mean_iou", iou_sum / n},
               {"unparsable", unparsable},
               {"results", results},
               {"outputs", outputs},
               {"args",
                {{"data", env.cfg.eval.data},
                 {"checkpoint", env.checkpoint},
                 {"limit", env.limit},
                 {"batch_size", env.cfg.eval.batch_size},
                 {"adapter_family", env.cfg.adapter.family},
                 {"model", env.cfg.model.path}}}};
  EvalReport r;
  r.console = console.str();
  r.results_json = j.dump(2) + "\n";
  r.items = static_cast<int64_t>(items.size());
  return r;
}

class GroundingTask final : public EvalTask {
 public:
  std::string name() const override { return "grounding"; }
  bool uses_split() const override { return false; }

  EvalReport run(EvalEnv& env) override {
    const std::string& path = env.cfg.eval.data;
    if (path.empty()) throw UsageError("--task grounding needs a JSONL file", "pass --data FILE (or set eval.data)");
    const auto items = read_grounding_items(path, env.cfg.data.image_folder, env.limit);
    if (env.rank == 0) log::info() << "grounding: " << path << ", " << items.size() << " expressions";

    std::vector<std::string> records;
    eval_batches(env, static_cast<int64_t>(items.size()), "grounding", [&](int64_t batch, int64_t begin, int64_t end) {
      std::vector<data::Example> chunk;
      for (int64_t i = begin; i < end; ++i) {
        const auto& it = items[static_cast<size_t>(i)];
        chunk.push_back(question_example(env, it.id, it.image, grounding_query(it.expression), {}));
      }
      const auto gens = generate_answers(env, chunk, batch);
      for (int64_t i = begin; i < end; ++i) {
        const std::string& text = gens[static_cast<size_t>(i - begin)].text;
        double best = 0;
        const auto boxes = parse_boxes(text);
        for (const auto& bx : boxes) best = std::max(best, box_iou(bx, items[static_cast<size_t>(i)].box));
        records.push_back(json{{"index", i}, {"output", text}, {"boxes", boxes.size()}, {"iou", best}}.dump());
      }
    });
    const auto all = gather_records(env, records);
    if (env.rank != 0) return {};
    return grounding_report(env, items, detail::records_by_index(all, items.size(), "grounding"));
  }
};

}  // namespace

std::unique_ptr<EvalTask> make_grounding_task() { return std::make_unique<GroundingTask>(); }

}  // namespace mmtune::eval
