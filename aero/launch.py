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
import re
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from aero import guests
from aero.loader import (
    FORMATS,
    MAX_IMAGE_BYTES,
    GuestError,
    detect_format,
    image_limit,
    load_flat,
    load_multiboot,
    load_rom,
    read_image,
)
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
        if ref.fmt not in ("flat", "rom", "multiboot") or not _HEX64.fullmatch(ref.sha256) \
                or not 0 < ref.size <= MAX_IMAGE_BYTES:
            raise LaunchError(f"trace metadata: bad guest entry ({ref.fmt[:16]!r}, "
                              f"{ref.sha256[:16]!r}, {ref.size})")
        return ref


_HEX64 = re.compile(r"[0-9a-f]{64}")


def image_store() -> Path:
    """The content-addressed image store ($AERO_IMAGE_STORE, else the user cache)."""
    env = os.environ.get("AERO_IMAGE_STORE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aero" / "images"


def store_image(data: bytes) -> str:
    """Keep ``data`` in the image store (a private 0700 directory of 0600 files named by
    their SHA-256); returns the digest. Call it only for an image that loaded."""
    digest = hashlib.sha256(data).hexdigest()
    root = image_store()
    target = root / digest
    if not target.exists():
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".img-")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest


def find_image(ref: GuestRef) -> bytes | None:
    """The image with ``ref``'s hash from the store, or None.

    The file name is the validated lowercase hex digest and nothing else; the file is
    opened without following a symlink and must be a regular file of the recorded size
    (checked before it is read), whose content hashes to the digest."""
    if not _HEX64.fullmatch(ref.sha256) or not 0 < ref.size <= MAX_IMAGE_BYTES:
        return None
    try:
        fd = os.open(image_store() / ref.sha256,
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != ref.size:
            return None
        parts = []
        left = ref.size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            left -= len(chunk)
        data = b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if hashlib.sha256(data).hexdigest() == ref.sha256 else None


def resolve_guest(spec: str, fmt: str = "auto", load_addr: int = 0x7C00, *,
                  ram_size: int | None = None) -> tuple[GuestRef, bytes]:
    """A bundled guest name (built on demand) or an image file, as (reference, bytes).

    ram_size: the machine's RAM; an image file larger than it can use is refused before it
    is read (:func:`aero.loader.image_limit`)."""
    path = Path(spec)
    if not path.exists() and (spec in guests.GUESTS or spec in guests.BENCH_GUESTS
                              or spec in guests.SUPPORT_GUESTS):
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
        data = read_image(path, image_limit(ram_size))
    except FileNotFoundError:
        names = ", ".join(guests.GUESTS)
        raise LaunchError(f"{spec}: no such file, and not a bundled guest ({names})") from None
    except OSError as exc:
        raise LaunchError(f"{spec}: {exc.strerror}") from None
    except GuestError as exc:
        raise LaunchError(str(exc)) from None
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
