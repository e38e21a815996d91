"""The C++ eager fast path (csrc/fast_ext.cpp), built against the torch that is installed.

An eager call that repeats an earlier call's signature costs about 4 us less host time through
this extension than through the ctypes fast path (docs/host-cost.md). It has to be compiled
against the installed torch, so the wheel cannot carry it: build it once per torch install with

    python3 -m parallax_tuner.torch_ext build      # ~1 minute; needs g++, ninja, CUDA headers

and parallax_tuner picks it up on its first call with torch tensors. Nothing is ever compiled
implicitly, unless PARALLAX_TORCH_EXT=build asks for it; PARALLAX_TORCH_EXT=0 turns the
extension off. `python3 -m parallax_tuner.torch_ext status` says what is found and where.
The build goes to $PARALLAX_TORCH_EXT_DIR, else $XDG_CACHE_HOME/parallax/torch-ext (default
~/.cache/parallax/torch-ext), in a folder named for the torch version, the Python version and
the source's hash, so a torch upgrade never loads a stale build.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "fast_ext.cpp")
_NAME = "parallax_tuner_fast_ext"


def _root() -> str:
    d = os.environ.get("PARALLAX_TORCH_EXT_DIR")
    if d:
        return d
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "parallax", "torch-ext")


def build_dir(torch) -> str:
    """Where the build for this torch, Python and source lives."""
    with open(_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    tag = "torch{}-cu{}-py{}{}-{}".format(torch.__version__.replace("+", "_"), torch.version.cuda or "none",
                                          sys.version_info[0], sys.version_info[1], digest)
    return os.path.join(_root(), tag)


def _artifact(d: str) -> str:
    return os.path.join(d, _NAME + ".so")


def _import(path: str):
    spec = importlib.util.spec_from_file_location(_NAME, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(torch=None, verbose: bool = False):
    """Compiles the extension for the installed torch and returns the loaded module."""
    if torch is None:
        import torch
    from torch.utils import cpp_extension
    d = build_dir(torch)
    os.makedirs(d, exist_ok=True)
    return cpp_extension.load(name=_NAME, sources=[_SOURCE], build_directory=d, with_cuda=True,
                              extra_cflags=["-O2"], verbose=verbose)


def load(torch):
    """The extension module for this torch, or None (not built, turned off, or failing to load:
    the ctypes fast path then serves, so a broken build never breaks a call)."""
    mode = os.environ.get("PARALLAX_TORCH_EXT", "")
    if mode == "0" or not torch.cuda.is_available():
        return None
    path = _artifact(build_dir(torch))
    try:
        if os.path.exists(path):
            return _import(path)
        if mode == "build":
            return build(torch)
    except Exception as e:  # noqa: BLE001 (reported, then the slower path serves)
        sys.stderr.write(f"parallax_tuner: the C++ fast path did not load ({e}); using the ctypes one\n")
    return None


def _main(argv) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m parallax_tuner.torch_ext",
                                 description="Build or inspect parallax_tuner's C++ eager fast path for the installed torch.")
    ap.add_argument("command", choices=["build", "status"], help="build: compile it now; status: where it is")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the compiler's output")
    a = ap.parse_args(argv)
    import torch
    d = build_dir(torch)
    if a.command == "build":
        build(torch, verbose=a.verbose)
        print(f"built: {_artifact(d)}")
        return 0
    present = os.path.exists(_artifact(d))
    print(f"torch {torch.__version__}, cuda {torch.version.cuda}: {'built' if present else 'not built'} ({_artifact(d)})")
    if os.environ.get("PARALLAX_TORCH_EXT") == "0":
        print("PARALLAX_TORCH_EXT=0: turned off")
    return 0 if present else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
