#pragma once

#include <cstdint>

namespace parallax::cache {

// Wall-clock time as unix milliseconds: the unit of every *_at column.
int64_t NowUnixMs();

}  // namespace parallax::cache
