// The C API's versioned structs (parallax.h, "Compatibility"; docs/abi.md). Every struct a
// call takes, plx_tensor aside, starts with size_t struct_size, which its _init sets to the
// caller's sizeof. A call accepts each size the struct has had in a release of its layout
// (StructAbi<T>::kReleased) and refuses any other before it reads anything else (CheckStructSize):
//   - an input struct of an older, smaller size reads as this build's layout with the fields
//     it lacks at their _init defaults (ReadStruct);
//   - an output struct is written up to the caller's struct_size only (WriteStruct).
//
// Appending a field to a struct in a release: append it in parallax.h and set it in the _init,
// give the previous release's size to the struct's PLX_STRUCT_ABI line below, and record the
// new sizes in tests/runtime/abi_test.cc's table of releases.
#pragma once

#include <cstddef>
#include <cstring>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "parallax/parallax.h"

namespace parallax::capi {

// A struct_size a call accepts: a release's sizeof, and how many of its leading bytes are
// fields this build reads: the offset of the first field appended after that release (not
// its sizeof: an appended field may sit in the older struct's tail padding).
struct ReleasedSize {
  size_t size;
  size_t bytes;
};

// Per struct: its name, its _init, and kReleased, every struct_size it accepts: this layout's
// released sizes, oldest first, ending with this build's sizeof (the macro appends it).
template <typename T>
struct StructAbi;

#define PLX_STRUCT_ABI(T, ...)                                                     \
  template <>                                                                      \
  struct StructAbi<T> {                                                            \
    static constexpr const char* kName = #T;                                       \
    static constexpr const char* kInitName = #T "_init";                           \
    static constexpr ReleasedSize kReleased[] = {                                  \
        __VA_ARGS__ __VA_OPT__(, ){sizeof(T), sizeof(T)}};                         \
    static void Init(T* t) { T##_init(t); }                                        \
  }

// 0.2.0 is the first release with struct_size: no older sizes yet. An append adds the
// previous release's entry: PLX_STRUCT_ABI(plx_decode_args, {872, offsetof(plx_decode_args, new_field)}).
PLX_STRUCT_ABI(plx_context_options);
PLX_STRUCT_ABI(plx_device_info);
PLX_STRUCT_ABI(plx_decode_args);
PLX_STRUCT_ABI(plx_prefill_args);
PLX_STRUCT_ABI(plx_merge_args);
PLX_STRUCT_ABI(plx_plan_info);
PLX_STRUCT_ABI(plx_prefill_backward_args);

// kReleased ascending, each size holding struct_size and at least its bytes.
template <typename T>
constexpr bool ReleasesAreValid() {
  size_t prev = 0;
  for (const ReleasedSize& r : StructAbi<T>::kReleased) {
    if (r.size <= prev || r.bytes < sizeof(size_t) || r.bytes > r.size) return false;
    prev = r.size;
  }
  return true;
}

// The entry of T's releases with this struct_size, or nullptr.
template <typename T>
const ReleasedSize* FindRelease(size_t struct_size) {
  for (const ReleasedSize& r : StructAbi<T>::kReleased)
    if (r.size == struct_size) return &r;
  return nullptr;
}

// OK when t is NULL (the call's own NULL check names it) or t->struct_size is accepted; else
// InvalidArgument "plx_decode_args.struct_size=0: start from plx_decode_args_init (this
// library expects 872)".
template <typename T>
absl::Status CheckStructSize(const T* t) {
  static_assert(offsetof(T, struct_size) == 0, "struct_size must be the first member");
  static_assert(ReleasesAreValid<T>(), "StructAbi<T>::kReleased: ascending sizes, bytes within each");
  if (t == nullptr || FindRelease<T>(t->struct_size) != nullptr) return absl::OkStatus();
  const size_t got = t->struct_size;
  std::string expects;
  for (const ReleasedSize& r : StructAbi<T>::kReleased)
    absl::StrAppend(&expects, expects.empty() ? "" : ", ", r.size);
  const bool several = std::size(StructAbi<T>::kReleased) > 1;
  return absl::InvalidArgumentError(absl::StrCat(
      StructAbi<T>::kName, ".struct_size=", got, ": start from ", StructAbi<T>::kInitName,
      " (this library expects ", several ? "one of " : "", expects,
      got > sizeof(T) ? absl::StrCat("; a larger size comes from a parallax.h newer than this library, ",
                                     plx_version())
                      : "",
      ")"));
}

// Checks *arg (CheckStructSize), then makes arg point at it in this build's layout: arg itself
// at this build's sizeof (or NULL), else `local`: the _init defaults with the fields of the
// caller's older release copied over them.
template <typename T>
absl::Status ReadStruct(const T*& arg, T& local) {
  if (absl::Status s = CheckStructSize(arg); !s.ok()) return s;
  if (arg == nullptr || arg->struct_size == sizeof(T)) return absl::OkStatus();
  StructAbi<T>::Init(&local);
  std::memcpy(static_cast<void*>(&local), arg, FindRelease<T>(arg->struct_size)->bytes);
  local.struct_size = sizeof(T);
  arg = &local;
  return absl::OkStatus();
}

// Writes `value` over the caller's output struct *out (its struct_size checked by
// CheckStructSize): the fields of the caller's release only; struct_size stays as it was.
template <typename T>
void WriteStruct(const T& value, T* out) {
  const size_t size = out->struct_size;
  T v = value;
  v.struct_size = size;
  std::memcpy(static_cast<void*>(out), &v, FindRelease<T>(size)->bytes);
}

}  // namespace parallax::capi
