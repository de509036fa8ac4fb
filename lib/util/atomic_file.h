// Small files replaced whole: written to PATH.tmp, synced, renamed over PATH and the directory
// synced, so that a crash leaves the old content or the new, never a mix.
#ifndef STRATA_UTIL_ATOMIC_FILE_H_
#define STRATA_UTIL_ATOMIC_FILE_H_

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "strata/status.h"

namespace strata {

// Mode 0600. `dir` is PATH's directory (synced after the rename).
inline Status WriteFileAtomically(const std::string& dir, const std::string& path,
                                  const std::string& text) {
  const std::string temp = path + ".tmp";
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::FromErrno("open " + temp, errno);
  }
  bool ok =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  int err = errno;
  close(fd);
  if (!ok || rename(temp.c_str(), path.c_str()) != 0) {
    err = ok ? errno : err;
    unlink(temp.c_str());
    return Status::FromErrno("write " + path, err);
  }
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return Status::OK();
}

}  // namespace strata

#endif  // STRATA_UTIL_ATOMIC_FILE_H_
