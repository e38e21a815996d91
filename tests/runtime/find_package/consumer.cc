// C++17 consumer of the header-only wrapper.
#include <cstdio>
#include <cstring>

#include "parallax/parallax.hpp"

int main() {
  try {
    parallax::ValidateDecode(parallax::MakeDecodeArgs());
    std::fprintf(stderr, "validation of empty arguments unexpectedly passed\n");
    return 1;
  } catch (const parallax::Error& e) {
    if (e.status() != PLX_ERROR_INVALID_ARGUMENT) return 1;
  }
  try {
    parallax::Context ctx(0);
    std::printf("device: %s\n", ctx.device_info().name);
  } catch (const parallax::Error& e) {
    std::printf("%s\n", e.what());
    return e.status() == PLX_ERROR_NO_DEVICE ? 0 : 1;
  }
  return 0;
}
