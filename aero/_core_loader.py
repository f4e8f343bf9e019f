"""Import of the compiled C core, with a clear message when it is missing or stale."""

from __future__ import annotations

from aero._stamp import compute_stamp


class CoreError(ImportError):
    """The compiled core is missing or was built from other sources."""


def load_core():
    """Return ``(ffi, lib)`` of the compiled core, checked against the source stamp."""
    try:
        from aero._aero_core import ffi, lib
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise CoreError(
            "aero's C core is not built: run `pip install -e .` in the source tree"
        ) from exc
    built = ffi.string(lib.aero_core_stamp()).decode()
    expected = compute_stamp()
    if expected is not None and built != expected:
        raise CoreError(
            f"aero's C core is stale (built from {built}, sources are {expected}): "
            "rebuild it with `pip install -e .`"
        )
    return ffi, lib


def build_stamps() -> tuple[str | None, str | None]:
    """``(built, sources)``: the stamp compiled into the installed core (None when it is not
    built) and the stamp of the sources beside the package (None when they are absent).
    Unlike :func:`load_core` this never raises, so ``aero --version`` can always answer."""
    try:
        from aero._aero_core import ffi, lib
    except ImportError:
        return None, compute_stamp()
    return ffi.string(lib.aero_core_stamp()).decode(), compute_stamp()
