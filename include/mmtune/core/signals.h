// Ctrl-C handling: the first SIGINT asks the current work to stop (long loops poll
// interrupt_requested() or call throw_if_interrupted()); a second one exits at once with 130.
#pragma once

namespace mmtune {

/// Installs the SIGINT/SIGTERM handler for this process (idempotent).
void install_interrupt_handler();
/// True once SIGINT or SIGTERM arrived and was not cleared.
bool interrupt_requested();
/// Forgets an earlier Ctrl-C (chat: stop the answer, keep the session).
void clear_interrupt();
/// Throws mmtune::Interrupted if a Ctrl-C is pending.
void throw_if_interrupted();

}  // namespace mmtune
