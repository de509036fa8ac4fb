#include "control/control_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "control/control.h"
#include "control/ec2_errors.h"
#include "util/json_text.h"

namespace strata {

namespace {

// Reads up to and excluding '\n'. False on EOF, error, timeout or an over-long line.
bool ReadLine(int fd, std::string* line) {
  char buf[4096];
  while (line->size() < kMaxControlMessageBytes) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    line->append(buf, static_cast<size_t>(n));
    size_t nl = line->find('\n');
    if (nl != std::string::npos) {
      line->resize(nl);
      return true;
    }
  }
  return false;
}

bool WriteAll(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    ssize_t n = send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string ControlSocketPath(const std::string& pool_dir) { return pool_dir + "/control.sock"; }

void ServeControlConnection(int fd, Compute* compute) {
  std::string line;
  nlohmann::json reply;
  if (!ReadLine(fd, &line)) {
    return;
  }
  nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    reply = {{"ok", false}, {"error", "InvalidArgument: control request is not JSON"}};
  } else {
    Result<nlohmann::json> result = ExecuteControl(compute, request);
    reply = result.ok()
                ? nlohmann::json{{"ok", true}, {"result", *result}}
                : nlohmann::json{{"ok", false}, {"error", control::Ec2ErrorText(result.status())}};
  }
  WriteAll(fd, DumpJson(reply) + "\n");
}

Result<nlohmann::json> CallControl(const std::string& pool_dir, const nlohmann::json& request) {
  std::string path = ControlSocketPath(pool_dir);
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status::NotFound("pool path too long for a control socket");
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) {
      close(fd);
    }
    return Status::NotFound("no server on " + path);  // absent or stale: open the pool directly
  }
  std::string line;
  bool ok = WriteAll(fd, DumpJson(request) + "\n") && ReadLine(fd, &line);
  close(fd);
  if (!ok) {
    return Status::IOError("control socket " + path + ": no reply from strata-nbd", EIO);
  }
  nlohmann::json reply = nlohmann::json::parse(line, nullptr, false);
  if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok")) {
    return Status::Corruption("control socket " + path + ": malformed reply");
  }
  return reply;
}

}  // namespace strata
