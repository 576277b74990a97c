// Logging from a translation unit that includes torch (this file is compiled with torch's include
// path and precompiled header, so <fmt/...> here is torch's bundled fmt). Debian's spdlog is built
// on fmt 9; mmtune_log keeps it out of torch TUs. This test proves both coexist in one binary.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <fmt/core.h>

#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>

#include <regex>

#include "test_utils.h"

namespace mmtune {
namespace test_logging {

TEST(Logging, TorchTranslationUnitLogsThroughSpdlogWithItsOwnFmt) {
  // Two different fmt versions in one program: torch's headers here (>= 11; its compiled part is
  // not exported by libtorch, so torch TUs must not call fmt at all), Debian's 9.x inside mmtune_log.
  EXPECT_GE(FMT_VERSION, 110000);
  EXPECT_EQ(log::backend_fmt_version() / 10000, 9);

  testing::TempDir d;
  const std::string file = d.path() + "/out/run.log";
  log::init(log::Level::kInfo, 0, 2);
  log::add_file(file);
  log::info() << "loss " << 0.25 << " sizes " << torch::ones({2, 3}).sizes();
  log::debug() << "not written at info level";
  log::warn() << "careful";
  log::close_file();
  const std::string text = testing::read_text(file);
  const std::regex line(R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[rank 0/2\] \[info\] loss 0\.25 sizes \[2, 3\]\n)"
                        R"(\[[^\]]+\] \[rank 0/2\] \[warning\] careful\n)");
  EXPECT_TRUE(std::regex_match(text, line)) << text;
}

TEST(Logging, NonZeroRanksOnlyWarnUnlessDebugging) {
  log::init(log::Level::kInfo, 1, 2);
  EXPECT_FALSE(log::enabled(log::Level::kInfo));
  EXPECT_TRUE(log::enabled(log::Level::kWarn));
  log::init(log::Level::kDebug, 1, 2);
  EXPECT_TRUE(log::enabled(log::Level::kDebug));
  log::init(log::Level::kWarn, 0, 1);
}

TEST(Logging, ParseLevel) {
  EXPECT_EQ(log::parse_level("debug"), log::Level::kDebug);
  EXPECT_EQ(log::parse_level("warning"), log::Level::kWarn);
  EXPECT_EQ(log::parse_level("loud"), std::nullopt);
}

TEST(Logging, UnwritableLogFileIsAnErrorWithAHint) {
  testing::TempDir d;
  const std::string blocker = d.write("file", "x");
  try {
    log::add_file(blocker + "/run.log");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open log file"), std::string::npos);
  }
}

}  // namespace test_logging
}  // namespace mmtune
