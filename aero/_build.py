"""cffi build script for the C core (API mode). Used by setup.py's ``cffi_modules``."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CORE = HERE / "_core"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _write_optable() -> None:
    isa = _load("_aero_isa_build", HERE / "isa.py")
    text = isa.generate_c()
    target = CORE / "optable.inc"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def _cdef() -> str:
    # api.h is plain declarations; drop the comments for cffi's parser.
    text = (CORE / "api.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return text


_write_optable()
_stamp = _load("_aero_stamp_build", HERE / "_stamp.py").compute_stamp()

CFLAGS = ["-std=c11", "-O2", "-fno-tree-slp-vectorize", "-fvisibility=hidden",
          "-fno-semantic-interposition", "-fno-plt",
          "-fno-strict-aliasing", "-fwrapv", "-Wall", "-Wextra",
          "-Wno-unused-parameter"]
if os.environ.get("AERO_WERROR"):
    CFLAGS.append("-Werror")

ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "aero._aero_core",
    '#include <stdint.h>\n#include "api.h"\n',
    sources=[str(p.relative_to(HERE.parent)) for p in sorted(CORE.glob("*.c"))],
    include_dirs=[str(CORE)],
    define_macros=[("AERO_CORE_STAMP", f'"{_stamp}"')],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
