// LaVIN's ScienceQA prompt builder: every format on the 150 real problems against the Python
// re-implementation of spec §1.9 (scripts/reference/scienceqa_prompts.py), hand-written
// expectations for upstream's quirks, format parsing, and the answer extraction.
#include <filesystem>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <set>

#include "test_paths.h"
#include "test_utils.h"
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/data/prompt.h>
#include <mmtune/data/scienceqa.h>

namespace mmtune::data {
namespace test_prompt {

using nlohmann::json;

std::string sqa(const std::string& file) {
  return std::string(testing::kSharedDir) + "/data/scienceqa/" + file;
}

// A ScienceQA root holding the 150 real problems and the real pid_splits.json restricted to their
// pids (the real lists minus the pids the sample lacks, order kept).
std::string make_sample_root(const testing::TempDir& d) {
  const json problems = json::parse(testing::read_text(sqa("problems_sample150.json")));
  const json splits = json::parse(testing::read_text(sqa("pid_splits.json")));
  json kept = json::object();
  for (const auto& [name, ids] : splits.items()) {
    kept[name] = json::array();
    for (const auto& id : ids)
      if (problems.contains(id.get<std::string>())) kept[name].push_back(id);
  }
  d.write("sqa/problems.json", problems.dump());
  d.write("sqa/pid_splits.json", kept.dump());
  return d.path() + "/sqa";
}

json run_oracle(const std::string& root, const std::string& out,
                const std::vector<std::string>& extra) {
  std::vector<std::string> argv{
      testing::kPython,
      std::string(testing::kSourceDir) + "/scripts/reference/scienceqa_prompts.py",
      "--problems",
      root + "/problems.json",
      "--splits",
      root + "/pid_splits.json",
      "--split",
      "train",
      "val",
      "test",
      "--out",
      out};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const auto r = testing::run_process(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(testing::read_text(out));
}

// Compares the reader's prompts for train/val/test in `formats` with the oracle's; returns the
// number of (pid, format) pairs compared.
int compare_with_oracle(const std::string& root, const json& expected,
                        const std::vector<std::string>& formats, const std::string& captions) {
  int compared = 0, mismatches = 0;
  for (const std::string& format : formats) {
    ScienceQAOptions o;
    o.root = root;
    o.prompt_format = parse_prompt_format(format);
    o.check_images = false;  // the sample comes without its images
    o.captions_file = captions;
    o.use_caption = !captions.empty();
    std::set<std::string> seen;
    for (const std::string split : {"train", "val", "test"}) {
      for (const Example& ex : read_scienceqa(o, split).examples) {
        seen.insert(ex.id);
        const json& want = expected.at(ex.id).at(format);
        ++compared;
        if ((ex.prompt != want[0] || ex.answer != want[1]) && ++mismatches <= 3) {
          ADD_FAILURE() << "pid " << ex.id << " format " << format << "\n C++ prompt: " << ex.prompt
                        << "\n py  prompt: " << want[0].get<std::string>()
                        << "\n C++ answer: " << ex.answer
                        << "\n py  answer: " << want[1].get<std::string>();
        }
      }
    }
    EXPECT_EQ(seen.size(), expected.size()) << format;
  }
  EXPECT_EQ(mismatches, 0);
  return compared;
}

TEST(PromptOracle, EveryFormatOnThe150RealProblemsEqualsThePythonBuilder) {
  testing::TempDir d;
  const std::string root = make_sample_root(d);
  const json expected = run_oracle(root, d.path() + "/prompts.json", {"--formats", "all"});
  ASSERT_EQ(expected.size(), 150u);
  const auto formats = prompt_format_names();
  ASSERT_EQ(expected.at("1").size(), formats.size());  // the oracle knows the same 72 formats
  EXPECT_EQ(compare_with_oracle(root, expected, formats, ""), 150 * 72);
}

TEST(PromptOracle, CaptionsInTheContextEqualThePythonBuilder) {
  testing::TempDir d;
  const std::string root = make_sample_root(d);
  const std::vector<std::string> formats{"QCM-ALE", "CQM-A", "QCLEM-ELA"};
  const json expected = run_oracle(root, d.path() + "/prompts.json",
                                   {"--formats", "QCM-ALE,CQM-A,QCLEM-ELA", "--captions",
                                    sqa("captions.json"), "--use-caption"});
  EXPECT_EQ(compare_with_oracle(root, expected, formats, sqa("captions.json")), 150 * 3);
  // pid 1 has an image and a caption but no hint: the caption alone is its context
  ScienceQAOptions o;
  o.root = root;
  o.captions_file = sqa("captions.json");
  o.use_caption = true;
  o.check_images = false;
  const Example first = read_scienceqa(o, "train").examples.front();
  EXPECT_NE(first.prompt.find("\nContext: An aerial view of a painting of a forest.\n"),
            std::string::npos)
      << first.prompt;
}

ProblemText problem() {
  ProblemText p;
  p.question = "Which is warmer?";
  p.hint = "A cup of tea.";
  p.choices = {"ice", "tea", "snow"};
  p.answer_index = 1;
  p.lecture = "Heat moves.\nHot things are warm.";
  p.solution = "Tea is hot.";
  return p;
}

PromptPair build(const ProblemText& p, const std::string& format, bool caption = false) {
  return build_prompt(p, parse_prompt_format(format), caption);
}

TEST(Prompt, QcmAleIsLavinsDefault) {
  const PromptPair r = build(problem(), "QCM-ALE");
  EXPECT_EQ(r.prompt,
            "Question: Which is warmer?\nContext: A cup of tea.\nOptions: (A) ice (B) tea (C) "
            "snow\nResponse:");
  EXPECT_EQ(r.answer, "The answer is B. BECAUSE: Heat moves.\\nHot things are warm. Tea is hot.");
  EXPECT_EQ(PromptFormat{}, parse_prompt_format("QCM-ALE"));  // the default format
}

TEST(Prompt, InputFormatsPlaceTheirLines) {
  const ProblemText p = problem();
  EXPECT_EQ(build(p, "CQM-A").prompt,
            "Context: A cup of tea.\nQuestion: Which is warmer?\nOptions: (A) ice (B) tea (C) "
            "snow\nResponse:");
  const std::string qc = "Question: Which is warmer?\nContext: A cup of tea.\n";
  const std::string m = "Options: (A) ice (B) tea (C) snow\n";
  const std::string l = "Heat moves.\\nHot things are warm.", e = "Tea is hot.";
  EXPECT_EQ(build(p, "QCML-A").prompt, qc + m + "BECAUSE: " + l + "\nResponse:");
  EXPECT_EQ(build(p, "QCME-A").prompt, qc + m + "BECAUSE: " + e + "\nResponse:");
  EXPECT_EQ(build(p, "QCMLE-A").prompt, qc + m + "BECAUSE: " + l + " " + e + "\nResponse:");
  EXPECT_EQ(build(p, "QCLM-A").prompt, qc + "BECAUSE: " + l + "\n" + m + "Response:");
  EXPECT_EQ(build(p, "QCEM-A").prompt, qc + "BECAUSE: " + e + "\n" + m + "Response:");
  EXPECT_EQ(build(p, "QCLEM-A").prompt, qc + "BECAUSE: " + l + " " + e + "\n" + m + "Response:");
}

TEST(Prompt, OutputFormatsIncludingTheSwappedAlAndAe) {
  const ProblemText p = problem();
  const std::string l = "Heat moves.\\nHot things are warm.", e = "Tea is hot.",
                    a = "The answer is B.";
  EXPECT_EQ(build(p, "QCM-A").answer, a);
  EXPECT_EQ(build(p, "QCM-AL").answer, a + " BECAUSE: " + e);  // sic: the solution
  EXPECT_EQ(build(p, "QCM-AE").answer, a + " BECAUSE: " + l);  // sic: the lecture
  EXPECT_EQ(build(p, "QCM-AEL").answer, a + " BECAUSE: " + e + " " + l);
  EXPECT_EQ(build(p, "QCM-LA").answer, l + " " + a);
  EXPECT_EQ(build(p, "QCM-EA").answer, e + " " + a);
  EXPECT_EQ(build(p, "QCM-LEA").answer, l + " " + e + " " + a);
  EXPECT_EQ(build(p, "QCM-ELA").answer, e + " " + l + " " + a);
}

TEST(Prompt, EmptyContextIsNaAndCaptionsOnlyWithUseCaption) {
  ProblemText p = problem();
  p.caption = "A red cup.";
  EXPECT_NE(build(p, "QCM-A").prompt.find("\nContext: A cup of tea.\n"), std::string::npos);
  EXPECT_NE(build(p, "QCM-A", true).prompt.find("\nContext: A cup of tea. A red cup.\n"),
            std::string::npos);
  p.hint = "";
  EXPECT_NE(build(p, "QCM-A").prompt.find("\nContext: N/A\n"), std::string::npos);
  EXPECT_NE(build(p, "QCM-A", true).prompt.find("\nContext: A red cup.\n"), std::string::npos);
  p.hint = " \n\t\u00a0";  // Python's strip() removes Unicode whitespace, NBSP included
  EXPECT_NE(build(p, "QCM-A").prompt.find("\nContext: N/A\n"), std::string::npos);
}

TEST(Prompt, DanglingBecauseStaysWhenLectureAndSolutionAreEmpty) {
  ProblemText p = problem();
  p.lecture = p.solution = "";
  EXPECT_EQ(build(p, "QCM-ALE").answer, "The answer is B. BECAUSE:");
  EXPECT_EQ(build(p, "QCM-AL").answer, "The answer is B. BECAUSE:");
  EXPECT_EQ(build(p, "QCM-LEA").answer, "The answer is B.");  // strip() takes the leading spaces
  // "BECAUSE: " + "" + " " + "" + "\n": the pair of spaces becomes one, the line keeps it
  EXPECT_TRUE(build(p, "QCMLE-A").prompt.ends_with("\nBECAUSE: \nResponse:"))
      << build(p, "QCMLE-A").prompt;
}

TEST(Prompt, DoubleSpacesAreReplacedInOnePassAndTheEndsStripped) {
  ProblemText p = problem();
  p.question = "a  b   c    d";  // Python's replace("  ", " "): 2 -> 1, 3 -> 2, 4 -> 2
  p.lecture = "  lead\n";
  p.solution = "";
  EXPECT_EQ(build(p, "QCM-A").prompt.substr(0, 22), "Question: a b  c  d\nCo");
  EXPECT_EQ(build(p, "QCM-LA").answer, "lead\\n The answer is B.");
  p.lecture = "";
  p.solution = "x\u3000";
  EXPECT_EQ(build(p, "QCM-AL").answer,
            "The answer is B. BECAUSE: x");  // U+3000 is Python whitespace
  p.solution = "x\u200b";                    // U+200B is not
  EXPECT_EQ(build(p, "QCM-AL").answer, "The answer is B. BECAUSE: x\u200b");
}

TEST(Prompt, PythonStripMatchesStrIsspace) {
  EXPECT_EQ(python_strip("\x1c\x1d\x1e\x1f \t\n\v\f\r"), "");
  EXPECT_EQ(python_strip("\u0085\u00a0é\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"), "é");
  EXPECT_EQ(python_strip("  a b  "), "a b");
  EXPECT_EQ(python_strip("\u00e9"), "\u00e9");
  EXPECT_EQ(python_strip("\x85"), "\x85");  // a lone continuation byte is not U+0085
}

TEST(Prompt, FiveChoicesGetLettersAToE) {
  ProblemText p = problem();
  p.choices = {"1", "2", "3", "4", "5"};
  p.answer_index = 4;
  const PromptPair r = build(p, "CQM-A");
  EXPECT_NE(r.prompt.find("Options: (A) 1 (B) 2 (C) 3 (D) 4 (E) 5\nResponse:"), std::string::npos);
  EXPECT_EQ(r.answer, "The answer is E.");
}

TEST(Prompt, BadProblemsAreErrors) {
  ProblemText p = problem();
  p.answer_index = 3;
  EXPECT_THROW(build(p, "QCM-A"), Error);
  p.answer_index = -1;
  EXPECT_THROW(build(p, "QCM-A"), Error);
  p.choices.clear();
  p.answer_index = 0;
  EXPECT_THROW(build(p, "QCM-A"), Error);
}

TEST(PromptFormat, NamesRoundTripAndUnknownOnesListTheValidParts) {
  const auto names = prompt_format_names();
  EXPECT_EQ(names.size(), 72u);
  for (const auto& n : names) EXPECT_EQ(prompt_format_name(parse_prompt_format(n)), n);
  for (const char* bad : {"QCM-XYZ", "QCMALE", "qcm-ale", "QCM-", "-ALE", "QCM-ALE-A", ""}) {
    try {
      parse_prompt_format(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ConfigError& e) {
      ASSERT_EQ(e.problems().size(), 1u);
      EXPECT_EQ(e.problems()[0].key, "data.prompt_format");
      EXPECT_NE(e.problems()[0].hint.find("QCLEM"), std::string::npos);
      EXPECT_NE(e.problems()[0].hint.find("ELA"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(PromptAnswer, ExtractionFollowsLavinsRegex) {
  EXPECT_EQ(extract_answer("The answer is B.", 4), 1);
  EXPECT_EQ(extract_answer("The answer is A. BECAUSE: x", 2), 0);
  EXPECT_EQ(extract_answer("xx The answer is C,yy", 3), 2);  // the final '.' is a wildcard
  EXPECT_EQ(extract_answer("The answer is BC", 4), 1);
  EXPECT_EQ(extract_answer("The answer is A\r", 4), 0);   // '.' matches \r in Python ...
  EXPECT_EQ(extract_answer("The answer is B\n", 4), -1);  // ... but not \n
  EXPECT_EQ(extract_answer("The answer is B", 4), -1);    // nothing after the letter
  EXPECT_EQ(extract_answer("the answer is B.", 4), -1);
  EXPECT_EQ(extract_answer("The answer is  B.", 4), -1);
  EXPECT_EQ(extract_answer("", 4), -1);
  EXPECT_EQ(extract_answer("The answer is E.", 4), -1);  // not among the first 4 letters
  EXPECT_EQ(extract_answer("The answer is E.", 5), 4);
}

TEST(PromptAnswer, OnlyTheFirstMatchCounts) {
  EXPECT_EQ(extract_answer("The answer is Z. The answer is A.", 4), -1);
  EXPECT_EQ(find_answer_letter("The answer is The answer is B."), 'T');
  EXPECT_EQ(extract_answer("The answer is b. The answer is C.", 4), 2);  // the first does not match
  EXPECT_EQ(extract_answer("The answer is \u00e9. The answer is D.", 4), 3);
  EXPECT_FALSE(find_answer_letter("no answer here").has_value());
}

TEST(PromptFormat, TheConfigAcceptsEveryFormatTheBuilderHas) {
  for (const auto& n : prompt_format_names()) {
    config::RunConfig cfg;
    EXPECT_NO_THROW(cfg = config::load_config(std::string(testing::kSourceDir) + "/configs/lavin/tiny.yaml",
                                              {"data.prompt_format=" + n}, adapters::builtin_adapters()))
        << n;
    EXPECT_EQ(cfg.data.prompt_format, n);
  }
  EXPECT_THROW(config::load_config(std::string(testing::kSourceDir) + "/configs/lavin/tiny.yaml",
                                   {"data.prompt_format=QCM-XYZ"}, adapters::builtin_adapters()),
               ConfigError);
}

}  // namespace test_prompt
}  // namespace mmtune::data

