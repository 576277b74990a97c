// What a progress display needs to know about the terminal, and how it writes durations.
#pragma once

#include <string>

namespace mmtune {

/// True when stderr is a terminal (a progress line is redrawn in place; otherwise logged).
bool stderr_is_tty();

/// "1h02m03s" / "2m03s" / "3s"; "?" for a negative or non-finite number of seconds.
std::string format_duration(double seconds);

}  // namespace mmtune
