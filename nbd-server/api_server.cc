#include "api_server.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "control/ebs_direct.h"
#include "control/ec2_query.h"
#include "control/handlers.h"
#include "control/identity_api.h"
#include "control/kms_api.h"
#include "server.h"
#include "util/check.h"
#include "util/ids.h"
#include "util/json_text.h"
#include "util/sigv4.h"
#include "util/text.h"

namespace strata::nbd {

struct ApiServer::Context {
  Compute* compute = nullptr;
  ApiLimits limits;
  std::unique_ptr<control::ClientTokens> tokens;  // EC2 idempotency
  std::unique_ptr<control::EbsDirect> ebs;        // the EBS direct APIs' uploads in progress
  std::atomic<size_t> bodies_bytes{0};            // reserved by the requests being received
};

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One request, from its request line to its completion (MHD's per-request pointer).
struct ApiRequest {
  std::string target;  // the request target as sent: path and query, still URI-encoded
  bool started = false;
  size_t expected = 0;  // Content-Length
  size_t reserved = 0;  // bytes of Context::bodies_bytes this request holds
  std::string body;
  int64_t start_ms = 0;
};

// application/x-www-form-urlencoded (a query string or a form body) into decoded pairs. Bounded by
// the text, which is bounded by the request limits.
Params FormParams(const std::string& text) {
  Params out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, '&')) {
    if (item.empty()) {
      continue;
    }
    const size_t eq = item.find('=');
    std::string name = item.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    for (std::string* s : {&name, &value}) {
      std::replace(s->begin(), s->end(), '+', ' ');
      s->resize(MHD_http_unescape(s->data()));
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

std::string Unescaped(std::string s) {
  s.resize(MHD_http_unescape(s.data()));
  return s;
}

struct HttpReply {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

MHD_Result Send(MHD_Connection* connection, const HttpReply& reply) {
  MHD_Response* response = MHD_create_response_from_buffer(
      reply.body.size(), const_cast<char*>(reply.body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) {
    return MHD_NO;
  }
  if (!reply.content_type.empty()) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, reply.content_type.c_str());
  }
  for (const auto& [name, value] : reply.headers) {
    MHD_add_response_header(response, name.c_str(), value.c_str());
  }
  const MHD_Result queued =
      MHD_queue_response(connection, static_cast<unsigned>(reply.status), response);
  MHD_destroy_response(response);
  return queued;
}

HttpReply XmlReply(const control::QueryReply& reply) {
  return {reply.http_status, "text/xml;charset=UTF-8", reply.xml, {}};
}

HttpReply Ec2Error(const std::string& code, const std::string& message, int status) {
  return XmlReply(control::Ec2ErrorReply(code, message, status, RandomIdTail()));
}

MHD_Result CollectHeader(void* cls, MHD_ValueKind, const char* name, const char* value) {
  static_cast<Params*>(cls)->emplace_back(name, value != nullptr ? value : "");
  return MHD_YES;
}

// The request as SigV4 verification sees it: method, path and query as sent, headers, body.
sigv4::ReceivedRequest Received(MHD_Connection* connection, const char* method,
                                const ApiRequest& req) {
  const size_t question = req.target.find('?');
  sigv4::ReceivedRequest received;
  received.method = method;
  received.path = req.target.substr(0, question);
  if (question != std::string::npos) {
    received.query = FormParams(req.target.substr(question + 1));
  }
  MHD_get_connection_values(connection, MHD_HEADER_KIND, &CollectHeader, &received.headers);
  received.body = req.body;
  return received;
}

Status Verify(Compute* compute, const sigv4::ReceivedRequest& received, const char* service,
              std::string* access_key_id = nullptr) {
  return sigv4::VerifySigV4(
      received, control::kRegion, service,
      [compute](const std::string& id) { return compute->AccessKeySecret(id); }, time(nullptr),
      access_key_id, /*allow_unsigned_payload=*/std::string(service) == "ebs");
}

// The service a Query request was signed for (its credential scope): "sts" and "iam" share the
// listener with "ec2", as they share one endpoint URL in the tools' configuration.
const char* SignedService(const sigv4::ReceivedRequest& received) {
  for (const auto& [name, value] : received.headers) {
    if (strcasecmp(name.c_str(), "authorization") == 0) {
      for (const char* service : {"sts", "iam"}) {
        if (value.find(std::string("/") + service + "/aws4_request") != std::string::npos) {
          return service;
        }
      }
    }
  }
  return "ec2";
}

// The EBS direct APIs (/snapshots/...): SigV4 for service "ebs", JSON errors.
HttpReply ServeEbs(ApiServer::Context* ctx, const sigv4::ReceivedRequest& received) {
  Status auth = Verify(ctx->compute, received, "ebs");
  control::EbsReply reply;
  if (!auth.ok()) {
    reply = {403,
             "application/json",
             DumpJson(nlohmann::json{{"Message", auth.message()}}),
             {{"x-amzn-ErrorType", "AccessDeniedException"}}};
  } else {
    control::EbsRequest request{received.method, Unescaped(received.path), {}, {}, received.body};
    request.query.insert(received.query.begin(), received.query.end());
    for (const auto& [name, value] : received.headers) {
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      request.headers[lower] = value;
    }
    reply = ctx->ebs->Handle(request);
  }
  return {reply.http_status, reply.content_type, reply.body, reply.headers};
}

// The KMS (TrentService, JSON 1.1): SigV4 for service "kms", KMS's JSON errors.
HttpReply ServeKms(ApiServer::Context* ctx, const sigv4::ReceivedRequest& received,
                   const std::string& target) {
  constexpr char kType[] = "application/x-amz-json-1.1";
  Status auth = Verify(ctx->compute, received, "kms");
  if (!auth.ok()) {
    const std::string& m = auth.message();
    const bool unknown = m.find("does not exist") != std::string::npos;
    return {400,
            kType,
            DumpJson(nlohmann::json{
                {"__type", unknown ? "UnrecognizedClientException" : "InvalidSignatureException"},
                {"message", m}}),
            {}};
  }
  control::KmsReply reply = control::ExecuteKmsJson(ctx->compute->kms(), target, received.body);
  return {reply.http_status, kType, reply.body, {}};
}

// The X-Amz-Target header of a JSON-protocol request ("" if none).
std::string TargetOf(const sigv4::ReceivedRequest& received) {
  for (const auto& [name, value] : received.headers) {
    if (strcasecmp(name.c_str(), "x-amz-target") == 0) {
      return value;
    }
  }
  return "";
}

HttpReply ServeEc2(ApiServer::Context* ctx, const sigv4::ReceivedRequest& received) {
  const char* service = SignedService(received);
  std::string caller;
  Status auth = Verify(ctx->compute, received, service, &caller);
  if (!auth.ok()) {
    const std::string& m = auth.message();
    const size_t colon = m.find(": ");
    return Ec2Error(m.substr(0, colon), colon == std::string::npos ? m : m.substr(colon + 2), 401);
  }
  Params params = received.query;
  if (received.method == "POST") {
    Params body = FormParams(std::string(received.body));
    params.insert(params.end(), body.begin(), body.end());
  }
  if (std::strcmp(service, "ec2") != 0) {
    return XmlReply(
        control::ExecuteIdentityQuery(ctx->compute, service, params, caller, RandomIdTail()));
  }
  return XmlReply(
      control::ExecuteEc2Query(ctx->compute, params, RandomIdTail(), ctx->tokens.get()));
}

// Routes a complete request. Never throws: a bug answers 500 and the server goes on.
HttpReply Dispatch(ApiServer::Context* ctx, MHD_Connection* connection, const char* url,
                   const char* method, const ApiRequest& req) {
  try {
    const std::string path = url;
    const std::string m = method;
    const sigv4::ReceivedRequest received = Received(connection, method, req);
    if (path == "/" && m == "POST") {
      if (const std::string target = TargetOf(received); target.starts_with("TrentService.")) {
        return ServeKms(ctx, received, target);
      }
    }
    if (path == "/" && (m == "GET" || m == "POST")) {
      return ServeEc2(ctx, received);
    }
    if (path.starts_with("/snapshots") && (m == "GET" || m == "PUT" || m == "POST")) {
      return ServeEbs(ctx, received);
    }
    return Ec2Error("InvalidAction", "no operation at " + m + " " + EscapeText(path, 256), 404);
  } catch (const std::exception&) {
    return Ec2Error("InternalError", "internal error", 500);
  }
}

// The first call for a request (headers complete, no body read yet): the body's size is decided
// here. Returns the refusal to send, if any.
std::optional<HttpReply> Admit(ApiServer::Context* ctx, MHD_Connection* connection,
                               ApiRequest* req) {
  req->start_ms = SteadyMs();
  const char* te =
      MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  if (te != nullptr && std::strlen(te) > 0) {
    return Ec2Error("MissingContentLength",
                    "a request body needs a Content-Length (Transfer-Encoding is not accepted)",
                    411);
  }
  const char* cl =
      MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  uint64_t length = 0;
  if (cl != nullptr) {
    char* end = nullptr;
    errno = 0;
    length = std::strtoull(cl, &end, 10);
    if (errno != 0 || end == cl || *end != '\0') {
      return Ec2Error("InvalidRequest", "malformed Content-Length", 400);
    }
  }
  if (length > ctx->limits.max_body_bytes) {
    return Ec2Error("RequestEntityTooLarge",
                    "request body of " + std::to_string(length) + " bytes; at most " +
                        std::to_string(ctx->limits.max_body_bytes) + " are accepted",
                    413);
  }
  if (length > 0) {
    const size_t was = ctx->bodies_bytes.fetch_add(length);
    if (was + length > ctx->limits.max_bodies_bytes) {
      ctx->bodies_bytes.fetch_sub(length);
      return Ec2Error("ServiceUnavailable", "too many request bodies in flight; retry", 503);
    }
    req->reserved = length;
    req->expected = length;
    req->body.reserve(length);
  }
  return std::nullopt;
}

MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* url, const char* method,
                     const char* /*version*/, const char* upload_data, size_t* upload_data_size,
                     void** con_cls) {
  auto* ctx = static_cast<ApiServer::Context*>(cls);
  auto* req = static_cast<ApiRequest*>(*con_cls);
  if (req == nullptr) {
    return MHD_NO;  // (the URI callback makes one for every request)
  }
  if (!req->started) {
    req->started = true;
    std::optional<HttpReply> refusal = Admit(ctx, connection, req);
    return refusal ? Send(connection, *refusal) : MHD_YES;  // (a refusal leaves the body unread)
  }
  if (*upload_data_size > 0) {
    // MHD delivers no more than Content-Length; the check keeps the reservation honest.
    if (req->body.size() + *upload_data_size > req->expected ||
        SteadyMs() - req->start_ms > int64_t{ctx->limits.request_timeout_s} * 1000) {
      return MHD_NO;  // closes the connection
    }
    req->body.append(upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  return Send(connection, Dispatch(ctx, connection, url, method, *req));
}

// Called with the raw request target before anything else: its return value is the request's
// state, so that SigV4 can check the query exactly as it was sent.
void* OnUri(void* /*cls*/, const char* uri, MHD_Connection* /*connection*/) {
  auto* req = new ApiRequest();
  req->target = uri != nullptr ? uri : "/";
  return req;
}

void OnCompleted(void* cls, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
  auto* ctx = static_cast<ApiServer::Context*>(cls);
  auto* req = static_cast<ApiRequest*>(*con_cls);
  if (req != nullptr) {
    ctx->bodies_bytes.fetch_sub(req->reserved);
    delete req;
    *con_cls = nullptr;
  }
}

// As NBD over TCP: credentials and a whole pool's volumes cross this listener, so plaintext
// is for loopback unless the operator says otherwise.
Status CheckPlaintextAllowed(const addrinfo* addresses, bool tls, bool allow) {
  bool loopback = true;
  for (const addrinfo* a = addresses; a != nullptr; a = a->ai_next) {
    loopback = loopback && IsLoopback(a->ai_addr);
  }
  return tls || allow || loopback
             ? Status::OK()
             : Status::InvalidArgument(
                   "--api-listen on a non-loopback address needs HTTPS (--tls-certificates) "
                   "or --allow-insecure-tcp on a network you trust");
}

// A listening socket on HOST:PORT (the first address that binds). Sets *port to the bound one.
Result<int> Listen(const std::string& address, bool tls, bool allow_insecure, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument("--api-listen wants HOST:PORT, not '" + address + "'");
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text = address.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    return Status::InvalidArgument("--api-listen: bad port in '" + address + "'");
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res) != 0) {
    return Status::InvalidArgument("--api-listen: cannot resolve '" + host + "'");
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(res, &freeaddrinfo);
  STRATA_RETURN_IF_ERROR(CheckPlaintextAllowed(res, tls, allow_insecure));
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    int one = 1;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
        bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0 &&
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0) {
      sockaddr_storage bound{};
      socklen_t len = sizeof(bound);
      getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      *port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      return fd;
    }
    if (fd >= 0) {
      close(fd);
    }
  }
  return Status::IOError("--api-listen: cannot listen on " + address, EADDRINUSE);
}

Result<std::string> ReadPem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty() || text.str().size() > (1 << 20)) {
    return Status::InvalidArgument("--api-listen over HTTPS: cannot load " + path);
  }
  return text.str();
}

}  // namespace

Result<std::unique_ptr<ApiServer>> ApiServer::Start(Compute* compute, const std::string& address,
                                                    const std::string& tls_certificates_dir,
                                                    bool allow_insecure, const ApiLimits& limits) {
  const bool tls = !tls_certificates_dir.empty();
  std::unique_ptr<ApiServer> server(new ApiServer());
  STRATA_ASSIGN_OR_RETURN(server->listen_fd_, Listen(address, tls, allow_insecure, &server->port_));
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC;
  if (tls) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
      return Status::NotSupported("--api-listen over HTTPS: libmicrohttpd was built without TLS");
    }
    STRATA_ASSIGN_OR_RETURN(server->tls_cert_, ReadPem(tls_certificates_dir + "/server-cert.pem"));
    STRATA_ASSIGN_OR_RETURN(server->tls_key_, ReadPem(tls_certificates_dir + "/server-key.pem"));
    flags |= MHD_USE_TLS;
  }
  server->context_ = std::make_unique<Context>();
  Context* ctx = server->context_.get();
  ctx->compute = compute;
  ctx->limits = limits;
  STRATA_ASSIGN_OR_RETURN(ctx->tokens, control::ClientTokens::Open(compute->pool()));
  ctx->ebs = std::make_unique<control::EbsDirect>(compute);
  std::vector<MHD_OptionItem> options = {
      {MHD_OPTION_LISTEN_SOCKET, server->listen_fd_, nullptr},
      {MHD_OPTION_THREAD_POOL_SIZE, std::max(1u, limits.threads), nullptr},
      {MHD_OPTION_CONNECTION_LIMIT, limits.max_connections, nullptr},
      {MHD_OPTION_PER_IP_CONNECTION_LIMIT, limits.max_connections_per_address, nullptr},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<intptr_t>(limits.connection_memory_bytes),
       nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, limits.idle_timeout_s, nullptr},
      {MHD_OPTION_URI_LOG_CALLBACK, reinterpret_cast<intptr_t>(&OnUri), nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&OnCompleted), ctx},
  };
  if (tls) {
    options.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, server->tls_cert_.data()});
    options.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, server->tls_key_.data()});
  }
  options.push_back({MHD_OPTION_END, 0, nullptr});
  server->daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &OnRequest, ctx, MHD_OPTION_ARRAY,
                                     options.data(), MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    close(server->listen_fd_);
    server->listen_fd_ = -1;
    return Status::IOError("--api-listen: libmicrohttpd could not start on " + address +
                               (tls ? " (is the TLS certificate and key valid?)" : ""),
                           EINVAL);
  }
  server->listen_fd_ = -1;  // the daemon's now: MHD_stop_daemon closes it
  return server;
}

ApiServer::~ApiServer() {
  if (daemon_ != nullptr) {
    MHD_stop_daemon(daemon_);  // closes every connection and the listener, joins the threads
  }
  context_.reset();  // (no request runs now: nothing uses the EBS uploads)
}

}  // namespace strata::nbd
