// The worker protocol: every message survives a round trip; malformed lines are rejected
// with a reason rather than misread.
#include <gtest/gtest.h>

#include "parallax/search/protocol.h"
#include "parallax/search/worker.h"

namespace parallax::search {
namespace {

TEST(Protocol, RequestsRoundTrip) {
  WorkerRequest p;
  p.op = Op::kPrepare;
  p.id = 7;
  p.default_key = "decode-bf16-d128-h16x8-contig-nowin.learned-plain.mma-n64-w4-s3-splitauto-g2";
  p.batch = 32;
  p.seqlen = 16384;
  p.seed = 123456789012345ull;
  const std::string line = Encode(p);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  absl::StatusOr<WorkerRequest> back = DecodeRequest(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->op, Op::kPrepare);
  EXPECT_EQ(back->id, 7);
  EXPECT_EQ(back->default_key, p.default_key);
  EXPECT_EQ(back->batch, 32);
  EXPECT_EQ(back->seqlen, 16384);
  EXPECT_EQ(back->seed, p.seed);
  EXPECT_EQ(back->q_len, 0);
  EXPECT_EQ(line.find("q_len"), std::string::npos);  // decode lines are as before

  // Prefill: q_len queries at the end of seqlen keys.
  WorkerRequest pre = p;
  pre.default_key = "prefill-bf16-d128-h16x8-contig-nowin.learned-plain.mma-m64-n64-w4-s2";
  pre.batch = 1;
  pre.seqlen = 8192;
  pre.q_len = 512;
  back = DecodeRequest(Encode(pre));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->default_key, pre.default_key);
  EXPECT_EQ(back->q_len, 512);
  EXPECT_EQ(back->seqlen, 8192);

  WorkerRequest m;
  m.op = Op::kMeasure;
  m.id = 8;
  m.key = p.default_key + "-testhang";
  m.reps = 20;
  back = DecodeRequest(Encode(m));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->op, Op::kMeasure);
  EXPECT_EQ(back->key, m.key);
  EXPECT_EQ(back->reps, 20);

  WorkerRequest q;
  q.op = Op::kQuit;
  EXPECT_EQ(DecodeRequest(Encode(q))->op, Op::kQuit);
}

TEST(Protocol, RepliesRoundTrip) {
  WorkerReply ok = WorkerReply::From(3, Outcome::Ok(12.5, 12.25, 13.0, 20));
  ok.rel_error = 2.5e-3;
  ok.info = {{"num_splits", 4}};
  absl::StatusOr<WorkerReply> back = DecodeReply(Encode(ok));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->is_event());
  const Outcome o = back->ToOutcome();
  EXPECT_EQ(o.verdict, Verdict::kOk);
  EXPECT_DOUBLE_EQ(o.median_us, 12.5);
  EXPECT_DOUBLE_EQ(o.min_us, 12.25);
  EXPECT_DOUBLE_EQ(o.max_us, 13.0);
  EXPECT_EQ(o.reps, 20);
  EXPECT_DOUBLE_EQ(*o.rel_error, 2.5e-3);
  EXPECT_EQ(back->info["num_splits"], 4);

  WorkerReply bad = WorkerReply::From(4, Outcome::Bad(Verdict::kFailed, "decode (synchronize): "
                                                                        "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal "
                                                                        "memory access was encountered)\nnext line"));
  bad.fatal = true;
  back = DecodeReply(Encode(bad));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->verdict, Verdict::kFailed);
  EXPECT_TRUE(back->fatal);
  EXPECT_EQ(back->error, bad.error);

  WorkerReply ev;
  ev.id = 5;
  ev.event = "loaded";
  back = DecodeReply(Encode(ev));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->is_event());
  EXPECT_EQ(back->event, "loaded");
}

TEST(Protocol, SurvivesBytesThatAreNotUtf8) {
  WorkerReply r = WorkerReply::From(1, Outcome::Bad(Verdict::kFailed, std::string("kernel printf: \xff\xfe ok")));
  const std::string line = Encode(r);
  absl::StatusOr<WorkerReply> back = DecodeReply(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_NE(back->error.find("ok"), std::string::npos);
}

TEST(Protocol, RejectsMalformedLines) {
  for (const char* line : {"", "not json", "[1,2]", R"({"id":1})", R"({"op":"dance","id":1})",
                           R"({"op":"measure","id":1,"reps":3})", R"({"op":"measure","id":1,"key":"k","reps":"3"})",
                           R"({"op":"measure","id":1,"key":"k","reps":0})",
                           R"({"op":"prepare","id":1,"default_key":"k","batch":0,"seqlen":4})",
                           R"({"op":"prepare","id":1,"default_key":"k","batch":1,"seqlen":4,"q_len":5})",
                           R"({"op":"prepare","id":1,"default_key":"k","batch":1,"seqlen":4,"q_len":-1})",
                           R"({"op":"prepare","id":1,"default_key":"k","batch":1,"seqlen":4,"q_len":"2"})"}) {
    EXPECT_FALSE(DecodeRequest(line).ok()) << line;
  }
  for (const char* line : {"garbage", R"({"status":"ok","median_us":1})", R"({"id":1,"status":"fine"})",
                           R"({"id":1,"status":"ok"})", R"({"id":"1","status":"failed"})"}) {
    EXPECT_FALSE(DecodeReply(line).ok()) << line;
  }
  absl::StatusOr<WorkerRequest> r = DecodeRequest(R"({"op":"measure","id":1,"reps":3})");
  EXPECT_NE(r.status().message().find("key"), std::string::npos);
}

// `parallax worker` measures a test-only key only when the tuner started it with
// --allow-test-variants; otherwise the request fails with the reason.
TEST(Worker, MeasuresTestOnlyKeysOnlyWhenAllowed) {
  const std::string key = "decode-bf16-d128-h16x8-contig-nowin.learned-plain.mma-n64-w4-s3-splitauto-g2";
  WorkerMainOptions o;
  ASSERT_TRUE(MeasuredVariant(key, o).ok());
  for (const char* suffix : {"-testfault", "-testhang"}) {
    absl::StatusOr<Variant> v = MeasuredVariant(key + suffix, o);
    ASSERT_FALSE(v.ok()) << key + suffix;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(v.status().message().find("test-only variant"), absl::string_view::npos) << v.status();
    EXPECT_NE(v.status().message().find("--allow-test-variants"), absl::string_view::npos) << v.status();
  }
  o.allow_test_variants = true;
  absl::StatusOr<Variant> v = MeasuredVariant(key + "-testhang", o);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->schedule().test_fault, Schedule::TestFault::kHang);
}

TEST(Verdicts, MapToStoredStatuses) {
  EXPECT_EQ(*ToCacheStatus(Verdict::kOk), cache::MeasurementStatus::kOk);
  EXPECT_EQ(*ToCacheStatus(Verdict::kTimeout), cache::MeasurementStatus::kTimeout);
  EXPECT_EQ(*ToCacheStatus(Verdict::kWrong), cache::MeasurementStatus::kWrong);
  EXPECT_EQ(*ToCacheStatus(Verdict::kFailed), cache::MeasurementStatus::kFailed);
  EXPECT_FALSE(ToCacheStatus(Verdict::kPruned));
  EXPECT_FALSE(ToCacheStatus(Verdict::kCancelled));
  for (Verdict v : {Verdict::kOk, Verdict::kFailed, Verdict::kWrong, Verdict::kTimeout, Verdict::kPruned,
                    Verdict::kCancelled})
    EXPECT_EQ(*ParseVerdict(ToString(v)), v);
}

}  // namespace
}  // namespace parallax::search
