// The task registry and the helpers every task shares: whole-batch sharding over ranks, progress,
// gathering per-item records on rank 0, batched generation, the seeded fallback choice.
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/signals.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/collate.h>
#include <mmtune/data/prompt.h>
#include <mmtune/data/templates.h>
#include <mmtune/eval/task.h>
#include <mmtune/runtime/lm_loss.h>
#include <mmtune/core/terminal.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>

namespace mmtune::eval {

const std::vector<std::string>& eval_task_names() {
  static const std::vector<std::string> k{"scienceqa", "loss", "mcq", "grounding", "perplexity"};
  return k;
}

std::unique_ptr<EvalTask> make_eval_task(const std::string& name) {
  if (name == "scienceqa") return make_scienceqa_task();
  if (name == "loss") return make_loss_task();
  if (name == "mcq") return make_mcq_task();
  if (name == "grounding") return make_grounding_task();
  if (name == "perplexity") return make_perplexity_task();
  const auto close = closest_match(name, eval_task_names());
  throw UsageError("unknown eval task '" + name + "'",
                   (close ? "did you mean " + *close + "? " : std::string()) + "tasks: " + join(eval_task_names(), ", "));
}

std::vector<std::pair<int64_t, int64_t>> rank_batches(int64_t n, int64_t batch_size, int rank, int world) {
  if (batch_size <= 0 || world <= 0 || rank < 0 || rank >= world)
    throw Error(cat("rank_batches: bad batch size ", batch_size, " or rank ", rank, " of ", world));
  std::vector<std::pair<int64_t, int64_t>> out;
  const int64_t batches = (n + batch_size - 1) / batch_size;
  for (int64_t b = rank; b < batches; b += world) out.emplace_back(b * batch_size, std::min(n, (b + 1) * batch_size));
  return out;
}

void eval_batches(const EvalEnv& env, int64_t n, const std::string& label,
                  const std::function<void(int64_t batch, int64_t begin, int64_t end)>& fn) {
  const int64_t bs = env.cfg.eval.batch_size;
  const auto mine = rank_batches(n, bs, env.rank, env.world);
  const bool draw = env.progress && env.rank == 0;
  const bool tty = draw && stderr_is_tty();
  const int64_t log_every = std::max<int64_t>(1, static_cast<int64_t>(mine.size()) / 10);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done_items = 0;
  for (size_t i = 0; i < mine.size(); ++i) {
    throw_if_interrupted();
    const auto [begin, end] = mine[i];
    fn(begin / bs, begin, end);
    done_items += end - begin;
    if (!draw) continue;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = s > 0 ? static_cast<double>(done_items) / s : 0.0;
    const double eta = rate > 0 ? static_cast<double>(n - done_items * env.world) / (rate * env.world) : NAN;
    std::ostringstream line;
    line << label << " " << i + 1 << "/" << mine.size() << " batches";
    if (env.world > 1) line << " (rank 0 of " << env.world << ")";
    line << " | " << std::fixed << std::setprecision(2) << rate << " items/s | ETA "
         << format_duration(std::max(0.0, eta));
    if (tty) {
      std::cerr << "\r\033[K" << line.str() << std::flush;
    } else if ((i + 1) % log_every == 0 || i + 1 == mine.size()) {
      log::info() << line.str();
    }
  }
  if (tty && !mine.empty()) std::cerr << "\n";
}

std::vector<std::string> gather_records(const EvalEnv& env, const std::vector<std::string>& mine) {
  // One string per rank: the records, each followed by '\n' (records are JSON, so newline-free).
  std::string blob;
  for (const auto& r : mine) {
    if (r.find('\n') != std::string::npos) throw Error("gather_records: a record holds a newline");
    blob += r;
    blob += '\n';
  }
  std::vector<std::string> blobs;
  if (!env.pg || env.world == 1) {
    blobs.push_back(blob);
  } else {
    const bool nccl = env.pg->backend_name() == "nccl";
    const auto dev = nccl ? env.device : torch::Device(torch::kCPU);
    torch::Tensor sizes = torch::zeros({env.world}, torch::kInt64);
    sizes[env.rank] = static_cast<int64_t>(blob.size());
    sizes = sizes.to(dev);
    env.pg->all_reduce_sum_(sizes);
    sizes = sizes.cpu();
    const int64_t longest = std::max<int64_t>(1, sizes.max().item<int64_t>());
    torch::Tensor rows = torch::zeros({env.world, longest}, torch::kInt32);
    if (!blob.empty()) {
      std::vector<int32_t> bytes(blob.begin(), blob.end());
      for (auto& b : bytes) b &= 0xff;
      rows[env.rank].narrow(0, 0, static_cast<int64_t>(bytes.size())).copy_(torch::tensor(bytes, torch::kInt32));
    }
    rows = rows.to(dev);
    env.pg->all_reduce_sum_(rows);
    if (env.rank != 0) return {};
    rows = rows.cpu().contiguous();
    for (int r = 0; r < env.world; ++r) {
      const int32_t* p = rows[r].data_ptr<int32_t>();
      std::string s(static_cast<size_t>(sizes[r].item<int64_t>()), '\0');
      for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(p[i]);
      blobs.push_back(std::move(s));
    }
  }
  if (env.rank != 0) return {};
  std::vector<std::string> out;
  for (const auto& b : blobs) {
    size_t start = 0;
    for (size_t nl = b.find('\n'); nl != std::string::npos; start = nl + 1, nl = b.find('\n', start))
      out.push_back(b.substr(start, nl - start));
  }
  return out;
}

runtime::SamplingOptions sampling_options(const config::GenerationConfig& g, int64_t batch) {
  runtime::SamplingOptions o;
  o.max_new_tokens = g.max_new_tokens;
  o.temperature = g.temperature;
  o.top_p = g.top_p;
  o.top_k = g.top_k;
  o.repetition_penalty = g.repetition_penalty;
  o.seed = static_cast<uint64_t>(g.seed) + static_cast<uint64_t>(batch);
  o.stop = g.stop;
  o.compat = g.compat;
  return o;
}

std::vector<runtime::Generation> generate_answers(const EvalEnv& env, std::vector<data::Example> examples,
                                                   int64_t batch) {
  if (!env.built || !env.tok) throw Error("generate_answers: the task needs a model");
  for (auto& e : examples) e.answer.clear();
  std::vector<std::string> skipped;
  const auto b = data::collate(examples, *env.tok, env.layout, data::collate_options(env.cfg.data, env.cfg.vision),
                               &skipped);
  std::vector<runtime::Generation> gens;
  if (b.size() > 0)
    gens = runtime::generate(*env.built->model, *env.tok, runtime::model_input(b, env.device),
                              sampling_options(env.cfg.eval.generation, batch));
  // rows collate dropped (data.on_bad_sample: skip) come back empty, marked "skipped"
  std::map<std::string, size_t> row;
  for (size_t i = 0; i < b.ids.size(); ++i) row[b.ids[i]] = i;
  std::vector<runtime::Generation> out(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    auto it = row.find(examples[i].id);
    if (it != row.end()) out[i] = gens[it->second];
    else out[i].finish_reason = "skipped";
  }
  return out;
}

data::Example question_example(const EvalEnv& env, const std::string& id, const std::string& image,
                               const std::string& question, const std::vector<std::string>& choices) {
  data::Example e;
  e.id = id;
  e.image_path = image;
  e.choices = choices;
  if (env.cfg.data.format == "scienceqa") {
    if (!choices.empty()) {
      data::ProblemText p;
      p.question = question;
      p.choices = choices;
      data::PromptFormat f = data::parse_prompt_format(env.cfg.data.prompt_format);
      f.output = data::PromptOutput::kA;
      e.prompt = data::build_prompt(p, f).prompt;
    } else {
      e.prompt = data::python_strip("Instruction: " + question + "\nResponse:");
    }
    return e;
  }
  std::string text = question;
  if (!choices.empty()) {
    for (size_t i = 0; i < choices.size(); ++i) text += cat("\n", data::option_letter(static_cast<int64_t>(i)), ". ", choices[i]);
    text += "\nAnswer with the option's letter from the given choices directly.";
  }
  if (!image.empty()) text = env.layout.image_placeholder + "\n" + text;
  // the template's default system line, as the training data (data/llava_json.h) gets it
  e.prompt = data::render(data::parse_template(env.cfg.data.template_name), {{data::Role::kUser, text}}).prompt;
  return e;
}

int64_t seeded_choice(uint64_t seed, const std::string& key, int64_t n) {
  if (n <= 0) throw Error(cat("seeded_choice: no options for ", key));
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  uint64_t z = h ^ (seed + 0x9e3779b97f4a7c15ull);  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<int64_t>(z % static_cast<uint64_t>(n));
}

}  // namespace mmtune::eval
