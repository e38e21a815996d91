#!/usr/bin/env bash
# Installs the Debian 12 packages Parallax builds, tests and serves with (run as root).
# Returns at once when everything is already installed, so the other scripts call it freely.
# The CUDA 13.0 toolkit is not a Debian package: NVRTC must already be under /usr/local/cuda.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libabsl-dev libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libsqlite3-dev sqlite3 libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev
  libxxhash-dev libspdlog-dev llvm-14-tools
  python3 python3-grpcio python3-grpc-tools python3-protobuf python3-numpy
  # the Python package (setup.py, scripts/check-wheel.sh): offline wheel builds and venvs;
  # patchelf bundles the shared abseil libraries into the wheel
  python3-build python3-setuptools python3-wheel python3-venv python3-pip patchelf
  # `parallax fleet` (sbatch, squeue) and its test's single-node Slurm on 127.0.0.1
  # (scripts/fleet/local-slurm.sh: munged, slurmctld, slurmd)
  slurm-wlm munge
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -e /usr/local/cuda/lib64/libnvrtc.so ]; then
  echo "install-deps: /usr/local/cuda/lib64/libnvrtc.so is missing." >&2
  echo "install-deps: install the CUDA 13.0 toolkit (NVRTC and its headers) at /usr/local/cuda;" >&2
  echo "install-deps: Parallax compiles its kernels with NVRTC at run time, even without a GPU." >&2
  exit 1
fi
