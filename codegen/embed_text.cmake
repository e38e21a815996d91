# Writes IN's bytes as a C++ raw string constant parallax::kKernelAbiText into OUT.
file(READ ${IN} text)
file(WRITE ${OUT} "// Generated from kernel_abi.h; do not edit.\n#include <absl/strings/string_view.h>\nnamespace parallax {\nextern const absl::string_view kKernelAbiText;\nconst absl::string_view kKernelAbiText = R\"plxabi(${text})plxabi\";\n}\n")
