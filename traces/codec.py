"""Payload encodings of trace frames: events, checkpoints, keyframes, RAM pages, images.

Both directions live here, next to each other, so that an encoder and its decoder change
together (the container around them is :mod:`aero.traces.container`; the byte layouts are
specified in docs/trace-format.md).

Invariants:

* Decoders trust nothing: every count is checked against the payload length before any
  array is built, and every inconsistency raises :class:`aero.traces.container.TraceError` with a
  one-line message.
* Event frames are columnar (ticks delta-encoded, then kinds, then both arguments), which
  compresses several times better than rows.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from aero.traces.container import Frame, TraceError

from aero.events import EVENT_DTYPE

__all__ = ["CPU_STATE_BYTES", "DEV_STATE_BYTES", "Keyframe", "PAGE", "PAGES_PER_FRAME",
           "SNAPSHOT_MAGIC", "decode_checkpoints", "decode_events", "decode_image", "decode_json",
           "decode_keyframe", "decode_pages", "decode_written", "encode_checkpoints",
           "encode_events", "encode_image", "encode_json", "encode_keyframe", "encode_pages",
           "encode_written", "keyframe_base_len", "snapshot_bytes"]

PAGE = 4096
PAGES_PER_FRAME = 1024  # 4 MB of RAM per pages frame at most
CPU_STATE_BYTES = 512
DEV_STATE_BYTES = 4096
SNAPSHOT_MAGIC = 0x32504E53  # the core's "SNP2"


def _need(cond: bool, frame: Frame | None, what: str) -> None:
    if not cond:
        where = f" at offset {frame.offset}" if frame is not None else ""
        raise TraceError(f"damaged {what} frame{where}")


# ---- events -------------------------------------------------------------------------------

def encode_events(events: np.ndarray, first_tick: int) -> bytes:
    """count:u32 | tick deltas:u64[n] | kinds:u8[n] | a:u32[n] | b:u64[n]."""
    n = len(events)
    ticks = events["tick"].astype(np.uint64)
    deltas = np.diff(ticks, prepend=np.uint64(first_tick))
    kinds = events["kind"]
    if n and int(kinds.max()) > 0xFF:
        raise ValueError("event kind does not fit in a byte")
    return b"".join((struct.pack("<I", n), deltas.astype("<u8").tobytes(),
                     kinds.astype("u1").tobytes(), events["a"].astype("<u4").tobytes(),
                     events["b"].astype("<u8").tobytes()))


def decode_events(payload: bytes, frame: Frame) -> np.ndarray:
    _need(len(payload) >= 4, frame, "event")
    (n,) = struct.unpack_from("<I", payload)
    _need(len(payload) == 4 + 21 * n, frame, "event")
    off = 4
    deltas = np.frombuffer(payload, "<u8", n, off)
    off += 8 * n
    kinds = np.frombuffer(payload, "u1", n, off)
    off += n
    a = np.frombuffer(payload, "<u4", n, off)
    off += 4 * n
    b = np.frombuffer(payload, "<u8", n, off)
    out = np.zeros(n, dtype=EVENT_DTYPE)
    with np.errstate(over="ignore"):
        ticks = np.cumsum(deltas, dtype=np.uint64) + np.uint64(frame.first_tick)
    if n:
        # Deltas are non-negative by construction: a wrapped sum means damage.
        _need(bool(np.all(ticks >= np.uint64(frame.first_tick))) and
              int(ticks[-1]) <= frame.last_tick and bool(np.all(np.diff(ticks) < 1 << 63)),
              frame, "event")
    out["tick"], out["kind"], out["a"], out["b"] = ticks, kinds, a, b
    return out


# ---- checkpoints --------------------------------------------------------------------------

def encode_checkpoints(ticks: list[int], fingerprints: list[int]) -> bytes:
    n = len(ticks)
    return (struct.pack("<I", n) + np.asarray(ticks, "<u8").tobytes()
            + np.asarray(fingerprints, "<u8").tobytes())


def decode_checkpoints(payload: bytes, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    _need(len(payload) >= 4, frame, "checkpoint")
    (n,) = struct.unpack_from("<I", payload)
    _need(len(payload) == 4 + 16 * n, frame, "checkpoint")
    ticks = np.frombuffer(payload, "<u8", n, 4)
    fps = np.frombuffer(payload, "<u8", n, 4 + 8 * n)
    _need(n == 0 or (int(ticks[0]) >= frame.first_tick and int(ticks[-1]) <= frame.last_tick
                     and bool(np.all(np.diff(ticks.astype(np.int64)) > 0))), frame, "checkpoint")
    return ticks.astype(np.uint64), fps.astype(np.uint64)


def encode_written(pages: np.ndarray) -> bytes:
    """A written-pages payload: ``pages:u32`` then one bit per RAM page, page i in bit
    i % 8 of byte i // 8 (set: the page was written in the frame's checkpoint interval)."""
    bits = np.packbits(np.asarray(pages, dtype=bool), bitorder="little")
    return struct.pack("<I", len(pages)) + bits.tobytes()


def decode_written(payload: bytes, frame: Frame, pages: int) -> np.ndarray:
    """The written flags (bool, one per page) of a trace whose RAM has ``pages`` pages."""
    _need(len(payload) >= 4, frame, "written-pages")
    (n,) = struct.unpack_from("<I", payload)
    _need(n == pages and len(payload) == 4 + (n + 7) // 8, frame, "written-pages")
    bits = np.frombuffer(payload, np.uint8, (n + 7) // 8, 4)
    return np.unpackbits(bits, count=n, bitorder="little").astype(bool)


# ---- keyframes and pages ------------------------------------------------------------------

@dataclass(frozen=True)
class Keyframe:
    """The machine at one tick: CPU and device state plus, per RAM page, the content hash
    (XXH64 seeded with the page number, the core's page hash) and the ordinal of the pages
    frame holding that content."""

    tick: int
    ram_size: int
    cpu: bytes
    devices: bytes
    hashes: np.ndarray  # uint64 per page
    page_frames: np.ndarray  # uint32 per page: ordinal among the trace's pages frames
    inputs_before: int  # input events logged before this keyframe (replay skips them)
    # A writable disk's overlay (format version 3), None without one: the overlaid 4 KB
    # blocks (ascending), their content hashes (XXH64 seeded with DISK_HASH_SEED | block)
    # and the ordinals of the pages frames holding their contents.
    disk_blocks: np.ndarray | None = None  # uint32
    disk_hashes: np.ndarray | None = None  # uint64
    disk_frames: np.ndarray | None = None  # uint32


def encode_keyframe(k: Keyframe) -> bytes:
    n = k.ram_size // PAGE
    parts = [struct.pack("<QIIQ", k.tick, k.ram_size, n, k.inputs_before), k.cpu, k.devices,
             np.asarray(k.hashes, "<u8").tobytes(), np.asarray(k.page_frames, "<u4").tobytes()]
    if k.disk_blocks is not None:
        assert k.disk_hashes is not None and k.disk_frames is not None
        parts += [struct.pack("<I", len(k.disk_blocks)),
                  np.asarray(k.disk_blocks, "<u4").tobytes(),
                  np.asarray(k.disk_hashes, "<u8").tobytes(),
                  np.asarray(k.disk_frames, "<u4").tobytes()]
    return b"".join(parts)


def keyframe_base_len(ram_size: int) -> int:
    """Bytes of a keyframe payload before its disk overlay section."""
    return struct.calcsize("<QIIQ") + CPU_STATE_BYTES + DEV_STATE_BYTES + 12 * (ram_size // PAGE)


def decode_keyframe(payload: bytes, frame: Frame, disk_blocks: int | None = None) -> Keyframe:
    """disk_blocks: for a guest with a writable disk, the number of 4 KB blocks covering it
    (the payload then ends with the overlay section); None otherwise."""
    head = struct.calcsize("<QIIQ")
    _need(len(payload) >= head, frame, "keyframe")
    tick, ram_size, n, inputs_before = struct.unpack_from("<QIIQ", payload)
    _need(ram_size % PAGE == 0 and n == ram_size // PAGE and tick == frame.first_tick, frame,
          "keyframe")
    base = keyframe_base_len(ram_size)
    if disk_blocks is None:
        _need(len(payload) == base, frame, "keyframe")
    else:
        _need(len(payload) >= base + 4, frame, "keyframe")
    off = head
    cpu = payload[off:off + CPU_STATE_BYTES]
    off += CPU_STATE_BYTES
    dev = payload[off:off + DEV_STATE_BYTES]
    off += DEV_STATE_BYTES
    hashes = np.frombuffer(payload, "<u8", n, off).astype(np.uint64)
    frames = np.frombuffer(payload, "<u4", n, off + 8 * n).astype(np.uint32)
    if disk_blocks is None:
        return Keyframe(tick, ram_size, cpu, dev, hashes, frames, inputs_before)
    (c,) = struct.unpack_from("<I", payload, base)
    _need(c <= disk_blocks and len(payload) == base + 4 + 16 * c, frame, "keyframe")
    off = base + 4
    blocks = np.frombuffer(payload, "<u4", c, off).astype(np.uint32)
    dhashes = np.frombuffer(payload, "<u8", c, off + 4 * c).astype(np.uint64)
    dframes = np.frombuffer(payload, "<u4", c, off + 12 * c).astype(np.uint32)
    _need(c == 0 or (int(blocks[-1]) < disk_blocks
                     and bool(np.all(np.diff(blocks.astype(np.int64)) > 0))), frame, "keyframe")
    return Keyframe(tick, ram_size, cpu, dev, hashes, frames, inputs_before, blocks, dhashes,
                    dframes)


def encode_pages(hashes: list[int], pages: Sequence[bytes | np.ndarray]) -> bytes:
    """A pages frame's payload; ``pages`` are 4 KB each, bytes or any bytes-like view."""
    return b"".join(encode_pages_parts(hashes, pages))


def encode_pages_parts(hashes: list[int], pages: Sequence[bytes | np.ndarray]) -> list:
    """The same payload as parts for :meth:`TraceWriter.append`, the pages not copied: each
    part of ``pages`` holds one or more whole pages, in the order of ``hashes``."""
    return [struct.pack("<I", len(hashes)) + np.asarray(hashes, "<u8").tobytes(), *pages]


def decode_pages(payload: bytes, frame: Frame) -> dict[int, bytes]:
    _need(len(payload) >= 4, frame, "pages")
    (n,) = struct.unpack_from("<I", payload)
    _need(len(payload) == 4 + n * (8 + PAGE), frame, "pages")
    hashes = np.frombuffer(payload, "<u8", n, 4)
    base = 4 + 8 * n
    return {int(h): payload[base + i * PAGE: base + (i + 1) * PAGE] for i, h in enumerate(hashes)}


def snapshot_bytes(k: Keyframe, ram: bytes) -> bytes:
    """The core's snapshot layout (aero_snapshot_load) for a keyframe and its RAM."""
    head = struct.pack("<IIII", SNAPSHOT_MAGIC, k.ram_size, k.tick & 0xFFFFFFFF, k.tick >> 32)
    return head + k.cpu + k.devices + ram


# ---- images (aero pack) -------------------------------------------------------------------

def encode_image(name: str, data: bytes) -> bytes:
    head = json.dumps({"name": name, "sha256": hashlib.sha256(data).hexdigest(),
                       "size": len(data)}, sort_keys=True).encode()
    return struct.pack("<I", len(head)) + head + data


def decode_image(payload: bytes, frame: Frame) -> tuple[dict, bytes]:
    _need(len(payload) >= 4, frame, "image")
    (hl,) = struct.unpack_from("<I", payload)
    _need(4 + hl <= len(payload) and hl <= 4096, frame, "image")
    from aero.traces.schema import check_image_head, load_json

    try:
        head = check_image_head(load_json(payload[4:4 + hl], "embedded image head"))
    except TraceError as exc:
        raise TraceError(f"damaged image frame at offset {frame.offset}: {exc}") from None
    data = bytes(payload[4 + hl:])
    _need(head["size"] == len(data) and head["sha256"] == hashlib.sha256(data).hexdigest(),
          frame, "image")
    return head, data


# ---- summary ------------------------------------------------------------------------------

def encode_json(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decode_json(payload: bytes, frame: Frame, what: str) -> dict:
    """A JSON object (bounded: see :func:`aero.traces.schema.load_json`); the caller checks
    its fields against a schema."""
    from aero.traces.schema import load_json

    try:
        return load_json(payload, f"{what} frame")
    except TraceError as exc:
        raise TraceError(f"damaged {what} frame at offset {frame.offset}: {exc}") from None
