"""Snapshot files: a running machine saved to disk and brought back bit-exactly.

Layout (little-endian)::

    "AEROSNP\\0" version:u16 meta_len:u32 meta:JSON state_len:u64 state:zstd crc32:u32

``meta`` holds the machine configuration, the guest reference and the tick; ``state`` is the
core's snapshot (CPU, devices, RAM) compressed as one zstd frame; the CRC-32 covers
everything before it.

Invariants:

* ``load_snapshot(save_snapshot(m))`` continues exactly as ``m`` would: same fingerprints at
  every later tick, given the same inputs.
* The reader bounds every length and verifies the checksum before decompressing; every
  problem is a :class:`SnapshotError` with a one-line message.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path

import zstandard
from aero.traces.container import TraceError, bounded_decompress
from aero.traces.schema import MAX_RAM_BYTES, check_guest, check_machine, load_json

from aero.launch import GuestRef, LaunchError
from aero.machine import Machine, MachineConfig

__all__ = ["MAGIC", "MAX_FILE", "MAX_META", "MAX_STATE", "SnapshotError", "VERSION",
           "load_snapshot", "save_snapshot"]

MAGIC = b"AEROSNP\x00"
VERSION = 1
MAX_META = 1 << 20
MAX_STATE = MAX_RAM_BYTES + (1 << 20)  # compressed state: at most the raw state, roughly
MAX_FILE = len(MAGIC) + 6 + MAX_META + 8 + MAX_STATE + 4


class SnapshotError(Exception):
    """A snapshot file that cannot be read or does not fit; one line."""


def save_snapshot(m: Machine, path: Path, guest: GuestRef | None = None) -> None:
    meta = json.dumps({"machine": m.config.to_dict(), "tick": m.ticks,
                       "guest": guest.to_dict() if guest else None},
                      sort_keys=True).encode()
    state = zstandard.ZstdCompressor(level=3).compress(m.snapshot())
    body = MAGIC + struct.pack("<HI", VERSION, len(meta)) + meta + struct.pack("<Q", len(state)) \
        + state
    data = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=".snap-")  # private: 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_snapshot(path: Path) -> tuple[Machine, GuestRef | None]:
    """Read a snapshot, trusting nothing: the file must be a regular file no larger than a
    snapshot of the largest RAM a trace may have; the metadata is checked against the trace
    schema and the state decompressed into a buffer of exactly the size the configuration
    implies, before the machine is allocated."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SnapshotError(f"{name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SnapshotError(f"{name}: not a regular file")
        if st.st_size > MAX_FILE:
            raise SnapshotError(f"{name}: {st.st_size} bytes is larger than any snapshot")
        data = f.read(st.st_size)
    head = len(MAGIC) + 6
    if len(data) < head + 12 or data[:len(MAGIC)] != MAGIC:
        raise SnapshotError(f"{name}: not an aero snapshot")
    version, meta_len = struct.unpack_from("<HI", data, len(MAGIC))
    if version != VERSION:
        raise SnapshotError(f"{name}: snapshot version {version} is not supported "
                            f"(supported: {VERSION})")
    if meta_len > MAX_META or head + meta_len + 12 > len(data):
        raise SnapshotError(f"{name}: damaged snapshot (metadata length)")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise SnapshotError(f"{name}: damaged snapshot (checksum mismatch)")
    try:
        meta = load_json(data[head:head + meta_len], "snapshot metadata")
        config = MachineConfig.from_dict(check_machine(meta.get("machine")))
        guest = GuestRef.from_dict(check_guest(meta["guest"])) if meta.get("guest") else None
    except (ValueError, KeyError, TypeError, LaunchError, TraceError) as exc:
        raise SnapshotError(f"{name}: damaged snapshot metadata ({exc})") from None
    (state_len,) = struct.unpack_from("<Q", data, head + meta_len)
    start = head + meta_len + 8
    if state_len > MAX_STATE or start + state_len != len(data) - 4:
        raise SnapshotError(f"{name}: damaged snapshot (state length)")
    expect = 16 + 512 + 4096 + config.ram_size
    try:
        state = bounded_decompress(data[start:start + state_len], expect, expect)
    except (zstandard.ZstdError, ValueError) as exc:
        raise SnapshotError(f"{name}: snapshot does not restore ({exc})") from None
    del data
    m = Machine(config)
    try:
        m.restore(state)
    except ValueError as exc:
        raise SnapshotError(f"{name}: snapshot does not restore ({exc})") from None
    return m, guest
