#include "membership/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shoal {

namespace {

std::string folderOf(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

Error failure(const std::string& what, const std::string& path) {
  return Error{"cannot " + what + " " + path + ": " + std::strerror(errno)};
}

}  // namespace

Status writeFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return failure("create", tmp);
  }
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      Error e = failure("write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  // The data must be on disk before the rename makes it the file, or a power cut could leave
  // an empty file under the real name.
  if (::fsync(fd) != 0) {
    Error e = failure("sync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  }
  if (::close(fd) != 0) {
    Error e = failure("close", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = failure("rename " + tmp + " to", path);
    ::unlink(tmp.c_str());
    return e;
  }
  // The rename itself lives in the folder: sync it so the new name survives a power cut.
  const std::string folder = folderOf(path);
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    return failure("open folder", folder);
  }
  const int rc = ::fsync(dir);
  ::close(dir);
  if (rc != 0) {
    return failure("sync folder", folder);
  }
  return Ok{};
}

Result<std::string> readSmallFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return Error{"missing: " + path + " does not exist"};
    }
    return failure("open", path);
  }
  std::string out;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      Error e = failure("read", path);
      ::close(fd);
      return e;
    }
    if (n == 0) {
      break;
    }
    out.append(buffer, static_cast<std::size_t>(n));
    // A state file is a few hundred bytes; a huge one is the wrong file.
    if (out.size() > (1u << 20)) {
      ::close(fd);
      return Error{path + " is larger than 1 MiB; not a shoal state file"};
    }
  }
  ::close(fd);
  return out;
}

}  // namespace shoal
