#include "cli/log.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace shoal::daemon {
namespace {

LogLevel g_level = LogLevel::Info;

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::Error:
      return "error";
    case LogLevel::Warning:
      return "warning";
    case LogLevel::Notice:
      return "notice";
    case LogLevel::Info:
      return "info";
    case LogLevel::Debug:
      return "debug";
  }
  return "?";
}

bool toJournal() {
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  return journal;
}

}  // namespace

void setLogLevel(LogLevel level) { g_level = level; }

bool parseLogLevel(std::string_view text, LogLevel& level) {
  for (LogLevel l : {LogLevel::Error, LogLevel::Warning, LogLevel::Notice, LogLevel::Info,
                     LogLevel::Debug}) {
    if (text == levelName(l)) {
      level = l;
      return true;
    }
  }
  return false;
}

void log(LogLevel level, const char* format, ...) {
  if (static_cast<int>(level) > static_cast<int>(g_level)) {
    return;
  }
  char message[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  if (toJournal()) {
    std::fprintf(stderr, "<%d>%s\n", static_cast<int>(level), message);
    return;
  }
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  localtime_r(&ts.tv_sec, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03ld shoald %s: %s\n", stamp, ts.tv_nsec / 1000000, levelName(level),
               message);
}

}  // namespace shoal::daemon
