#include "api_server.h"

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

#include "control/ebs_direct.h"
#include "control/ec2_query.h"
#include "control/handlers.h"
#include "remote/sigv4.h"
#include "server.h"
#include "util/ids.h"
#include "util/json_text.h"

namespace strata::nbd {

namespace {

// cpp-httplib's task queue with a bound: `threads` workers and at most `queued` accepted
// connections waiting. When it is full the accepting thread waits, so new clients wait in the
// kernel's backlog instead of in memory (httplib's own pool queues without limit).
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(size_t threads, size_t queued) : queued_(queued) {
    for (size_t i = 0; i < threads; i++) {
      workers_.emplace_back([this] { Work(); });
    }
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mu_);
    room_.wait(lock, [&] { return jobs_.size() < queued_ || shutdown_; });
    jobs_.push_back(std::move(fn));
    ready_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (std::thread& t : workers_) {
      t.join();
    }
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [&] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) {
          return;  // shut down and drained
        }
        job = std::move(jobs_.front());
        jobs_.pop_front();
        room_.notify_one();
      }
      job();
    }
  }

  const size_t queued_;
  std::mutex mu_;
  std::condition_variable ready_, room_;
  std::deque<std::function<void()>> jobs_;
  bool shutdown_ = false;
  std::vector<std::thread> workers_;
};

std::vector<std::pair<std::string, std::string>> FormParams(const std::string& text) {
  httplib::Params parsed;
  httplib::detail::parse_query_text(text, parsed);
  return {parsed.begin(), parsed.end()};
}

void Reply(httplib::Response& res, const control::QueryReply& reply) {
  res.status = reply.http_status;
  res.set_content(reply.xml, "text/xml;charset=UTF-8");
}

// The request as SigV4 verification sees it: method, path and query as sent, headers, body.
remote::ReceivedRequest Received(const httplib::Request& req) {
  const size_t question = req.target.find('?');
  remote::ReceivedRequest received;
  received.method = req.method;
  received.path = req.target.substr(0, question);
  if (question != std::string::npos) {
    received.query = FormParams(req.target.substr(question + 1));
  }
  received.headers.assign(req.headers.begin(), req.headers.end());
  received.body = req.body;
  return received;
}

Status Verify(Compute* compute, const remote::ReceivedRequest& received, const char* service) {
  return remote::VerifySigV4(
      received, control::kRegion, service,
      [compute](const std::string& id) { return compute->AccessKeySecret(id); }, time(nullptr),
      nullptr, /*allow_unsigned_payload=*/std::string(service) == "ebs");
}

// The EBS direct APIs (/snapshots/...): SigV4 for service "ebs", JSON errors.
void ServeEbs(Compute* compute, control::EbsDirect* ebs, const httplib::Request& req,
              httplib::Response& res) {
  const remote::ReceivedRequest received = Received(req);
  Status auth = Verify(compute, received, "ebs");
  control::EbsReply reply;
  if (!auth.ok()) {
    reply = {403,
             "application/json",
             DumpJson(nlohmann::json{{"Message", auth.message()}}),
             {{"x-amzn-ErrorType", "AccessDeniedException"}}};
  } else {
    control::EbsRequest request{req.method, req.path, {}, {}, req.body};
    request.query.insert(received.query.begin(), received.query.end());
    for (const auto& [name, value] : req.headers) {
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      request.headers[lower] = value;
    }
    reply = ebs->Handle(request);
  }
  res.status = reply.http_status;
  for (const auto& [name, value] : reply.headers) {
    res.set_header(name.c_str(), value);
  }
  res.set_content(reply.body, reply.content_type.c_str());
}

void Serve(Compute* compute, control::ClientTokens* tokens, const httplib::Request& req,
           httplib::Response& res) {
  const std::string request_id = RandomIdTail();
  const remote::ReceivedRequest received = Received(req);
  Status auth = Verify(compute, received, "ec2");
  if (!auth.ok()) {
    const std::string& m = auth.message();
    const size_t colon = m.find(": ");
    Reply(res, control::Ec2ErrorReply(m.substr(0, colon), m.substr(colon + 2), 401, request_id));
    return;
  }
  auto params = received.query;
  if (req.method == "POST") {
    auto body = FormParams(req.body);
    params.insert(params.end(), body.begin(), body.end());
  }
  Reply(res, control::ExecuteEc2Query(compute, params, request_id, tokens));
}

// As NBD over TCP: credentials and a whole pool's volumes cross this listener, so plaintext
// is for loopback unless the operator says otherwise.
Status CheckPlaintextAllowed(const std::string& host, const std::string& tls_dir, bool allow) {
  if (!tls_dir.empty() || allow) {
    return Status::OK();
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) {
    return Status::InvalidArgument("--api-listen: cannot resolve '" + host + "'");
  }
  bool loopback = true;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    loopback = loopback && IsLoopback(a->ai_addr);
  }
  freeaddrinfo(res);
  return loopback ? Status::OK()
                  : Status::InvalidArgument(
                        "--api-listen on a non-loopback address needs HTTPS (--tls-certificates) "
                        "or --allow-insecure-tcp on a network you trust");
}

}  // namespace

Result<std::unique_ptr<ApiServer>> ApiServer::Start(Compute* compute, const std::string& address,
                                                    const std::string& tls_certificates_dir,
                                                    bool allow_insecure, const ApiLimits& limits) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument("--api-listen wants HOST:PORT, not '" + address + "'");
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text = address.substr(colon + 1);
  int port = -1;
  if (!port_text.empty() && port_text.size() <= 5 &&
      port_text.find_first_not_of("0123456789") == std::string::npos) {
    port = std::stoi(port_text);
  }
  if (port < 0 || port > 65535) {
    return Status::InvalidArgument("--api-listen: bad port in '" + address + "'");
  }
  STRATA_RETURN_IF_ERROR(CheckPlaintextAllowed(host, tls_certificates_dir, allow_insecure));
  std::unique_ptr<ApiServer> server(new ApiServer());
  if (tls_certificates_dir.empty()) {
    server->http_ = std::make_unique<httplib::Server>();
  } else {
    const std::string cert = tls_certificates_dir + "/server-cert.pem";
    const std::string key = tls_certificates_dir + "/server-key.pem";
    auto https = std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str());
    if (!https->is_valid()) {
      return Status::InvalidArgument("--api-listen over HTTPS: cannot load " + cert + " and " +
                                     key);
    }
    server->http_ = std::move(https);
  }
  httplib::Server& http = *server->http_;
  http.new_task_queue = [limits] { return new BoundedTaskQueue(limits.threads, limits.queued); };
  http.set_payload_max_length(limits.max_body_bytes);
  http.set_read_timeout(limits.io_timeout_s, 0);
  http.set_write_timeout(limits.io_timeout_s, 0);
  // One request per connection: httplib gives a kept-alive connection its worker while it idles,
  // so 100 idle clients would hold 4 workers for their whole keep-alive timeout.
  http.set_keep_alive_max_count(1);
  server->tokens_ = std::make_unique<control::ClientTokens>();
  auto handler = [compute, tokens = server->tokens_.get()](const httplib::Request& req,
                                                           httplib::Response& res) {
    Serve(compute, tokens, req, res);
  };
  http.Post("/", handler);
  http.Get("/", handler);
  server->ebs_ = std::make_unique<control::EbsDirect>(compute);
  auto ebs_handler = [compute, ebs = server->ebs_.get()](const httplib::Request& req,
                                                         httplib::Response& res) {
    ServeEbs(compute, ebs, req, res);
  };
  http.Get(R"(/snapshots/.*)", ebs_handler);
  http.Put(R"(/snapshots/.*)", ebs_handler);
  http.Post(R"(/snapshots(/.*)?)", ebs_handler);
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                std::exception_ptr) {  // a bug: answer, keep serving
    Reply(res, control::Ec2ErrorReply("InternalError", "internal error", 500, RandomIdTail()));
  });
  if (port == 0) {
    server->port_ = http.bind_to_any_port(host);
  } else {
    server->port_ = http.bind_to_port(host, port) ? port : -1;
  }
  if (server->port_ < 0) {
    return Status::IOError("--api-listen: cannot listen on " + address, EADDRINUSE);
  }
  server->thread_ = std::thread([&http] { http.listen_after_bind(); });
  return server;
}

ApiServer::~ApiServer() {
  if (http_) {
    http_->stop();
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  http_.reset();  // (its workers are joined: nothing uses the EBS uploads now)
  ebs_.reset();
}

}  // namespace strata::nbd
