// libFuzzer target: the EC2 API endpoint's two parsers of outside input. The first line is an
// Authorization header checked by SigV4 verification (remote/sigv4.cc); the rest is a form body
// (Action=...&Name.1.Key=...) executed by the EC2 Query layer (control/ec2_query.cc) against an
// in-memory pool (SimEnv). No input may crash, abort, or produce a reply that is not well-formed
// XML.
//
//   tools/fuzz.sh 60 ec2_query_fuzz
#include <cstdlib>
#include <pugixml.hpp>
#include <sstream>

#include "strata/compute.h"
#include "strata/pool.h"

#include "control/ec2_query.h"
#include "fuzz_pool.h"
#include "io/sim_env.h"
#include "util/sigv4.h"

namespace {

struct Fixture : strata::fuzz::ComputeFixture {
  Fixture() : ComputeFixture(5, "ec2-query-fuzz") {}
};

int HexDigit(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : -1;
}

std::string FormDecode(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && HexDigit(text[i + 1]) >= 0 &&
               HexDigit(text[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(text[i + 1]) * 16 + HexDigit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string header = input.substr(0, newline);
  const std::string body = newline == std::string::npos ? "" : input.substr(newline + 1);

  strata::sigv4::ReceivedRequest request{
      "POST",
      "/",
      {},
      {{"Host", "127.0.0.1:8773"}, {"X-Amz-Date", "20261204T000000Z"}, {"Authorization", header}},
      body};
  (void)strata::sigv4::VerifySigV4(
      request, "us-east-1", "ec2",
      [](const std::string& id) -> std::optional<std::string> {
        return id == "AKIAFUZZFUZZFUZZFUZZ" ? std::optional<std::string>(std::string(40, 'k'))
                                            : std::nullopt;
      },
      1796342400, nullptr);

  std::vector<std::pair<std::string, std::string>> params;
  std::stringstream pairs(body);
  for (std::string pair; std::getline(pairs, pair, '&') && params.size() < 2000;) {
    const size_t eq = pair.find('=');
    params.emplace_back(FormDecode(pair.substr(0, eq)),
                        eq == std::string::npos ? "" : FormDecode(pair.substr(eq + 1)));
  }
  strata::control::QueryReply reply =
      strata::control::ExecuteEc2Query(fx->compute.get(), params, "fuzz");
  pugi::xml_document doc;
  if (!doc.load_string(reply.xml.c_str()) || reply.http_status < 200 || reply.http_status > 599) {
    std::abort();
  }
  if (fx->pool->ListVolumes().size() > 16 || fx->pool->ListSnapshots().size() > 16) {
    for (const strata::SnapshotInfo& snap : fx->pool->ListSnapshots()) {
      (void)fx->pool->DeleteSnapshot(snap.snapshot_id);
    }
    for (const strata::VolumeInfo& v : fx->pool->ListVolumes()) {
      if (v.name != "disk") {
        (void)fx->pool->DeleteVolume(v.volume_id);
      }
    }
  }
  return 0;
}
