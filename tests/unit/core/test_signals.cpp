#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/core/signals.h>

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

namespace mmtune {
namespace test_signals {

TEST(Signals, FirstCtrlCRequestsAStopThatUnwindsWithExit130) {
  install_interrupt_handler();
  clear_interrupt();
  EXPECT_FALSE(interrupt_requested());
  std::raise(SIGINT);
  EXPECT_TRUE(interrupt_requested());
  try {
    throw_if_interrupted();
    FAIL();
  } catch (const Interrupted& e) {
    EXPECT_EQ(e.exit_code(), ExitCode::kInterrupted);
  }
  clear_interrupt();  // chat: stop the answer, keep the session
  EXPECT_NO_THROW(throw_if_interrupted());
}

TEST(Signals, SecondCtrlCExitsAt130) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    install_interrupt_handler();
    std::raise(SIGINT);
    std::raise(SIGINT);
    ::_exit(0);  // not reached
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
}

}  // namespace test_signals
}  // namespace mmtune
