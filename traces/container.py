"""Trace files: the container, its writer and its strict reader (one module holds both).

Layout (all integers little-endian; the full specification is docs/trace-format.md)::

    file    := header frame* [index-frame trailer]
    header  := MAGIC(8) version:u16 flags:u16 meta_len:u32 meta_json crc32:u32
    frame   := FRAME_MAGIC(4) kind:u8 codec:u8 reserved:u16 first_tick:u64 last_tick:u64
               raw_len:u32 stored_len:u32 crc32:u32 payload(stored_len)
    trailer := index_offset:u64 END_MAGIC(8)

Invariants:

* Every frame is self-delimiting and checksummed (CRC-32 over its header fields and stored
  payload); a frame is appended with one write and is either wholly present or detectably
  truncated, so a writer killed at any point leaves a file readable up to its last complete
  frame (the reader reports ``complete=False`` and recovers by scanning).
* The reader trusts nothing: every length is bounded before anything is allocated,
  decompression is capped at the declared size, unknown kinds and versions are errors.
  Every problem raises :class:`TraceError` with a one-line message; no other exception
  escapes :func:`open_trace` or the frame iterator.
* No pickle, no eval, and no path is ever taken from the file.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

__all__ = ["CODEC_RAW", "CODEC_ZSTD", "DISK_OVERLAY_VERSION", "END_MAGIC", "FORMAT_VERSION",
           "FRAME_MAGIC", "Frame",
           "FrameKind", "MAGIC", "MAX_FRAMES", "MAX_FRAME_BYTES", "MAX_META_BYTES",
           "SUPPORTED_VERSIONS", "TraceError", "TraceFile", "TraceWriter", "bounded_decompress",
           "create_private", "open_trace"]

MAGIC = b"AEROTRC\x00"
FRAME_MAGIC = b"AEFR"
END_MAGIC = b"AEROEND\x00"
FORMAT_VERSION = 2  # 2 added the written-pages frames (kind 10)
# 3: keyframes end with a disk overlay section; written only for a guest whose disk is
# writable (every other trace stays version 2, readable by the aero that wrote version 2).
DISK_OVERLAY_VERSION = 3
SUPPORTED_VERSIONS = (1, 2, 3)

_HEADER = struct.Struct("<8sHHI")  # magic, version, flags, meta_len
_FRAME = struct.Struct("<4sBBHQQIII")  # magic kind codec reserved first last raw stored crc
_TRAILER = struct.Struct("<Q8s")

MAX_META_BYTES = 16 << 20  # metadata JSON (embedded images are base64 inside: 16 MB cap)
MAX_FRAME_BYTES = 64 << 20  # one frame's stored or decompressed payload
Buffer = Any  # a bytes-like object (collections.abc.Buffer from Python 3.12)
MAX_FRAMES = 1 << 20  # frames in one trace (the index and the frame list stay in memory)
_DECOMPRESS_CHUNK = 1 << 20

CODEC_RAW, CODEC_ZSTD = 0, 1


class FrameKind:
    """Frame kinds. A reader rejects kinds it does not know."""

    INPUT = 1  # input events (the nondeterministic inputs)
    DEVICE = 2  # device-produced events (interrupts, timer fires)
    OUTPUT = 3  # guest output (serial, debug console, POST codes)
    CHECKPOINT = 4  # (tick, fingerprint) pairs
    KEYFRAME = 5  # a machine snapshot for seeking
    SUMMARY = 6  # the final summary of a run
    INDEX = 7  # offsets of every frame, written at a clean close
    PAGES = 8  # RAM pages stored by content hash, referenced by keyframes
    IMAGE = 9  # an embedded guest image (``aero pack``)
    WRITTEN = 10  # the RAM pages written in one checkpoint interval (version 2 on)

    NAMES = {1: "input", 2: "device", 3: "output", 4: "checkpoint", 5: "keyframe",
             6: "summary", 7: "index", 8: "pages", 9: "image", 10: "written"}


class TraceError(Exception):
    """A trace file cannot be read: the message is one line, fit for the user."""


def bounded_decompress(stored: bytes, expect: int, limit: int) -> bytearray:
    """Decompress one zstd frame into at most ``limit`` bytes, streaming, so that a frame
    which declares (or expands to) more costs no more than ``limit`` + one chunk.

    python-zstandard's one-shot ``decompress`` trusts the content size a frame declares and
    ignores ``max_output_size`` then; the stream reader does not allocate ahead of what is
    read. Raises ValueError when the output exceeds ``limit`` or differs from ``expect``
    (``expect`` < 0: any size up to the limit), zstandard.ZstdError when it is corrupt."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored),
                                                        read_across_frames=False)
    # Room for the declared size (itself bounded by the caller) plus one byte to notice
    # more; without a declared size the buffer grows chunk by chunk up to the limit.
    out = bytearray(min(expect, limit) + 1 if expect >= 0 else 0)
    n = 0
    with reader:
        while True:
            if n == len(out):
                if n > limit:
                    raise ValueError(f"decompresses to more than {limit} bytes")
                out.extend(bytes(min(_DECOMPRESS_CHUNK, limit + 1 - n)))
            view = memoryview(out)[n:]
            got = reader.readinto(view)
            view.release()
            if not got:
                break
            n += got
            if n > limit:
                raise ValueError(f"decompresses to more than {limit} bytes")
    if expect >= 0 and n != expect:
        raise ValueError(f"decompresses to {n} bytes, not the declared {expect}")
    del out[n:]
    return out


def create_private(path: str | os.PathLike[str], *, exclusive: bool) -> int:
    """Open ``path`` for writing as a new private file (0600), never through a symlink.

    exclusive: fail with FileExistsError when the name is taken (O_EXCL), else replace the
    contents of an existing regular file (O_TRUNC). Returns the descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_EXCL if exclusive else 0
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        if not exclusive:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame's header; :meth:`TraceFile.read` gives its verified payload."""

    kind: int
    first_tick: int
    last_tick: int
    offset: int
    codec: int
    raw_len: int
    stored_len: int

    @property
    def kind_name(self) -> str:
        return FrameKind.NAMES.get(self.kind, f"kind{self.kind}")


def _crc(*parts: bytes) -> int:
    c = 0
    for p in parts:
        c = zlib.crc32(p, c)
    return c & 0xFFFFFFFF


class TraceWriter:
    """Appends frames to a new trace file; every frame reaches the OS in one write.

    Use as a context manager: a clean exit writes the index and trailer. Without a clean
    close (a crash, SIGKILL) the file is still valid up to its last complete frame.
    """

    def __init__(self, path: str | os.PathLike[str], metadata: dict, *,
                 level: int = 3, fsync: bool = False, fd: int | None = None,
                 version: int = FORMAT_VERSION) -> None:
        """fd: an already opened descriptor for ``path`` (taken over, closed at the end);
        without it the file is created private (0600) and never through a symlink.
        version: the format version in the header (a supported one)."""
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"trace format version {version} is not supported")
        self.path = Path(path)
        meta = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
        if len(meta) > MAX_META_BYTES:
            if fd is not None:
                os.close(fd)
            raise ValueError(f"trace metadata is {len(meta)} bytes; the limit is {MAX_META_BYTES}")
        self._fd = fd if fd is not None else create_private(self.path, exclusive=False)
        self._fsync = fsync
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._index: list[tuple[int, int, int, int]] = []
        head = _HEADER.pack(MAGIC, version, 0, len(meta)) + meta
        self._offset = 0
        self._write(head + struct.pack("<I", _crc(head)))
        self.closed = False

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._offset += len(data)

    @property
    def frame_count(self) -> int:
        """Frames appended so far (the next frame's ordinal)."""
        return len(self._index)

    def append(self, kind: int, first_tick: int, last_tick: int,
               payload: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        """Append one frame (compressed when that makes it smaller). The payload may be given
        as a list or tuple of bytes-like parts (views of guest RAM, say): they are compressed
        where they lie, and joined only for a frame stored uncompressed."""
        if kind not in FrameKind.NAMES or kind == FrameKind.INDEX:
            raise ValueError(f"cannot append a frame of kind {kind}")
        size = (sum(memoryview(p).nbytes for p in payload) if isinstance(payload, (list, tuple))
                else len(payload))
        if size > MAX_FRAME_BYTES:
            raise ValueError(f"frame payload of {size} bytes exceeds {MAX_FRAME_BYTES}")
        if len(self._index) >= MAX_FRAMES - 1:
            raise ValueError(f"a trace holds at most {MAX_FRAMES} frames")
        self._append(kind, first_tick, last_tick, payload, size)
        if self._fsync:
            os.fsync(self._fd)

    def _append(self, kind: int, first_tick: int, last_tick: int,
                payload: Buffer | list[Buffer] | tuple[Buffer, ...],
                size: int | None = None) -> None:
        parts = isinstance(payload, (list, tuple))
        if parts:
            assert size is not None
            cobj = self._cctx.compressobj(size=size)
            packed = b"".join([cobj.compress(p) for p in payload]) + cobj.flush()
        else:
            size = len(payload)
            packed = self._cctx.compress(payload)
        if len(packed) < size:
            codec, stored = CODEC_ZSTD, packed
        else:
            codec, stored = CODEC_RAW, b"".join(payload) if parts else payload
        fields = _FRAME.pack(FRAME_MAGIC, kind, codec, 0, first_tick, last_tick, size,
                             len(stored), 0)[:-4]
        crc = _crc(fields, stored)
        self._index.append((self._offset, kind, first_tick, last_tick))
        self._write(fields + struct.pack("<I", crc) + stored)

    def close(self) -> None:
        """Write the index and trailer and close the file. Idempotent."""
        if self.closed:
            return
        index_offset = self._offset
        rows = b"".join(struct.pack("<QBQQ", o, k, f, t) for o, k, f, t in self._index)
        last = max((t for _, _, _, t in self._index), default=0)
        self._append(FrameKind.INDEX, 0, last, rows)
        self._write(_TRAILER.pack(index_offset, END_MAGIC))
        if self._fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self.closed = True

    def abandon(self) -> None:
        """Close the file without an index (what a crash leaves behind)."""
        if not self.closed:
            os.close(self._fd)
            self.closed = True

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class TraceFile:
    """An opened trace: metadata, its frames, and whether it was closed cleanly.

    Frames are read on demand (:meth:`read`), so opening costs one pass over frame headers
    (and checksums when verified), and seeking does not read what it skips."""

    path: Path
    version: int
    metadata: dict
    frames: list[Frame]
    complete: bool
    recovered_bytes: int  # bytes after the last complete frame (0 for a clean file)

    def of_kind(self, kind: int) -> Iterator[Frame]:
        return (f for f in self.frames if f.kind == kind)

    def read(self, frame: Frame) -> bytes:
        """The frame's payload, checksum-verified and decompressed (TraceError on damage)."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                return _read_frame(f, frame.offset, size, zstandard.ZstdDecompressor(),
                                   payload=True)[1]
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot read ({exc.strerror})") from None
        except _Damaged as exc:
            raise TraceError(f"{self.path}: damaged frame at offset {frame.offset}: "
                             f"{exc}") from None


def _read_header(f: BinaryIO, size: int, name: str) -> tuple[int, dict, int]:
    raw = f.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise TraceError(f"{name}: not an aero trace (file too short for a header)")
    magic, version, _flags, meta_len = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise TraceError(f"{name}: not an aero trace (bad magic)")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise TraceError(f"{name}: trace format version {version} is not supported "
                         f"(supported: {supported})")
    if meta_len > MAX_META_BYTES or _HEADER.size + meta_len + 4 > size:
        raise TraceError(f"{name}: damaged header (metadata length {meta_len} is impossible)")
    meta = f.read(meta_len)
    (crc,) = struct.unpack("<I", f.read(4))
    if crc != _crc(raw, meta):
        raise TraceError(f"{name}: damaged header (checksum mismatch)")
    from aero.traces.schema import load_json

    try:
        metadata = load_json(meta, "the header's metadata")
    except TraceError as exc:
        raise TraceError(f"{name}: damaged header ({exc})") from None
    return version, metadata, _HEADER.size + meta_len + 4


class _Damaged(Exception):
    """A frame at some offset is damaged (internal: turned into TraceError or recovery)."""


def _read_frame(f: BinaryIO, offset: int, size: int, dctx: zstandard.ZstdDecompressor, *,
                payload: bool = False, check: bool = True) -> tuple[Frame, bytes | None]:
    """Read the frame at offset. check: verify the checksum; payload: also decompress it."""
    if offset + _FRAME.size > size:
        raise _Damaged("truncated frame header")
    f.seek(offset)
    raw = f.read(_FRAME.size)
    magic, kind, codec, _res, first, last, raw_len, stored_len, crc = _FRAME.unpack(raw)
    if magic != FRAME_MAGIC:
        raise _Damaged("bad frame magic")
    if stored_len > MAX_FRAME_BYTES or raw_len > MAX_FRAME_BYTES:
        raise _Damaged(f"frame length {max(stored_len, raw_len)} exceeds the limit")
    if offset + _FRAME.size + stored_len > size:
        raise _Damaged("truncated frame payload")
    stored = f.read(stored_len) if (check or payload) else b""
    if (check or payload) and crc != _crc(raw[:-4], stored):
        raise _Damaged("frame checksum mismatch")
    if kind not in FrameKind.NAMES:
        raise _Damaged(f"unknown frame kind {kind}")
    if last < first:
        raise _Damaged("frame tick range is reversed")
    if codec not in (CODEC_RAW, CODEC_ZSTD):
        raise _Damaged(f"unknown frame codec {codec}")
    if codec == CODEC_RAW and raw_len != stored_len:
        raise _Damaged("raw frame with two different lengths")
    frame = Frame(kind, first, last, offset, codec, raw_len, stored_len)
    if not payload:
        return frame, None
    if codec == CODEC_RAW:
        data = stored
    else:
        try:
            data = bounded_decompress(stored, raw_len, raw_len)
        except zstandard.ZstdError as exc:
            raise _Damaged(f"frame does not decompress ({exc})") from None
        except ValueError as exc:
            raise _Damaged(f"frame {exc}") from None
    if len(data) != raw_len:
        raise _Damaged("frame decompresses to the wrong size")
    return frame, data


def open_trace(path: str | os.PathLike[str], *, verify: bool = True) -> TraceFile:
    """Open a trace. Damage inside a cleanly closed file is an error; a file without an
    index (the writer crashed) is recovered up to its last complete frame.

    verify: check every frame's checksum now (one pass over the file). Without it a clean
    file is opened from its index alone and each frame is checked when it is read."""
    p = Path(path)
    name = str(p)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise TraceError(f"{name}: cannot open ({exc.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        version, metadata, pos = _read_header(f, size, name)
        dctx = zstandard.ZstdDecompressor()
        clean = False
        if size >= pos + _TRAILER.size:
            f.seek(size - _TRAILER.size)
            index_offset, end = _TRAILER.unpack(f.read(_TRAILER.size))
            clean = end == END_MAGIC
        frames: list[Frame] = []
        if clean:
            if not pos <= index_offset < size - _TRAILER.size:
                raise TraceError(f"{name}: damaged trailer (index offset {index_offset} "
                                 "is outside the file)")
            try:
                index, index_payload = _read_frame(f, index_offset, size - _TRAILER.size, dctx,
                                                   payload=True)
            except _Damaged as exc:
                raise TraceError(f"{name}: damaged index frame at {index_offset}: {exc}") from None
            assert index_payload is not None
            if index.kind != FrameKind.INDEX or len(index_payload) % 25:
                raise TraceError(f"{name}: damaged index frame at {index_offset}")
            if len(index_payload) // 25 > MAX_FRAMES:
                raise TraceError(f"{name}: the index lists more than {MAX_FRAMES} frames")
            expect = pos
            for i in range(0, len(index_payload), 25):
                off, kind, first, last = struct.unpack_from("<QBQQ", index_payload, i)
                if off != expect:
                    raise TraceError(f"{name}: index does not match the frames (offset {off})")
                try:
                    fr, _ = _read_frame(f, off, index_offset, dctx, check=verify)
                except _Damaged as exc:
                    raise TraceError(f"{name}: damaged frame at offset {off}: {exc}") from None
                if (fr.kind, fr.first_tick, fr.last_tick) != (kind, first, last):
                    raise TraceError(f"{name}: index does not match the frame at {off}")
                if fr.kind == FrameKind.INDEX:
                    raise TraceError(f"{name}: an index frame inside the file at {off}")
                frames.append(fr)
                expect = off + _FRAME.size + fr.stored_len
            if expect != index_offset:
                raise TraceError(f"{name}: bytes between the last frame and the index")
            return TraceFile(p, version, metadata, frames, True, 0)
        # No clean close: scan frame by frame and stop at the first incomplete one.
        off = pos
        while off < size:
            try:
                fr, _ = _read_frame(f, off, size, dctx)
            except _Damaged:
                break
            if fr.kind == FrameKind.INDEX or len(frames) >= MAX_FRAMES:
                break
            frames.append(fr)
            off += _FRAME.size + fr.stored_len
        return TraceFile(p, version, metadata, frames, False, size - off)
