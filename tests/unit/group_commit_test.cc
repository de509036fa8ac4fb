// GroupCommitter on its own: flushes queued together are answered by one commit with its status,
// each on its own event loop; the timer commits unasked; Stop answers what is queued.
#include "store/group_commit.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "io/sim_env.h"
#include "util/clock.h"

namespace strata {
namespace {

TEST(GroupCommitTest, QueuedFlushesShareOneCommitAndItsStatus) {
  std::atomic<int> commits{0};
  std::atomic<bool> hold{true}, entered{false};
  GroupCommitter committer(Env::Default(), 0, [&](bool asked) {
    EXPECT_TRUE(asked) << "no timer: only flushes ask";
    entered = true;
    while (hold.load()) {  // the first commit waits until every flush below is queued
      std::this_thread::yield();
    }
    return ++commits == 2 ? Status::IOError("disk gone", 5) : Status::OK();
  });
  committer.Start();
  std::atomic<int> answered{0}, failed{0};
  auto done = [&](const Status& s) {
    failed += s.ok() ? 0 : 1;
    answered++;
  };
  committer.Request(nullptr, done);  // commit 1 starts with this one alone
  while (!entered.load()) {
    std::this_thread::yield();
  }
  std::vector<std::thread> flushers;
  for (int t = 0; t < 8; t++) {
    flushers.emplace_back([&] { committer.Request(nullptr, done); });
  }
  for (auto& t : flushers) {
    t.join();
  }
  hold = false;
  while (answered.load() < 9) {
    std::this_thread::yield();
  }
  EXPECT_EQ(commits.load(), 2) << "one commit for the first flush, one for the eight queued";
  EXPECT_EQ(failed.load(), 8) << "the failed commit's status reached each of its flushes";
  committer.Stop();
}

TEST(GroupCommitTest, TimerCommitsUnaskedAndLoopsGetTheirAnswers) {
  std::atomic<int> unasked{0};
  GroupCommitter committer(Env::Default(), 5, [&](bool asked) {
    unasked += asked ? 0 : 1;
    return Status::OK();
  });
  committer.Start();
  const uint64_t start = MonotonicNowNs();
  while (unasked.load() < 3 && MonotonicNowNs() - start < 5'000'000'000ull) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GE(unasked.load(), 3) << "a 5 ms timer commits on its own";
  auto loop = EventLoop::Create(nullptr, 8);
  ASSERT_TRUE(loop.ok());
  const std::thread::id loop_thread = std::this_thread::get_id();
  bool answered = false;
  committer.Request(loop->get(), [&](const Status& s) {
    EXPECT_TRUE(s.ok());
    EXPECT_EQ(std::this_thread::get_id(), loop_thread) << "answered on the loop";
    answered = true;
  });
  (*loop)->RunUntil([&] { return answered; });
  committer.Stop();
  committer.Stop();  // idempotent
}

TEST(GroupCommitTest, StopAnswersWhatIsQueued) {
  std::atomic<int> answered{0};
  {
    GroupCommitter committer(Env::Default(), 0, [](bool) { return Status::OK(); });
    committer.Start();
    for (int i = 0; i < 100; i++) {
      committer.Request(nullptr, [&](const Status&) { answered++; });
    }
  }  // destroyed: Stop
  EXPECT_EQ(answered.load(), 100);
}

// The interval is timed on the Env's clock: a simulator moving its clock on gets the timed
// commit within a clock slice, not after the interval of real time.
TEST(GroupCommitTest, TheIntervalFollowsTheEnvClock) {
  SimEnv env(5);
  std::atomic<int> unasked{0};
  GroupCommitter committer(&env, 3'600'000, [&](bool asked) {  // an hour
    unasked += asked ? 0 : 1;
    return Status::OK();
  });
  committer.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * GroupCommitter::kClockSliceMs));
  EXPECT_EQ(unasked.load(), 0) << "an hour has not passed";
  const uint64_t start = MonotonicNowNs();
  env.AdvanceClock(3600ull * 1'000'000'000);
  while (unasked.load() == 0 && MonotonicNowNs() - start < 5'000'000'000ull) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(unasked.load(), 1) << "the hour passed on the Env's clock: one timed commit";
  committer.Stop();
}

}  // namespace
}  // namespace strata
