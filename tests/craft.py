"""Crafted (hostile) traces built from a clean recording, and a runner that executes code
under a memory limit and a timeout in a subprocess.

A crafted trace is written byte by byte here, not through TraceWriter, so that it can hold
what aero's writer never produces: metadata that is not what json.dumps makes, frames whose
zstd payload declares a size of its own, frames of unknown kinds.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zstandard
from aero.traces.container import (
    CODEC_RAW,
    CODEC_ZSTD,
    END_MAGIC,
    FRAME_MAGIC,
    MAGIC,
    FrameKind,
    open_trace,
)

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20


@dataclass
class RawFrame:
    """A frame as stored: ``stored`` bytes with the header fields to write around them."""

    kind: int
    first: int
    last: int
    stored: bytes
    codec: int = CODEC_RAW
    raw_len: int | None = None  # default: len(stored)


def frames_of(path: Path) -> tuple[dict, list[RawFrame]]:
    """The metadata and the frames of a clean trace (payloads decompressed, stored raw)."""
    t = open_trace(path)
    return dict(t.metadata), [RawFrame(f.kind, f.first_tick, f.last_tick, bytes(t.read(f)))
                              for f in t.frames]


def write_raw(path: Path, meta: bytes | dict, frames: list[RawFrame], *,
              index: bool = True, index_frame: RawFrame | None = None) -> Path:
    """A trace file with exactly these bytes: header (``meta`` as given when bytes), frames
    (raw payloads over 4 KB compressed), and (index=True) an index (``index_frame``'s bytes
    when given) and trailer."""
    if isinstance(meta, dict):
        meta = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    head = struct.pack("<8sHHI", MAGIC, 1, 0, len(meta)) + meta
    out = bytearray(head + struct.pack("<I", zlib.crc32(head) & 0xFFFFFFFF))
    rows = []
    cctx = zstandard.ZstdCompressor(level=1)
    for f in frames:
        if f.codec == CODEC_RAW and f.raw_len is None and len(f.stored) > 4096:
            f = RawFrame(f.kind, f.first, f.last, cctx.compress(f.stored), CODEC_ZSTD,
                         len(f.stored))  # a large raw payload is stored compressed
        raw_len = len(f.stored) if f.raw_len is None else f.raw_len
        fields = struct.pack("<4sBBHQQII", FRAME_MAGIC, f.kind, f.codec, 0, f.first, f.last,
                             raw_len, len(f.stored))
        rows.append(struct.pack("<QBQQ", len(out), f.kind, f.first, f.last))
        out += fields + struct.pack("<I", zlib.crc32(f.stored, zlib.crc32(fields))
                                    & 0xFFFFFFFF) + f.stored
    if index:
        index_offset = len(out)
        body = b"".join(rows)
        last = max((f.last for f in frames), default=0)
        codec, raw_len = CODEC_RAW, len(body)
        if index_frame is not None:
            body, codec = index_frame.stored, index_frame.codec
            raw_len = len(body) if index_frame.raw_len is None else index_frame.raw_len
        fields = struct.pack("<4sBBHQQII", FRAME_MAGIC, FrameKind.INDEX, codec, 0, 0, last,
                             raw_len, len(body))
        out += fields + struct.pack("<I", zlib.crc32(body, zlib.crc32(fields)) & 0xFFFFFFFF) \
            + body
        out += struct.pack("<Q8s", index_offset, END_MAGIC)
    path.write_bytes(bytes(out))
    return path


def zstd_bomb(declared: int, actual: int) -> bytes:
    """One zstd frame declaring ``declared`` bytes of content and made of RLE blocks that
    expand to ``actual`` zero bytes (4 bytes per 128 KB, so a 2 GB bomb is 64 KB)."""
    fhd = 0b11100000  # 8-byte content size, single segment, no checksum, no dictionary
    out = bytearray(b"\x28\xb5\x2f\xfd" + bytes([fhd]) + struct.pack("<Q", declared))
    block = 128 << 10
    left = actual
    while True:
        n = min(left, block)
        last = 1 if left <= block else 0
        out += (last | (1 << 1) | (n << 3)).to_bytes(3, "little") + b"\x00"  # RLE block
        left -= n
        if last:
            return bytes(out)


def with_meta(path: Path, src: Path, edit: Callable[[dict], object]) -> Path:
    """``src`` with its metadata replaced by ``edit(metadata)`` (a dict or raw bytes)."""
    meta, frames = frames_of(src)
    new = edit(meta)
    return write_raw(path, new if isinstance(new, bytes | dict) else meta, frames)


# ---- limited subprocesses ------------------------------------------------------------------

@dataclass
class Limited:
    code: int
    stdout: str
    stderr: str
    peak_kb: int  # the child's ru_maxrss


_PRELUDE = """
import resource, sys
limit = {limit}
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.path.insert(0, {tests!r})
"""


def run_limited(body: str, *, memory: int = 1024 * MB, timeout: float = 60,
                env: dict[str, str] | None = None) -> Limited:
    """Run Python ``body`` in a subprocess with RLIMIT_AS ``memory`` and a timeout (own
    process group; SIGTERM then SIGKILL on timeout, which fails the caller)."""
    code = _PRELUDE.format(limit=memory, tests=str(ROOT / "tests")) + textwrap.dedent(body)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout} s: {body.strip()[:200]}\n"
                             f"{err[-2000:]}") from None
    return Limited(proc.returncode, out, err, 0)


def aero_limited(*args: str, memory: int = 1024 * MB, timeout: float = 60,
                 env: dict[str, str] | None = None) -> Limited:
    """``aero ARGS`` (the CLI's main, in a limited subprocess); the child prints its peak
    RSS on stderr's last line."""
    body = f"""
    import resource
    from aero.cli import main
    try:
        code = main({list(args)!r})
    finally:
        print("peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    sys.exit(code)
    """
    r = run_limited(body, memory=memory, timeout=timeout, env=env)
    lines = r.stderr.rstrip().splitlines()
    if lines and lines[-1].startswith("peak_kb "):
        r.peak_kb = int(lines[-1].split()[1])
        r.stderr = "\n".join(lines[:-1])
    return r


__all__ = ["CODEC_RAW", "CODEC_ZSTD", "Limited", "MB", "RawFrame", "aero_limited", "frames_of",
           "run_limited", "with_meta", "write_raw", "zstd_bomb"]
