// The C ABI (parallax.h, "Compatibility"; docs/abi.md), on the CPU:
//  - every versioned struct's sizeof per release (kReleases): a struct that changes without a
//    version bump, or a bump without its sizes recorded here, fails;
//  - struct_size is the first member, every _init sets it, and every entry point checks it
//    before anything else: unknown sizes are PLX_ERROR_INVALID_ARGUMENT naming the struct;
//  - the library accepts every released size of its layout;
//  - the generic reading of an older, smaller struct and writing of an output struct
//    (runtime/src/c_api_abi.h), on a stand-in struct with two releases.
// The exported symbols are checked by abi_symbols.cmake (ctest abi_symbols).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "c_api_abi.h"
#include "parallax/parallax.h"

// A stand-in for a struct after an append: release 1 had {struct_size, a} (sizeof 16, of which
// the last 4 bytes are tail padding); release 2 appended b (into that padding) and c.
struct abi_test_args {
  size_t struct_size;
  int32_t a;
  int32_t b;  // release 2
  int64_t c;  // release 2
};
struct abi_test_args_v1 {
  size_t struct_size;
  int32_t a;
};
static void abi_test_args_init(abi_test_args* t) {
  t->struct_size = sizeof(*t);
  t->a = 1;
  t->b = 2;
  t->c = 3;
}
namespace parallax::capi {
PLX_STRUCT_ABI(abi_test_args, {sizeof(abi_test_args_v1), offsetof(abi_test_args, b)});
}  // namespace parallax::capi

namespace {

// ---- the releases' struct sizes -------------------------------------------------------------

// sizeof of each versioned struct in each release (MAJOR.MINOR), on LP64 (Linux x86-64 and
// aarch64), oldest first. Changing a struct means a new version and a new row (docs/abi.md);
// rows of one layout (one major version; while it is 0, one MAJOR.MINOR) only grow: fields
// are appended, never removed, reordered or resized.
struct Release {
  int major, minor;
  size_t context_options, device_info, decode_args, prefill_args, merge_args, plan_info, prefill_backward_args;
};
constexpr Release kReleases[] = {
    // version  options  device_info  decode  prefill  merge  plan_info  prefill_backward
    {0, 2, 32, 288, 872, 1016, 1144, 280, 1264},  // 0.2.0: struct_size added (0.1 had none)
};
// plx_tensor has no struct_size: it is embedded in the structs above, so its layout is frozen.
constexpr size_t kTensorSize = 80;

struct Versioned {
  const char* name;
  size_t Release::*recorded;
  size_t size;  // in this header
};
const Versioned kStructs[] = {
    {"plx_context_options", &Release::context_options, sizeof(plx_context_options)},
    {"plx_device_info", &Release::device_info, sizeof(plx_device_info)},
    {"plx_decode_args", &Release::decode_args, sizeof(plx_decode_args)},
    {"plx_prefill_args", &Release::prefill_args, sizeof(plx_prefill_args)},
    {"plx_merge_args", &Release::merge_args, sizeof(plx_merge_args)},
    {"plx_plan_info", &Release::plan_info, sizeof(plx_plan_info)},
    {"plx_prefill_backward_args", &Release::prefill_backward_args, sizeof(plx_prefill_backward_args)},
};

bool SameLayout(const Release& a, int major, int minor) {
  return a.major == major && (major != 0 || a.minor == minor);
}

std::string CurrentRow() {
  std::string row = absl::StrCat("{", PLX_VERSION_MAJOR, ", ", PLX_VERSION_MINOR);
  for (const Versioned& s : kStructs) absl::StrAppend(&row, ", ", s.size);
  return row + "}";
}

bool Lp64() { return sizeof(void*) == 8 && sizeof(size_t) == 8; }

TEST(Abi, StructSizesAreTheRecordedOnesOfTheHeadersVersion) {
  if (!Lp64()) GTEST_SKIP() << "kReleases records LP64 sizes";
  const Release* row = nullptr;
  for (const Release& r : kReleases)
    if (r.major == PLX_VERSION_MAJOR && r.minor == PLX_VERSION_MINOR) row = &r;
  ASSERT_NE(row, nullptr) << "parallax.h is version " << PLX_VERSION_MAJOR << "." << PLX_VERSION_MINOR
                          << ", which kReleases (tests/runtime/abi_test.cc) has no row for: a version bump "
                          << "records its struct sizes there (docs/abi.md). This header's row: " << CurrentRow();
  for (const Versioned& s : kStructs)
    EXPECT_EQ(s.size, row->*s.recorded)
        << "sizeof(" << s.name << ") is " << s.size << " but release " << row->major << "." << row->minor
        << " recorded " << row->*s.recorded << ": a struct changed without a version bump. Append fields "
        << "only, bump PLX_VERSION_MINOR in parallax.h and add a row to kReleases (docs/abi.md); this "
        << "header's row: " << CurrentRow();
  EXPECT_EQ(sizeof(plx_tensor), kTensorSize) << "plx_tensor's layout is frozen (it is embedded in every "
                                             << "argument struct): changing it breaks the ABI";
}

TEST(Abi, ReleasesOfOneLayoutOnlyGrow) {
  for (size_t i = 1; i < std::size(kReleases); ++i) {
    const Release &a = kReleases[i - 1], &b = kReleases[i];
    ASSERT_TRUE(a.major < b.major || (a.major == b.major && a.minor < b.minor))
        << "kReleases: oldest first, one row per MAJOR.MINOR";
    if (!SameLayout(a, b.major, b.minor)) continue;
    for (const Versioned& s : kStructs)
      EXPECT_LE(a.*s.recorded, b.*s.recorded)
          << s.name << " shrank from " << a.major << "." << a.minor << " to " << b.major << "." << b.minor
          << " within one ABI: fields are only appended";
  }
}

template <typename T>
void ExpectStructSizeFirst(const char* name) {
  EXPECT_EQ(offsetof(T, struct_size), 0u) << name;
  EXPECT_EQ(sizeof(T::struct_size), sizeof(size_t)) << name;
}

TEST(Abi, StructSizeIsTheFirstMember) {
  ExpectStructSizeFirst<plx_context_options>("plx_context_options");
  ExpectStructSizeFirst<plx_device_info>("plx_device_info");
  ExpectStructSizeFirst<plx_decode_args>("plx_decode_args");
  ExpectStructSizeFirst<plx_prefill_args>("plx_prefill_args");
  ExpectStructSizeFirst<plx_merge_args>("plx_merge_args");
  ExpectStructSizeFirst<plx_plan_info>("plx_plan_info");
}

template <typename T>
T Poisoned() {
  T t;
  std::memset(static_cast<void*>(&t), 0x5a, sizeof(t));
  return t;
}

template <typename T>
void ExpectInitSetsStructSize(void (*init)(T*), const char* name) {
  T t = Poisoned<T>();
  init(&t);
  EXPECT_EQ(t.struct_size, sizeof(T)) << name << "_init";
  init(nullptr);  // a no-op
}

TEST(Abi, EveryInitSetsStructSize) {
  ExpectInitSetsStructSize(&plx_context_options_init, "plx_context_options");
  ExpectInitSetsStructSize(&plx_device_info_init, "plx_device_info");
  ExpectInitSetsStructSize(&plx_decode_args_init, "plx_decode_args");
  ExpectInitSetsStructSize(&plx_prefill_args_init, "plx_prefill_args");
  ExpectInitSetsStructSize(&plx_merge_args_init, "plx_merge_args");
  ExpectInitSetsStructSize(&plx_plan_info_init, "plx_plan_info");
  ExpectInitSetsStructSize(&plx_prefill_backward_args_init, "plx_prefill_backward_args");

  plx_context_options o = Poisoned<plx_context_options>();
  plx_context_options_init(&o);
  EXPECT_EQ(o.device, 0);
  EXPECT_EQ(o.db_path, nullptr);
  EXPECT_EQ(o.cache_dir, nullptr);
  plx_plan_info p = Poisoned<plx_plan_info>();
  plx_plan_info_init(&p);
  EXPECT_STREQ(p.variant, "");
  EXPECT_EQ(p.num_splits, 0);
  EXPECT_EQ(p.workspace_bytes, 0u);
  plx_device_info d = Poisoned<plx_device_info>();
  plx_device_info_init(&d);
  EXPECT_STREQ(d.name, "");
  EXPECT_EQ(d.sm_count, 0);
}

// ---- every entry point checks struct_size first ---------------------------------------------

// One struct argument of one entry point: the call with that struct's struct_size set to n,
// every other argument valid or NULL (no context, no plan: nothing needs a device).
struct StructArg {
  const char* fn;
  const char* type;
  size_t size;  // sizeof in this header
  std::function<plx_status(size_t n)> call;
};

template <typename T>
T Sized(void (*init)(T*), size_t n) {
  T t;
  init(&t);
  t.struct_size = n;
  return t;
}

std::vector<StructArg> EveryStructArg() {
  static size_t bytes;
  static plx_plan_info info;
  plx_plan_info_init(&info);
  auto options = [](size_t n) {
    plx_context_options o = Sized(&plx_context_options_init, n);
    o.device = -1;  // a size it accepts gets as far as this: refused without looking for a device
    return o;
  };
  auto dev = [](size_t n) { return Sized(&plx_device_info_init, n); };
  auto plan_info = [](size_t n) { return Sized(&plx_plan_info_init, n); };
  auto dec = [](size_t n) { return Sized(&plx_decode_args_init, n); };
  auto pre = [](size_t n) { return Sized(&plx_prefill_args_init, n); };
  auto merge = [](size_t n) { return Sized(&plx_merge_args_init, n); };
  auto bwd = [](size_t n) { return Sized(&plx_prefill_backward_args_init, n); };
  const size_t kOpt = sizeof(plx_context_options), kDev = sizeof(plx_device_info),
               kInfo = sizeof(plx_plan_info), kDec = sizeof(plx_decode_args), kPre = sizeof(plx_prefill_args),
               kMerge = sizeof(plx_merge_args), kBwd = sizeof(plx_prefill_backward_args);
  return {
      {"plx_context_create", "plx_context_options", kOpt,
       [=](size_t n) {
         const plx_context_options o = options(n);
         plx_context* ctx = reinterpret_cast<plx_context*>(0x1);
         const plx_status s = plx_context_create(&o, &ctx);
         EXPECT_EQ(ctx, nullptr);
         return s;
       }},
      {"plx_context_get_device_info", "plx_device_info", kDev,
       [=](size_t n) {
         plx_device_info d = dev(n);
         return plx_context_get_device_info(nullptr, &d);
       }},
      {"plx_decode_validate", "plx_decode_args", kDec,
       [=](size_t n) {
         const plx_decode_args a = dec(n);
         return plx_decode_validate(&a);
       }},
      {"plx_decode_workspace_size", "plx_decode_args", kDec,
       [=](size_t n) {
         const plx_decode_args a = dec(n);
         return plx_decode_workspace_size(nullptr, &a, &bytes);
       }},
      {"plx_decode_plan_info", "plx_decode_args", kDec,
       [=](size_t n) {
         const plx_decode_args a = dec(n);
         return plx_decode_plan_info(nullptr, &a, &info);
       }},
      {"plx_decode_plan_info", "plx_plan_info", kInfo,
       [=](size_t n) {
         const plx_decode_args a = dec(kDec);
         plx_plan_info i = plan_info(n);
         return plx_decode_plan_info(nullptr, &a, &i);
       }},
      {"plx_decode", "plx_decode_args", kDec,
       [=](size_t n) {
         const plx_decode_args a = dec(n);
         return plx_decode(nullptr, &a, nullptr);
       }},
      {"plx_decode_plan_create", "plx_decode_args", kDec,
       [=](size_t n) {
         const plx_decode_args a = dec(n);
         plx_decode_plan* plan = reinterpret_cast<plx_decode_plan*>(0x1);
         const plx_status s = plx_decode_plan_create(nullptr, &a, &plan);
         EXPECT_EQ(plan, nullptr);
         return s;
       }},
      {"plx_decode_plan_run", "plx_decode_args", kDec,
       [=](size_t n) {
         const plx_decode_args a = dec(n);
         return plx_decode_plan_run(nullptr, nullptr, &a, nullptr);
       }},
      {"plx_decode_plan_get_info", "plx_plan_info", kInfo,
       [=](size_t n) {
         plx_plan_info i = plan_info(n);
         return plx_decode_plan_get_info(nullptr, &i);
       }},
      {"plx_prefill_validate", "plx_prefill_args", kPre,
       [=](size_t n) {
         const plx_prefill_args a = pre(n);
         return plx_prefill_validate(&a);
       }},
      {"plx_prefill_plan_info", "plx_prefill_args", kPre,
       [=](size_t n) {
         const plx_prefill_args a = pre(n);
         return plx_prefill_plan_info(nullptr, &a, &info);
       }},
      {"plx_prefill_plan_info", "plx_plan_info", kInfo,
       [=](size_t n) {
         const plx_prefill_args a = pre(kPre);
         plx_plan_info i = plan_info(n);
         return plx_prefill_plan_info(nullptr, &a, &i);
       }},
      {"plx_prefill", "plx_prefill_args", kPre,
       [=](size_t n) {
         const plx_prefill_args a = pre(n);
         return plx_prefill(nullptr, &a, nullptr);
       }},
      {"plx_prefill_plan_create", "plx_prefill_args", kPre,
       [=](size_t n) {
         const plx_prefill_args a = pre(n);
         plx_prefill_plan* plan = reinterpret_cast<plx_prefill_plan*>(0x1);
         const plx_status s = plx_prefill_plan_create(nullptr, &a, &plan);
         EXPECT_EQ(plan, nullptr);
         return s;
       }},
      {"plx_prefill_plan_run", "plx_prefill_args", kPre,
       [=](size_t n) {
         const plx_prefill_args a = pre(n);
         return plx_prefill_plan_run(nullptr, nullptr, &a, nullptr);
       }},
      {"plx_prefill_plan_get_info", "plx_plan_info", kInfo,
       [=](size_t n) {
         plx_plan_info i = plan_info(n);
         return plx_prefill_plan_get_info(nullptr, &i);
       }},
      {"plx_merge_validate", "plx_merge_args", kMerge,
       [=](size_t n) {
         const plx_merge_args a = merge(n);
         return plx_merge_validate(&a);
       }},
      {"plx_merge_states", "plx_merge_args", kMerge,
       [=](size_t n) {
         const plx_merge_args a = merge(n);
         return plx_merge_states(nullptr, &a, nullptr);
       }},
      {"plx_prefill_backward_workspace_size", "plx_prefill_backward_args", kBwd,
       [=](size_t n) {
         const plx_prefill_backward_args a = bwd(n);
         return plx_prefill_backward_workspace_size(&a, &bytes);
       }},
      {"plx_prefill_backward", "plx_prefill_backward_args", kBwd,
       [=](size_t n) {
         const plx_prefill_backward_args a = bwd(n);
         return plx_prefill_backward(nullptr, &a, nullptr);
       }},
  };
}

// Unknown sizes: none (a struct not from its _init), 8 bytes short or long (another layout),
// and the bytes of an uninitialized struct. The message names the struct, the value and the
// fix; each call checks before anything else, so no other complaint (the NULL context, the
// absent tensors) gets in first.
TEST(Abi, EveryEntryPointRefusesUnknownStructSizesFirst) {
  for (const StructArg& arg : EveryStructArg()) {
    for (size_t n : {size_t{0}, arg.size - 8, arg.size + 8, size_t{0x5a5a5a5a5a5a5a5aull}}) {
      SCOPED_TRACE(absl::StrCat(arg.fn, "(", arg.type, ".struct_size=", n, ")"));
      plx_status got = PLX_OK;
      EXPECT_NO_THROW(got = arg.call(n));
      EXPECT_EQ(got, PLX_ERROR_INVALID_ARGUMENT) << plx_status_string(got);
      const std::string msg = plx_last_error();
      const std::string want = absl::StrCat(arg.fn, ": ", arg.type, ".struct_size=", n, ": start from ", arg.type,
                                            "_init (this library expects ", arg.size);
      EXPECT_EQ(msg.rfind(want, 0), 0u) << "want the prefix '" << want << "', got: " << msg;
      if (n > arg.size)
        EXPECT_NE(msg.find(absl::StrCat("newer than this library, ", plx_version(), ")")), std::string::npos)
            << msg;
      else
        EXPECT_EQ(msg.back(), ')') << msg;
    }
  }
}

// The exact text, once, as parallax.h and docs/abi.md quote it.
TEST(Abi, TheMessage) {
  plx_decode_args a;
  plx_decode_args_init(&a);
  a.struct_size = 0;
  EXPECT_EQ(plx_decode(nullptr, &a, nullptr), PLX_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(plx_last_error()),
            absl::StrCat("plx_decode: plx_decode_args.struct_size=0: start from plx_decode_args_init (this library "
                         "expects ",
                         sizeof(plx_decode_args), ")"));
}

// Every size a release of this layout had is accepted: the calls get past the check (and fail
// on what comes next: the NULL context or plan, device -1, absent tensors).
TEST(Abi, EverySizeOfThisLayoutsReleasesIsAccepted) {
  if (!Lp64()) GTEST_SKIP() << "kReleases records LP64 sizes";
  const std::vector<StructArg> args = EveryStructArg();
  int rows = 0;
  for (const Release& r : kReleases) {
    if (!SameLayout(r, PLX_VERSION_MAJOR, PLX_VERSION_MINOR)) continue;
    ++rows;
    for (const StructArg& arg : args) {
      size_t n = 0;
      for (const Versioned& s : kStructs)
        if (std::string(s.name) == arg.type) n = r.*s.recorded;
      ASSERT_NE(n, 0u) << arg.type;
      SCOPED_TRACE(absl::StrCat(arg.fn, "(", arg.type, ".struct_size=", n, ") of release ", r.major, ".", r.minor));
      EXPECT_NE(arg.call(n), PLX_OK);
      EXPECT_EQ(std::string(plx_last_error()).find("struct_size"), std::string::npos) << plx_last_error();
    }
  }
  EXPECT_GE(rows, 1);
}

// ---- reading an older struct, writing an output struct (c_api_abi.h) ------------------------

using parallax::capi::ReadStruct;
using parallax::capi::WriteStruct;

TEST(AbiStructs, AnOlderStructReadsWithTheDefaultsOfWhatItLacks) {
  abi_test_args_v1 old;
  std::memset(&old, 0x5a, sizeof(old));  // its tail padding too: b must not come from there
  old.struct_size = sizeof(old);
  old.a = 7;
  const abi_test_args* arg = reinterpret_cast<const abi_test_args*>(&old);
  abi_test_args local;
  ASSERT_TRUE(ReadStruct(arg, local).ok());
  ASSERT_EQ(arg, &local);
  EXPECT_EQ(arg->struct_size, sizeof(abi_test_args));
  EXPECT_EQ(arg->a, 7);
  EXPECT_EQ(arg->b, 2);
  EXPECT_EQ(arg->c, 3);
}

TEST(AbiStructs, TheCurrentStructIsReadInPlace) {
  abi_test_args cur;
  abi_test_args_init(&cur);
  cur.b = 9;
  const abi_test_args* arg = &cur;
  abi_test_args local;
  ASSERT_TRUE(ReadStruct(arg, local).ok());
  EXPECT_EQ(arg, &cur);
  const abi_test_args* none = nullptr;
  EXPECT_TRUE(ReadStruct(none, local).ok());  // the call's own NULL check reports it
  EXPECT_EQ(none, nullptr);
}

TEST(AbiStructs, OtherSizesAreRefused) {
  abi_test_args t;
  abi_test_args_init(&t);
  abi_test_args local;
  for (size_t n : {size_t{0}, size_t{8}, size_t{20}, size_t{32}}) {
    t.struct_size = n;
    const abi_test_args* arg = &t;
    absl::Status s = ReadStruct(arg, local);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_EQ(s.message().rfind(absl::StrCat("abi_test_args.struct_size=", n,
                                             ": start from abi_test_args_init (this library expects one of 16, 24"),
                                0),
              0u)
        << s;
    EXPECT_EQ(arg, &t);
  }
}

TEST(AbiStructs, AnOutputStructIsWrittenUpToItsSize) {
  abi_test_args value;
  abi_test_args_init(&value);
  value.a = 9;
  abi_test_args_v1 old;
  std::memset(&old, 0x5a, sizeof(old));
  old.struct_size = sizeof(old);
  WriteStruct(value, reinterpret_cast<abi_test_args*>(&old));
  EXPECT_EQ(old.struct_size, sizeof(old));  // the caller's, kept
  EXPECT_EQ(old.a, 9);
  unsigned char tail[sizeof(old) - offsetof(abi_test_args, b)];
  std::memcpy(tail, reinterpret_cast<const unsigned char*>(&old) + offsetof(abi_test_args, b), sizeof(tail));
  for (unsigned char c : tail) EXPECT_EQ(c, 0x5a);  // release 1 has no b: its padding is untouched

  abi_test_args cur = Poisoned<abi_test_args>();
  cur.struct_size = sizeof(cur);
  WriteStruct(value, &cur);
  EXPECT_EQ(cur.a, 9);
  EXPECT_EQ(cur.b, 2);
  EXPECT_EQ(cur.c, 3);
}

}  // namespace
