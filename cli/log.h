#pragma once
// shoald's log: one line per message on stderr, with a level. Under systemd (JOURNAL_STREAM
// set) each line starts with the syslog priority in angle brackets ("<3>"), which journald
// turns into the entry's priority; elsewhere it starts with a timestamp and the level name.

#include <cstdarg>
#include <string_view>

namespace shoal::daemon {

enum class LogLevel : int { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

/// Messages above this level are dropped. Default Info.
void setLogLevel(LogLevel level);
/// Parses "error", "warning", "notice", "info" or "debug".
bool parseLogLevel(std::string_view text, LogLevel& level);

/// printf-style; a newline is added.
void log(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace shoal::daemon
