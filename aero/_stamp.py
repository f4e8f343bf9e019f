"""The build stamp of the C core: a hash over everything the compiled core is made from.

The build compiles it into the core; ``aero`` recomputes it at import from the sources
next to the package, so a core that was not rebuilt after a source change is caught.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CORE_DIR = PACKAGE_DIR / "_core"


def core_sources() -> list[Path]:
    """The files the core is built from, in a fixed order."""
    files = sorted(CORE_DIR.glob("*.c")) + sorted(CORE_DIR.glob("*.h"))
    return files + [PACKAGE_DIR / "isa.py"]


def compute_stamp() -> str | None:
    """Hash of the core sources, or None when they are not installed beside the package."""
    h = hashlib.sha256()
    files = core_sources()
    if not all(f.exists() for f in files) or len(files) < 3:
        return None
    for f in files:
        h.update(f.name.encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
