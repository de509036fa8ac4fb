#include "query.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/json_text.h"

extern char** environ;

namespace strata {

namespace {

// An anonymous in-memory file at a descriptor above 2 (so that dup2 onto 0..2 always copies).
class MemFile {
 public:
  MemFile() {
    int fd = memfd_create("strata-query", MFD_CLOEXEC);
    if (fd >= 0 && fd <= 2) {
      const int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
      close(fd);
      fd = high;
    }
    fd_ = fd;
  }
  ~MemFile() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  int fd() const { return fd_; }
  bool Write(const std::string& text) {
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = pwrite(fd_, text.data() + done, text.size() - done, done);
      if (n <= 0) {
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }
  std::string Read() const {
    std::string text;
    char buf[65536];
    for (off_t at = 0;;) {
      const ssize_t n = pread(fd_, buf, sizeof buf, at);
      if (n <= 0) {
        return text;
      }
      text.append(buf, static_cast<size_t>(n));
      at += n;
    }
  }

 private:
  int fd_ = -1;
};

// Runs `jp -c EXPRESSION` with `input` on stdin: its exit status, stdout and stderr. All three
// streams are in-memory files, so no pipe can fill and stall either side.
Status RunJp(const std::string& expression, const std::string& input, int* exit_status,
             std::string* out, std::string* err) {
  MemFile in, stdout_file, stderr_file;
  if (in.fd() < 0 || stdout_file.fd() < 0 || stderr_file.fd() < 0 || !in.Write(input)) {
    return Status::FromErrno("--query: making its buffers", errno);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.fd(), 0);
  posix_spawn_file_actions_adddup2(&actions, stdout_file.fd(), 1);
  posix_spawn_file_actions_adddup2(&actions, stderr_file.fd(), 2);
  std::string jp = "jp", compact = "-c", expr = expression;
  char* argv[] = {jp.data(), compact.data(), expr.data(), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, "jp", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned == ENOENT) {
    return Status::InvalidArgument(
        "--query needs jp(1), the JMESPath tool (Debian package jp), on PATH");
  }
  if (spawned != 0) {
    return Status::FromErrno("--query: running jp", spawned);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return Status::FromErrno("--query: waiting for jp", errno);
    }
  }
  *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  *out = stdout_file.Read();
  *err = stderr_file.Read();
  return Status::OK();
}

}  // namespace

Result<nlohmann::json> JmesPathQuery(const nlohmann::json& reply, const std::string& expression) {
  // No JMESPath expression starts with '-' or is empty; refusing them here also keeps the
  // expression from being read as one of jp's options.
  if (expression.empty() || expression[0] == '-') {
    return Status::InvalidArgument("--query: '" + expression + "' is not a JMESPath expression");
  }
  int exit_status = 0;
  std::string out, err;
  STRATA_RETURN_IF_ERROR(RunJp(expression, DumpJson(reply), &exit_status, &out, &err));
  if (exit_status != 0) {
    while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) {
      err.pop_back();
    }
    return Status::InvalidArgument("--query: " + (err.empty() ? "jp failed" : err));
  }
  nlohmann::json value = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return Status::Corruption("--query: jp's answer is not JSON");
  }
  return value;
}

}  // namespace strata
