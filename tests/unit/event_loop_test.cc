// The I/O layer on its own: the io_uring engine and the synchronous fallback run the same reads,
// writes and syncs with the same results (short transfers finished, reads past the end as zeros,
// errors as -errno), and the event loop runs posted work from other threads, deferred work and
// timers in order, waking for each.
#include "strata/event_loop.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "strata/env.h"

#include "io/sim_env.h"
#include "io/uring_engine.h"
#include "testutil/test_util.h"
#include "util/clock.h"

namespace strata {
namespace {

using test::RandomBytes;
using test::TempDir;

struct Done {
  int count = 0;
};

void CountDone(IoOp* op) { static_cast<Done*>(op->ctx)->count++; }

// Runs `ops` on `engine` until every one completed.
void RunAll(IoEngine* engine, std::vector<IoOp>& ops, Done* done) {
  for (IoOp& op : ops) {
    op.done = CountDone;
    op.ctx = done;
    engine->Submit(&op);
  }
  for (int turns = 0; done->count < static_cast<int>(ops.size()) && turns < 10000; turns++) {
    engine->Run(100);
  }
  ASSERT_EQ(done->count, static_cast<int>(ops.size()));
  EXPECT_EQ(engine->in_flight(), 0u);
}

// Writes 64 4 KiB blocks at QD 64, syncs, reads them back and past the end, and fails a read of
// a closed descriptor: the same results from either engine.
void ExerciseEngine(IoEngine* engine, const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  const auto data = RandomBytes(64 * 4096, 9);
  std::vector<IoOp> writes(64);
  for (size_t i = 0; i < writes.size(); i++) {
    writes[i].kind = IoOp::Kind::kWrite;
    writes[i].file = fd;
    writes[i].buf = const_cast<std::byte*>(data.data()) + i * 4096;
    writes[i].length_bytes = 4096;
    writes[i].offset_bytes = i * 4096;
  }
  Done wrote;
  RunAll(engine, writes, &wrote);
  for (const IoOp& op : writes) {
    EXPECT_EQ(op.result, 4096);
  }
  std::vector<IoOp> sync(1);
  sync[0].kind = IoOp::Kind::kSync;
  sync[0].file = fd;
  Done synced;
  RunAll(engine, sync, &synced);
  EXPECT_EQ(sync[0].result, 0);
  // One read of everything plus 8 KiB past the end: the tail reads as zeros.
  std::vector<std::byte> back(66 * 4096, std::byte{0x5a});
  std::vector<IoOp> reads(2);
  reads[0].kind = IoOp::Kind::kRead;
  reads[0].file = fd;
  reads[0].buf = back.data();
  reads[0].length_bytes = 66 * 4096;
  reads[1].kind = IoOp::Kind::kRead;
  reads[1].file = 12345;  // no such descriptor
  reads[1].buf = back.data();
  reads[1].length_bytes = 4096;
  Done read;
  RunAll(engine, reads, &read);
  EXPECT_EQ(reads[0].result, 66 * 4096);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), back.begin()));
  EXPECT_TRUE(test::AllZero(std::vector<std::byte>(back.begin() + 64 * 4096, back.end())));
  EXPECT_EQ(reads[1].result, -EBADF);
  close(fd);
}

TEST(EngineTest, UringAndSyncEnginesAgree) {
  TempDir dir;
  int err = 0;
  std::unique_ptr<IoEngine> uring = NewUringEngine(64, &err);
  if (uring == nullptr) {
    GTEST_SKIP() << "io_uring refused here (" << err << ")";
  }
  EXPECT_STREQ(uring->name(), "io_uring");
  ExerciseEngine(uring.get(), dir.Sub("uring"));
  setenv("STRATA_IO_ENGINE", "sync", 1);
  auto sync = Env::Default()->NewEngine(64);
  unsetenv("STRATA_IO_ENGINE");
  ASSERT_TRUE(sync.ok());
  EXPECT_STRNE((*sync)->name(), "io_uring");
  ExerciseEngine(sync->get(), dir.Sub("sync"));
}

TEST(EventLoopTest, PostsFromOtherThreadsWakeTheLoopAndRunOnIt) {
  auto loop = EventLoop::Create(nullptr, 16);
  ASSERT_TRUE(loop.ok());
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::atomic<int> ran{0};
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; t++) {
    posters.emplace_back([&] {
      for (int i = 0; i < 250; i++) {
        (*loop)->Post([&] {
          EXPECT_EQ(std::this_thread::get_id(), loop_thread);
          ran++;
        });
      }
    });
  }
  const uint64_t start = MonotonicNowNs();
  (*loop)->RunUntil([&] { return ran.load() == 1000; });
  for (auto& t : posters) {
    t.join();
  }
  EXPECT_EQ(ran.load(), 1000);
  EXPECT_LT(MonotonicNowNs() - start, 5'000'000'000ull) << "a post did not wake the loop";
}

TEST(EventLoopTest, DeferredWorkAndTimersRunInOrder) {
  auto loop = EventLoop::Create(nullptr, 16);
  ASSERT_TRUE(loop.ok());
  std::vector<int> order;
  const uint64_t start = MonotonicNowNs();
  (*loop)->RunAfter(30'000'000, [&] { order.push_back(3); });
  (*loop)->RunAfter(10'000'000, [&] { order.push_back(2); });
  (*loop)->RunAfter(10'000'000, [&] { order.push_back(22); });  // FIFO among equal deadlines
  (*loop)->Defer([&] { order.push_back(1); });
  (*loop)->RunUntil([&] { return order.size() == 4; });
  EXPECT_EQ(order, (std::vector<int>{1, 2, 22, 3}));
  EXPECT_GE(MonotonicNowNs() - start, 30'000'000u) << "a timer ran early";
}

// Timers run on the Env's clock: a simulator that moves its clock on fires them at once (the
// QoS delay a volume's limiter computes on that clock is waited out on the same clock).
TEST(EventLoopTest, TimersFollowTheEnvClock) {
  SimEnv env(3);
  auto loop = EventLoop::Create(&env, 8);
  ASSERT_TRUE(loop.ok());
  bool ran = false;
  (*loop)->RunAfter(3600ull * 1'000'000'000, [&] { ran = true; });  // an hour
  (*loop)->RunOnce(0);
  EXPECT_FALSE(ran);
  const uint64_t start = MonotonicNowNs();
  env.AdvanceClock(3600ull * 1'000'000'000);
  (*loop)->RunOnce(0);
  EXPECT_TRUE(ran) << "the hour passed on the Env's clock";
  EXPECT_LT(MonotonicNowNs() - start, 1'000'000'000u) << "without waiting it out";
}

}  // namespace
}  // namespace strata
