#!/usr/bin/env bash
# Builds the parallax-tuner wheel with Debian's Python and checks it, then checks
# `pip install --no-build-isolation .` the same way. Offline throughout (no build isolation,
# pip --no-index). Exits nonzero with a "check-wheel: FAIL" line on the first problem.
#
#   1. python3 -m build --wheel --no-isolation: file name, tag, contents
#   2. libparallax.so in it: NEEDED only glibc/libstdc++/libgcc_s/libnvrtc or libraries
#      bundled in the wheel (each of which needs nothing else either), RUNPATH, and
#      `nm -D --defined-only` only plx_* (and the PARALLAX_0 version node)
#   3. a fresh venv with only the wheel: from an empty directory, import parallax_tuner;
#      __version__ and library_version() equal the header's version, and libparallax.so and
#      every bundled library are loaded from the venv
#   4. a venv with --system-site-packages (Debian's setuptools and wheel):
#      pip install --no-build-isolation ., then the same import check
#
# Both builds share one CMake build directory, so the second only relinks nothing: set
# PARALLAX_WHEEL_BUILD_DIR to keep it between runs (default: a temporary directory, removed at exit).
# PYTHON overrides the interpreter (default /usr/bin/python3, Debian's; python3 on PATH may be
# another one without python3-build). KEEP=1 keeps the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-/usr/bin/python3}

fail() { echo "check-wheel: FAIL: $*" >&2; exit 1; }
say() { echo "check-wheel: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/plx-check-wheel.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
export PARALLAX_WHEEL_BUILD_DIR=${PARALLAX_WHEEL_BUILD_DIR:-$work/cmake}
unset PARALLAX_LIBRARY PYTHONPATH
t_all=$(now)

# ---- prerequisites and the expected version -------------------------------------------------
[ -x "$py" ] || fail "$py not found (set PYTHON)"
"$py" -c 'import build, setuptools, wheel, venv, ensurepip' 2>/dev/null ||
  fail "$py lacks build/setuptools/wheel/venv: apt install python3-build python3-setuptools" \
    "python3-wheel python3-venv python3-pip (scripts/install-deps.sh does)"
for tool in cmake readelf nm patchelf; do
  command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh installs it)"
done
header=runtime/include/parallax/parallax.h
ver() { sed -n "s/^#define PLX_VERSION_$1 \\([0-9][0-9]*\\).*/\\1/p" "$header"; }
version="$(ver MAJOR).$(ver MINOR).$(ver PATCH)"
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "cannot read PLX_VERSION_* from $header (got '$version')"
plat="linux_$(uname -m)"
say "version $version (from $header); $("$py" --version); CMake build dir $PARALLAX_WHEEL_BUILD_DIR"

# ---- 1. the wheel --------------------------------------------------------------------------
t=$(now)
say "building the wheel (python3 -m build --wheel --no-isolation; log: $work/build-wheel.log)"
if ! "$py" -m build --wheel --no-isolation --outdir "$work/dist" . >"$work/build-wheel.log" 2>&1; then
  tail -n 60 "$work/build-wheel.log" >&2
  fail "building the wheel failed (last lines above)"
fi
grep '^parallax-tuner:' "$work/build-wheel.log" | grep -v '^parallax-tuner: \$' || true
t_wheel=$(since "$t")
shopt -s nullglob
wheels=("$work"/dist/*.whl)
((${#wheels[@]} == 1)) || fail "expected one wheel in $work/dist, got: ${wheels[*]:-none}"
whl=${wheels[0]}
name=$(basename "$whl")
expected="parallax_tuner-$version-py3-none-$plat.whl"
[ "$name" = "$expected" ] || fail "wheel is $name, expected $expected"
size=$(stat -c %s "$whl")
say "wheel $name, $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }')), built in ${t_wheel} s"

mkdir "$work/unpacked"
"$py" - "$whl" "$version" "$work/unpacked" <<'EOF' || fail "wheel contents (above)"
import sys, zipfile
whl, version, out = sys.argv[1:]
z = zipfile.ZipFile(whl)
names = z.namelist()
info = f"parallax_tuner-{version}.dist-info/"
problems = []
wheel_meta = z.read(info + "WHEEL").decode()
for line in ("Root-Is-Purelib: false", "Tag: py3-none-"):
    if line not in wheel_meta:
        problems.append(f"WHEEL lacks '{line}'")
meta = z.read(info + "METADATA").decode()
for line in (f"Version: {version}", "Name: parallax-tuner", "Provides-Extra: torch"):
    if line not in meta:
        problems.append(f"METADATA lacks '{line}'")
stray = [n for n in names if not (n.startswith("parallax_tuner/") or n.startswith(info))]
if stray:
    problems.append(f"files outside parallax_tuner/: {stray}")
for must in ("parallax_tuner/__init__.py", "parallax_tuner/_lib.py", "parallax_tuner/_version.py",
             "parallax_tuner/libparallax.so", "parallax_tuner/torch_ext.py", "parallax_tuner/csrc/fast_ext.cpp"):
    if must not in names:
        problems.append(f"{must} missing")
if "parallax_tuner/_version.py" in names:
    text = z.read("parallax_tuner/_version.py").decode()
    if f'__version__ = "{version}"' not in text or "version_from_header" in text:
        problems.append(f"_version.py is not the literal version:\n{text}")
if problems:
    sys.exit("\n".join(problems))
z.extractall(out)
print(f"check-wheel: {len(names)} files: "
      + ", ".join(sorted(n.split("/", 1)[1] for n in names if n.startswith("parallax_tuner/") and ".so" not in n))
      + f", libparallax.so + {sum(1 for n in names if n.startswith('parallax_tuner/libabsl'))} bundled libabsl")
EOF

# ---- 2. the library ------------------------------------------------------------------------
pkg="$work/unpacked/parallax_tuner"
lib="$pkg/libparallax.so"
allowed='^(libnvrtc\.so\.13|libstdc\+\+\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libc\.so\.6|ld-linux-x86-64\.so\.2|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1)$'
needed_of() { readelf -dW "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
runpath_of() { readelf -dW "$1" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p'; }
bundled=()
for f in "$pkg"/lib*.so*; do [ "$f" = "$lib" ] || bundled+=("$(basename "$f")"); done
is_bundled() { local b; for b in "${bundled[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }
check_needed() {  # file: every NEEDED is allowed or bundled
  local n
  for n in $(needed_of "$1"); do
    [[ $n =~ $allowed ]] || is_bundled "$n" || fail "$(basename "$1") needs $n: neither allowed nor in the wheel"
  done
}
check_needed "$lib"
say "libparallax.so NEEDED: $(needed_of "$lib" | tr '\n' ' ')"
say "libparallax.so RUNPATH: $(runpath_of "$lib")"
for want in '$ORIGIN' '$ORIGIN/../nvidia/cu13/lib' '$ORIGIN/../nvidia/cuda_nvrtc/lib' /usr/local/cuda/lib64; do
  [[ ":$(runpath_of "$lib"):" == *":$want:"* ]] || fail "libparallax.so RUNPATH lacks $want"
done
for b in ${bundled[@]+"${bundled[@]}"}; do
  check_needed "$pkg/$b"
  [ "$(runpath_of "$pkg/$b")" = '$ORIGIN' ] || fail "$b: RUNPATH is '$(runpath_of "$pkg/$b")', expected \$ORIGIN"
  soname=$(readelf -dW "$pkg/$b" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  [ "$soname" = "$b" ] || fail "$b: SONAME $soname differs from its file name"
done
((${#bundled[@]} == 0)) || say "bundled (NEEDED only allowed or bundled, RUNPATH \$ORIGIN): ${bundled[*]}"
nm -D --defined-only "$lib" >"$work/nm.txt"
others=$(awk '$NF !~ /^plx_/ && !($2 == "A" && $NF ~ /^PARALLAX_[0-9]+$/)' "$work/nm.txt")
[ -z "$others" ] || fail "libparallax.so exports more than plx_*:"$'\n'"$others"
say "nm -D --defined-only: $(grep -c ' plx_' "$work/nm.txt") plx_* symbols and the version node" \
  "$(awk '$2 == "A" { print $NF }' "$work/nm.txt" | tr '\n' ' ')- nothing else"

# ---- the import check, for both installs -----------------------------------------------------
import_check() {  # venv
  local venv=$1 clean="$work/clean-$(basename "$1")" out
  mkdir -p "$clean"
  out=$(cd "$clean" && env -u PYTHONPATH -u PARALLAX_LIBRARY "$venv/bin/python" -c '
import os, parallax_tuner as plx
print(plx.__version__, plx.library_version(), plx.library_path())
print(os.path.realpath(plx.__file__))
for p in sorted({l.split()[-1] for l in open("/proc/self/maps") if "/lib" in l and ("absl" in l or "parallax" in l)}):
    print(p)
') || fail "importing parallax_tuner from $venv failed"
  echo "$out" | sed -n '1,2s/^/    /p'
  local v lv path file
  read -r v lv path <<<"$(echo "$out" | sed -n 1p)"
  file=$(echo "$out" | sed -n 2p)
  [ "$v" = "$version" ] || fail "parallax_tuner.__version__ is $v, expected $version"
  [ "$lv" = "$version" ] || fail "library_version() is $lv, expected $version"
  local root
  root=$(realpath "$venv")
  [[ $(realpath "$path") == "$root"/* ]] || fail "library_path() $path is outside $venv"
  [[ $file == "$root"/* ]] || fail "parallax_tuner was imported from $file, not from $venv"
  local loaded
  while read -r loaded; do
    [[ $loaded == "$root"/* ]] || fail "$loaded was loaded from outside $venv"
  done < <(echo "$out" | sed -n '3,$p')
  say "  $(echo "$out" | sed -n '3,$p' | wc -l) libparallax/libabsl libraries loaded, all from $venv"
}

# ---- 3. the wheel in a fresh venv ------------------------------------------------------------
t=$(now)
"$py" -m venv "$work/venv-wheel" || fail "python3 -m venv failed (apt install python3-venv)"
"$work/venv-wheel/bin/pip" install -q --no-index --no-deps --disable-pip-version-check "$whl" ||
  fail "pip install $name failed"
say "wheel installed in a fresh venv ($(since "$t") s); import from an empty directory:"
import_check "$work/venv-wheel"
t_venv=$(since "$t")

# ---- 4. pip install --no-build-isolation . ---------------------------------------------------
t=$(now)
"$py" -m venv --system-site-packages "$work/venv-pip" || fail "python3 -m venv --system-site-packages failed"
say "pip install --no-build-isolation . (reusing $PARALLAX_WHEEL_BUILD_DIR; log: $work/pip-install.log)"
if ! "$work/venv-pip/bin/pip" install -v --no-index --no-deps --no-build-isolation --disable-pip-version-check \
    "$repo" >"$work/pip-install.log" 2>&1; then
  tail -n 60 "$work/pip-install.log" >&2
  fail "pip install --no-build-isolation . failed (last lines above)"
fi
grep -o 'parallax-tuner: built in .*\|parallax-tuner: bundling [0-9]* shared libraries' "$work/pip-install.log" | sed 's/^/    /' || true
say "installed ($(since "$t") s); import from an empty directory:"
import_check "$work/venv-pip"
t_pip=$(since "$t")

say "OK: $name ($size bytes); times: wheel ${t_wheel} s, fresh venv + import ${t_venv} s," \
  "pip install . + import ${t_pip} s, total $(since "$t_all") s"
