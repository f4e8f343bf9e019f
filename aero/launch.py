"""Where a run starts: a machine configuration and a guest image, loaded into a Machine.

A recording names its guest by content (SHA-256), never by path: the recorder copies the
image into a local content-addressed store (as rr keeps the binaries a trace needs), replay
finds it there or inside the trace (``aero pack``), and a mismatch is an error, never a
silent substitution.

Invariants:

* :func:`start_machine` is a pure function of (config, guest reference, image bytes).
* Nothing here takes a path from a trace file: images are looked up by their hash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from aero import guests
from aero.loader import FORMATS, GuestError, detect_format, load_flat, load_multiboot, load_rom
from aero.machine import Machine, MachineConfig

__all__ = ["GuestRef", "LaunchError", "find_image", "image_store", "resolve_guest",
           "start_machine", "store_image"]


class LaunchError(Exception):
    """A guest that cannot be found, built or loaded; one line for the user."""


@dataclass(frozen=True)
class GuestRef:
    """What a trace records about its guest: enough to find and load the same bytes."""

    name: str  # bundled guest name or the image's file name (informational)
    fmt: str  # flat, rom or multiboot
    load_addr: int  # flat binaries: the load address
    sha256: str  # of the image bytes
    size: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> GuestRef:
        if not isinstance(d, dict):
            raise LaunchError("trace metadata: 'guest' is not an object")
        try:
            ref = cls(str(d["name"]), str(d["fmt"]), int(d["load_addr"]), str(d["sha256"]),
                      int(d["size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LaunchError(f"trace metadata: bad guest entry ({exc})") from None
        if ref.fmt not in ("flat", "rom", "multiboot") or len(ref.sha256) != 64:
            raise LaunchError(f"trace metadata: bad guest entry ({ref.fmt}, {ref.sha256[:16]})")
        return ref


def image_store() -> Path:
    """The content-addressed image store ($AERO_IMAGE_STORE, else the user cache)."""
    env = os.environ.get("AERO_IMAGE_STORE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aero" / "images"


def store_image(data: bytes) -> str:
    """Keep ``data`` in the image store; returns its SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    root = image_store()
    target = root / digest
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".img-")
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    return digest


def find_image(ref: GuestRef) -> bytes | None:
    """The image with ``ref``'s hash from the store, or None."""
    try:
        data = (image_store() / ref.sha256).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == ref.sha256 else None


def resolve_guest(spec: str, fmt: str = "auto", load_addr: int = 0x7C00) -> tuple[GuestRef, bytes]:
    """A bundled guest name (built on demand) or an image file, as (reference, bytes)."""
    path = Path(spec)
    if not path.exists() and (spec in guests.GUESTS or spec in guests.BENCH_GUESTS):
        try:
            image = guests.build(spec)
        except guests.ToolchainError as exc:
            raise LaunchError(str(exc)) from exc
        data = image.path.read_bytes()
        return GuestRef(spec, image.fmt, image.load_addr, hashlib.sha256(data).hexdigest(),
                        len(data)), data
    if fmt not in FORMATS:
        raise LaunchError(f"unknown guest format {fmt!r} (expected one of {', '.join(FORMATS)})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        names = ", ".join(guests.GUESTS)
        raise LaunchError(f"{spec}: no such file, and not a bundled guest ({names})") from None
    except OSError as exc:
        raise LaunchError(f"{spec}: {exc.strerror}") from None
    if not data:
        raise LaunchError(f"{spec}: empty file")
    if fmt == "auto":
        fmt = detect_format(path, data)
    return GuestRef(path.name, fmt, load_addr if fmt == "flat" else 0,
                    hashlib.sha256(data).hexdigest(), len(data)), data


def start_machine(config: MachineConfig, ref: GuestRef, data: bytes) -> Machine:
    """A new machine with the guest loaded, at tick 0."""
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise LaunchError(f"guest image {ref.name}: content does not match its hash")
    m = Machine(config)
    try:
        if ref.fmt == "flat":
            load_flat(m, data, ref.load_addr, ref.name)
        elif ref.fmt == "rom":
            load_rom(m, data, ref.name)
        else:
            load_multiboot(m, data, ref.name)
    except GuestError as exc:
        raise LaunchError(str(exc)) from exc
    return m
