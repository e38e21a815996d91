"""The package version, from its one source: PLX_VERSION_MAJOR/MINOR/PATCH in parallax/parallax.h.

In the source tree this module reads the C header (runtime/include/parallax/parallax.h). A built
package (wheel, ``pip install .``) does not ship the header: setup.py replaces this file there
with a literal ``__version__ = "X.Y.Z"`` read from the same macros.
"""

from __future__ import annotations

import os
import re

__all__ = ["__version__", "version_from_header"]

_HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       os.pardir, os.pardir, "runtime", "include", "parallax", "parallax.h")


def version_from_header(path: str = _HEADER) -> str:
    """"MAJOR.MINOR.PATCH" from the PLX_VERSION_* macros of the header at ``path``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    parts = []
    for name in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(rf"^\s*#\s*define\s+PLX_VERSION_{name}\s+(\d+)\b", text, re.MULTILINE)
        if m is None:
            raise RuntimeError(f"PLX_VERSION_{name} not found in {path}")
        parts.append(str(int(m.group(1))))
    return ".".join(parts)


__version__ = version_from_header()
