// NBD wire protocol: constants from doc/proto.md (NetworkBlockDevice/nbd) and big-endian helpers.
// nbd-server/README.md lists the subset strata-nbd implements.
#ifndef STRATA_NBD_PROTOCOL_H_
#define STRATA_NBD_PROTOCOL_H_

#include <cstdint>
#include <cstring>
#include <string>

namespace strata::nbd {

constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;  // "NBDMAGIC"
constexpr uint64_t kOptMagic = 0x49484156454F5054ull;  // "IHAVEOPT"
constexpr uint64_t kRepMagic = 0x3e889045565a9ull;
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// Handshake flags (server) and client flags.
constexpr uint16_t kFlagFixedNewstyle = 1 << 0;
constexpr uint16_t kFlagNoZeroes = 1 << 1;
constexpr uint32_t kClientFixedNewstyle = 1 << 0;
constexpr uint32_t kClientNoZeroes = 1 << 1;

// Options.
constexpr uint32_t kOptExportName = 1;
constexpr uint32_t kOptAbort = 2;
constexpr uint32_t kOptList = 3;
constexpr uint32_t kOptStartTls = 5;
constexpr uint32_t kOptInfo = 6;
constexpr uint32_t kOptGo = 7;
constexpr uint32_t kOptStructuredReply = 8;
constexpr uint32_t kOptListMetaContext = 9;
constexpr uint32_t kOptSetMetaContext = 10;

// Option replies.
constexpr uint32_t kRepAck = 1;
constexpr uint32_t kRepServer = 2;
constexpr uint32_t kRepInfo = 3;
constexpr uint32_t kRepMetaContext = 4;
constexpr uint32_t kRepErrUnsup = 0x80000001;
constexpr uint32_t kRepErrPolicy = 0x80000002;
constexpr uint32_t kRepErrInvalid = 0x80000003;
constexpr uint32_t kRepErrTlsReqd = 0x80000005;
constexpr uint32_t kRepErrUnknown = 0x80000006;
constexpr uint32_t kRepErrShutdown = 0x80000007;
constexpr uint32_t kRepErrTooBig = 0x80000009;

// Info types.
constexpr uint16_t kInfoExport = 0;
constexpr uint16_t kInfoName = 1;
constexpr uint16_t kInfoDescription = 2;
constexpr uint16_t kInfoBlockSize = 3;

// Transmission flags.
constexpr uint16_t kHasFlags = 1 << 0;
constexpr uint16_t kReadOnly = 1 << 1;
constexpr uint16_t kSendFlush = 1 << 2;
constexpr uint16_t kSendFua = 1 << 3;
constexpr uint16_t kSendTrim = 1 << 5;
constexpr uint16_t kSendWriteZeroes = 1 << 6;
constexpr uint16_t kSendDf = 1 << 7;
constexpr uint16_t kCanMultiConn = 1 << 8;
constexpr uint16_t kSendCache = 1 << 10;
constexpr uint16_t kSendFastZero = 1 << 11;

// Commands and command flags.
constexpr uint16_t kCmdRead = 0;
constexpr uint16_t kCmdWrite = 1;
constexpr uint16_t kCmdDisc = 2;
constexpr uint16_t kCmdFlush = 3;
constexpr uint16_t kCmdTrim = 4;
constexpr uint16_t kCmdCache = 5;
constexpr uint16_t kCmdWriteZeroes = 6;
constexpr uint16_t kCmdBlockStatus = 7;
constexpr uint16_t kCmdFlagFua = 1 << 0;
constexpr uint16_t kCmdFlagNoHole = 1 << 1;
constexpr uint16_t kCmdFlagDf = 1 << 2;
constexpr uint16_t kCmdFlagReqOne = 1 << 3;
constexpr uint16_t kCmdFlagFastZero = 1 << 4;

// Structured reply chunks.
constexpr uint16_t kReplyFlagDone = 1 << 0;
constexpr uint16_t kChunkNone = 0;
constexpr uint16_t kChunkOffsetData = 1;
constexpr uint16_t kChunkOffsetHole = 2;
constexpr uint16_t kChunkBlockStatus = 5;
constexpr uint16_t kChunkError = 32769;

// base:allocation states.
constexpr uint32_t kStateHole = 1 << 0;
constexpr uint32_t kStateZero = 1 << 1;

// Error values allowed on the wire.
constexpr uint32_t kEPERM = 1;
constexpr uint32_t kEIO = 5;
constexpr uint32_t kEINVAL = 22;
constexpr uint32_t kENOSPC = 28;
constexpr uint32_t kEOVERFLOW = 75;
constexpr uint32_t kENOTSUP = 95;
constexpr uint32_t kESHUTDOWN = 108;

constexpr size_t kRequestHeaderBytes = 28;
constexpr size_t kSimpleReplyBytes = 16;
constexpr size_t kChunkHeaderBytes = 20;
constexpr uint32_t kMetaContextAllocation = 1;  // our id for base:allocation
constexpr uint32_t kMetaContextDirty = 2;       // our id for the qemu:dirty-bitmap: context
constexpr uint32_t kStateDirty = 1;             // qemu:dirty-bitmap: changed since the snapshot
inline constexpr char kDirtyBitmapPrefix[] = "qemu:dirty-bitmap:";

inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) {
    p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  }
}
inline void Put64(uint8_t* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v >> 32));
  Put32(p + 4, static_cast<uint32_t>(v));
}
inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Get32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline uint64_t Get64(const uint8_t* p) { return (uint64_t{Get32(p)} << 32) | Get32(p + 4); }

}  // namespace strata::nbd

#endif  // STRATA_NBD_PROTOCOL_H_
