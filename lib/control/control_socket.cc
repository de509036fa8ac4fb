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

// Reads up to and excluding '\n'. False on EOF, error, timeout or a line over `max_bytes`.
bool ReadLine(int fd, size_t max_bytes, std::string* line) {
  char buf[64 << 10];
  while (line->size() < max_bytes) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    const size_t old = line->size();
    line->append(buf, static_cast<size_t>(n));
    size_t nl = line->find('\n', old);  // (only the new bytes: a long reply stays linear)
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
  if (!ReadLine(fd, kMaxControlMessageBytes, &line)) {
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
  if (!WriteAll(fd, DumpJson(request) + "\n")) {
    close(fd);
    return Status::IOError("control socket " + path +
                               ": strata-nbd closed the connection before taking the request "
                               "(it serves 16 control requests at once; retry)",
                           EIO);
  }
  const bool replied = ReadLine(fd, kMaxControlReplyBytes, &line);
  close(fd);
  if (!replied) {
    return Status::IOError("control socket " + path +
                               ": strata-nbd took the request but its reply did not come back "
                               "(the server stopped?): the request may have been carried out; "
                               "describe the resources to see",
                           kControlReplyLost);
  }
  nlohmann::json reply = nlohmann::json::parse(line, nullptr, false);
  if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok")) {
    return Status::Corruption("control socket " + path + ": malformed reply");
  }
  return reply;
}

}  // namespace strata
