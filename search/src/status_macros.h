// PLX_RETURN_IF_ERROR for the GPU side of search/ (the benches and their helpers).
#pragma once

#include "absl/status/status.h"

#ifndef PLX_RETURN_IF_ERROR
#define PLX_RETURN_IF_ERROR(expr)                      \
  do {                                                 \
    if (absl::Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)
#endif
