"""Build script of the parallax-tuner Python package (metadata: pyproject.toml).

The package is the ctypes binding (python/parallax_tuner) plus libparallax.so, which this
script builds with CMake and copies into the package:

  configure   cmake -S <repo> -B <build dir> -DCMAKE_BUILD_TYPE=Release -DPARALLAX_STATIC_DEPS=ON
              (SQLite and xxHash linked statically, spdlog/fmt header-only, no service, tests
              or examples)
  build       cmake --build <build dir> --target parallax_shared
  install     cmake --install <build dir> --component parallax --prefix <staging>
  package     parallax_tuner/libparallax.so, plus every shared library it needs that is not
              part of the system (glibc, libstdc++, libgcc_s) or CUDA (libnvrtc, libcuda):
              on Debian 12 these are the libabsl_*.so (its static archives are not PIC, see
              cmake/StaticDeps.cmake). They are copied next to libparallax.so under names of
              their own (libabsl_x-<hash>.so.N, as auditwheel does) with RUNPATH $ORIGIN, so
              the wheel needs nothing else from the system; this needs patchelf.
  version     _version.py in the package becomes `__version__ = "X.Y.Z"` from the
              PLX_VERSION_* macros of runtime/include/parallax/parallax.h (the one source).

Environment:
  PARALLAX_WHEEL_BUILD_DIR    CMake build directory (default <setuptools build_temp>/cmake);
                              point two builds at one directory to build once. Never the
                              development build (build/): setup.py refuses a directory
                              configured without PARALLAX_STATIC_DEPS=ON
  PARALLAX_CMAKE_ARGS         extra CMake configure arguments (shell syntax)
  CMAKE_BUILD_PARALLEL_LEVEL  build jobs (default: every CPU)
  CMAKE_GENERATOR             CMake generator (default Ninja when ninja is on PATH)

Build a wheel: python3 -m build --wheel --no-isolation (Debian: python3-build, python3-wheel).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time

from setuptools import Command, find_packages, setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.dist import Distribution

try:
    from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # without the wheel package there is no bdist_wheel to adjust
    _bdist_wheel = None

ROOT = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(ROOT, "runtime", "include", "parallax", "parallax.h")
PACKAGE = "parallax_tuner"
LIBRARY = "libparallax.so"

# Shared libraries the package may need from the machine: glibc, the GCC runtime, and CUDA
# (NVRTC from the toolkit or pip's NVIDIA wheels, the driver). Anything else is bundled.
SYSTEM_LIBRARIES = re.compile(
    r"^(ld-linux-x86-64\.so\.2|linux-vdso\.so\.1|lib(c|m|dl|rt|pthread|util|resolv)\.so\.\d+"
    r"|libgcc_s\.so\.1|libstdc\+\+\.so\.6|libnvrtc\.so\.\d+|libcuda\.so\.\d+)$")


def read_version(header: str = HEADER) -> str:
    """"MAJOR.MINOR.PATCH" from parallax.h, by the package's own reader (one parser, one source)."""
    spec = importlib.util.spec_from_file_location(
        "_plx_version", os.path.join(ROOT, "python", PACKAGE, "_version.py"))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        return module.version_from_header(header)
    except (OSError, RuntimeError) as e:
        sys.exit(f"setup.py: {e}")


VERSION = read_version()


def log(msg: str) -> None:
    print(f"parallax-tuner: {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    log("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True, **kw)


def output(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def needed(path: str) -> list[str]:
    """DT_NEEDED entries of an ELF file."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", output(["readelf", "-dW", path]))


class build_parallax(Command):
    """Configure and build libparallax.so with CMake, and put it (and what it needs) in the package."""

    description = "build libparallax.so with CMake (PARALLAX_STATIC_DEPS=ON) into the package"
    user_options = [
        ("build-temp=", "t", "directory for the CMake build (default: <build_temp>/cmake)"),
        ("build-lib=", "b", "directory of the built package"),
    ]

    def initialize_options(self):
        self.build_temp = None
        self.build_lib = None

    def finalize_options(self):
        self.set_undefined_options("build", ("build_temp", "build_temp"), ("build_lib", "build_lib"))

    def run(self):
        t0 = time.monotonic()
        build_dir = os.environ.get("PARALLAX_WHEEL_BUILD_DIR") or os.path.join(self.build_temp, "cmake")
        build_dir = os.path.abspath(build_dir)
        staging = os.path.join(build_dir, "python-staging")
        cmake = shutil.which("cmake")
        if cmake is None:
            sys.exit("setup.py: cmake not found (Debian: apt install cmake; scripts/install-deps.sh)")

        configure = [cmake, "-S", ROOT, "-B", build_dir,
                     "-DCMAKE_BUILD_TYPE=Release",
                     "-DCMAKE_INSTALL_LIBDIR=lib",
                     "-DPARALLAX_STATIC_DEPS=ON",
                     "-DPARALLAX_BUILD_SERVICE=OFF",
                     "-DPARALLAX_BUILD_TESTS=OFF",
                     "-DPARALLAX_BUILD_EXAMPLES=OFF",
                     "-DPARALLAX_WERROR=OFF"]
        cache = os.path.join(build_dir, "CMakeCache.txt")
        if os.path.exists(cache):
            with open(cache, encoding="utf-8", errors="replace") as f:
                if "PARALLAX_STATIC_DEPS:BOOL=ON" not in f.read():
                    # Most likely a development build (build/): configuring it here would turn
                    # the service and tests off in it.
                    sys.exit(f"setup.py: {build_dir} is a CMake build without PARALLAX_STATIC_DEPS=ON; "
                             "give PARALLAX_WHEEL_BUILD_DIR a directory of its own (or an empty one)")
        elif not os.environ.get("CMAKE_GENERATOR") and shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("PARALLAX_CMAKE_ARGS", ""))
        log(f"configuring libparallax.so in {build_dir}")
        run(configure)
        log(f"configured in {time.monotonic() - t0:.1f} s")

        t1 = time.monotonic()
        build = [cmake, "--build", build_dir, "--target", "parallax_shared"]
        if not os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL"):
            build += ["--parallel", str(os.cpu_count() or 1)]
        log("building libparallax.so (target parallax_shared; minutes on a small machine)")
        run(build)
        log(f"built in {time.monotonic() - t1:.1f} s")

        shutil.rmtree(staging, ignore_errors=True)
        run([cmake, "--install", build_dir, "--component", "parallax", "--prefix", staging])
        built = os.path.realpath(os.path.join(staging, "lib", LIBRARY))
        if not os.path.isfile(built):
            sys.exit(f"setup.py: {built} missing after cmake --install")

        pkg_dir = os.path.join(self.build_lib, PACKAGE)
        os.makedirs(pkg_dir, exist_ok=True)
        for old in os.listdir(pkg_dir):  # a previous build's libraries
            if old.startswith("lib") and ".so" in old:
                os.remove(os.path.join(pkg_dir, old))
        target = os.path.join(pkg_dir, LIBRARY)
        shutil.copyfile(built, target)
        os.chmod(target, 0o755)
        log(f"{os.path.relpath(built, build_dir)} -> {target}")
        self.bundle_dependencies(target)
        log(f"libparallax.so ready in {time.monotonic() - t0:.1f} s")

    def bundle_dependencies(self, library: str) -> None:
        """Copy the non-system shared libraries `library` needs next to it, renamed."""
        resolved = {}
        for line in output(["ldd", library]).splitlines():
            m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", line)
            if m:
                resolved[m.group(1)] = m.group(2)
        pkg_dir = os.path.dirname(library)
        todo = [n for n in needed(library) if not SYSTEM_LIBRARIES.match(n)]
        names = {}  # old soname -> new file name (and soname)
        while todo:
            name = todo.pop()
            if name in names:
                continue
            path = resolved.get(name)
            if not path or path == "not" or not os.path.isfile(path):
                sys.exit(f"setup.py: {LIBRARY} needs {name}, which was not found (ldd)")
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:8]
            stem, sep, suffix = name.partition(".so")
            names[name] = f"{stem}-{digest}{sep}{suffix}"
            shutil.copyfile(path, os.path.join(pkg_dir, names[name]))
            todo += [n for n in needed(path) if not SYSTEM_LIBRARIES.match(n)]
        if not names:
            log("no shared libraries to bundle")
            return
        patchelf = shutil.which("patchelf")
        if patchelf is None:
            sys.exit(f"setup.py: {LIBRARY} needs {', '.join(sorted(names))}, to be bundled with "
                     "patchelf, which is not installed (Debian: apt install patchelf)")
        log(f"bundling {len(names)} shared libraries: {', '.join(sorted(names))}")
        for old, new in names.items():
            path = os.path.join(pkg_dir, new)
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR | stat.S_IRUSR)
            # One kind of change per call: patchelf 0.14 loses some when one call mixes them.
            subprocess.run([patchelf, "--set-soname", new, path], check=True)
            subprocess.run([patchelf, "--set-rpath", "$ORIGIN", path], check=True)
            replace = [a for o in needed(path) if o in names for a in ("--replace-needed", o, names[o])]
            if replace:
                subprocess.run([patchelf, *replace, path], check=True)
        replace = [a for o in needed(library) if o in names for a in ("--replace-needed", o, names[o])]
        subprocess.run([patchelf, *replace, library], check=True)
        for path in [library] + [os.path.join(pkg_dir, n) for n in names.values()]:
            left = [n for n in needed(path) if not SYSTEM_LIBRARIES.match(n) and n not in names.values()]
            if left:
                sys.exit(f"setup.py: {path} still needs {left} after bundling")


class build_py(_build_py):
    """The Python files, then libparallax.so (build_parallax), then the literal version."""

    def run(self):
        if getattr(self, "editable_mode", False):
            # pip install -e: the source tree's _version.py reads the header, and _lib.py finds
            # the library in <repo>/build*/ (or $PARALLAX_LIBRARY); no CMake build here.
            super().run()
            return
        stale = os.path.join(self.build_lib, PACKAGE)
        if os.path.isdir(stale):  # files since removed from the source must not reach the wheel
            shutil.rmtree(stale)
        super().run()
        self.run_command("build_parallax")
        version_py = os.path.join(self.build_lib, PACKAGE, "_version.py")
        with open(version_py, "w", encoding="utf-8") as f:
            f.write('"""The package version (from PLX_VERSION_* in parallax/parallax.h when it was built)."""\n\n'
                    f'__version__ = "{VERSION}"\n')
        log(f"{version_py}: __version__ = {VERSION!r}")


class BinaryDistribution(Distribution):
    """Carries a compiled library: build into build_platlib, install into platlib (the wheel's root)."""

    def has_ext_modules(self):
        return True


cmdclass = {"build_parallax": build_parallax, "build_py": build_py}

if _bdist_wheel is not None:
    class bdist_wheel(_bdist_wheel):
        """A platform wheel (it carries libparallax.so) for any Python 3: py3-none-<platform>."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = bdist_wheel

setup(
    version=VERSION,
    package_dir={"": "python"},
    packages=find_packages("python", include=[PACKAGE, PACKAGE + ".*"]),  # not parallax_client, tests
    include_package_data=False,
    package_data={PACKAGE: ["csrc/*.cpp"]},  # the C++ fast path, compiled on the user's machine (torch_ext)
    license_files=["LICENSE"],
    distclass=BinaryDistribution,
    cmdclass=cmdclass,
    # Keep setuptools' own build tree out of build/, the usual CMake build directory.
    options={"build": {"build_base": "build-python"}},
)
