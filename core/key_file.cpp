#include "core/key_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shoal {

Status checkKeyFileSafety(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Error{"key file " + path + " does not exist (create one with: shoalctl keygen " +
                   path + ")"};
    }
    return Error{"key file " + path + " cannot be read: " + std::strerror(errno)};
  }
  if (!S_ISREG(st.st_mode)) {
    return Error{"key file " + path + " is not a regular file"};
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error{"key file " + path + " has mode " + mode +
                 ", which lets group or others access it; run: chmod 600 " + path};
  }
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return Error{"key file " + path + " is owned by uid " + std::to_string(st.st_uid) +
                 ", neither root nor the user running shoal"};
  }
  return Ok{};
}

}  // namespace shoal
