"""Kernel symbols for annotating addresses as ``symbol+offset``.

Two sources:

* a System.map or ``/proc/kallsyms`` listing (``ADDRESS TYPE NAME [MODULE]`` per line), as
  ``aero diff --symbols FILE`` takes it;
* the kernel's own symbol table, read out of a bzImage: the protected-mode payload is
  decompressed (XZ, gzip, bzip2 and LZMA payloads: what Python's standard library reads) and
  the ``kallsyms`` tables the kernel carries for its own backtraces are decoded. Debian's
  linux-image packages ship a placeholder System.map (the real one is in the 765 MB -dbg
  package), so this is how the bundled guest gets its symbols.

The kallsyms layout is the one ``scripts/kallsyms.c`` writes for a 32-bit kernel with
``CONFIG_KALLSYMS_BASE_RELATIVE`` (the default since 4.6): in ``.rodata``, 4-byte aligned,
``kallsyms_offsets`` (one u32 per symbol), ``kallsyms_relative_base``, ``kallsyms_num_syms``,
``kallsyms_names`` (per symbol a length, one byte, or two when the first has bit 7 set
(6.1 and later), then that many token indices), ``kallsyms_markers`` (the names offset of
every 256th symbol), ``kallsyms_seqs_of_names`` (6.2 and later, and backported to Debian's
6.1: 3 bytes per symbol), ``kallsyms_token_table`` and ``kallsyms_token_index``. The first
character of a symbol's expanded name is its type letter (``t``, ``T``, ``d``...).

Invariants: a :class:`SymbolTable` is sorted by address; :meth:`SymbolTable.lookup` names
only text symbols (types ``t``/``T``/``w``/``W``), and an address past the last text symbol's
section end is not named. Reading a bzImage never executes anything from it; anything that
does not decode as described raises :class:`SymbolError` (one line).
"""

from __future__ import annotations

import bisect
import bz2
import gzip
import io
import lzma
import re
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SymbolError", "SymbolTable", "kallsyms_from_bzimage", "kallsyms_from_vmlinux",
           "load_symbol_file", "vmlinux_from_bzimage"]

TEXT_TYPES = frozenset("tTwW")
MAX_VMLINUX = 256 << 20  # the decompressed kernel is at most this large
MAX_SYMBOLS = 1 << 20


class SymbolError(ValueError):
    """Symbols that cannot be read: the message is one line."""


@dataclass(frozen=True)
class SymbolTable:
    """Text symbols sorted by address; ``end`` bounds the last one (the end of the kernel
    text, or the last symbol's address + 64 KiB for a listing without sizes)."""

    addresses: tuple[int, ...]
    names: tuple[str, ...]
    end: int

    @classmethod
    def build(cls, entries: list[tuple[int, str, str]], end: int | None = None) -> SymbolTable:
        """From (address, type letter, name) entries: text symbols only, sorted."""
        text = sorted((a, n) for a, t, n in entries if t in TEXT_TYPES)
        if not text:
            raise SymbolError("no text symbols")
        last = text[-1][0]
        return cls(tuple(a for a, _ in text), tuple(n for _, n in text),
                   end if end is not None and end > last else last + 0x10000)

    def lookup(self, address: int) -> tuple[str, int] | None:
        """(symbol, offset) of the text symbol containing ``address``, or None."""
        i = bisect.bisect_right(self.addresses, address) - 1
        if i < 0 or address >= self.end:
            return None
        return self.names[i], address - self.addresses[i]

    def describe(self, address: int) -> str | None:
        """``name+0xoff`` (``name`` at offset 0), or None outside every text symbol."""
        hit = self.lookup(address)
        if hit is None:
            return None
        name, off = hit
        return f"{name}+{off:#x}" if off else name

    def __len__(self) -> int:
        return len(self.addresses)


_LINE = re.compile(r"([0-9a-fA-F]{1,16})\s+([A-Za-z?])\s+(\S+)")


def load_symbol_file(path: str | Path) -> SymbolTable:
    """A System.map or /proc/kallsyms listing. Lines that do not parse are skipped; a file
    without any text symbol (such as Debian's placeholder System.map) is an error."""
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as exc:
        raise SymbolError(f"{p}: {exc.strerror}") from None
    entries = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m and int(m.group(1), 16) < 1 << 32:
            entries.append((int(m.group(1), 16), m.group(2), m.group(3)))
    try:
        return SymbolTable.build(entries)
    except SymbolError:
        raise SymbolError(f"{p}: no text symbols (a placeholder System.map? Debian keeps the "
                          f"real one in the -dbg package)") from None


# ---- out of a bzImage ---------------------------------------------------------------------

def vmlinux_from_bzimage(image: bytes) -> bytes:
    """The decompressed kernel (an ELF file) inside a bzImage (boot protocol 2.08+, which
    gives the payload's offset and length)."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        raise SymbolError("not a bzImage (no HdrS header)")
    if struct.unpack_from("<H", image, 0x206)[0] < 0x208:
        raise SymbolError("boot protocol older than 2.08: no payload offset in the header")
    setup_sects = image[0x1F1] or 4
    start = (setup_sects + 1) * 512
    offset, length = struct.unpack_from("<II", image, 0x248)
    payload = image[start + offset:start + offset + length]
    if len(payload) != length or length < 6:
        raise SymbolError("the kernel payload lies outside the file")
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload, MAX_VMLINUX)
        elif payload.startswith(b"\x1f\x8b"):
            out = gzip.GzipFile(fileobj=io.BytesIO(payload)).read(MAX_VMLINUX)
        elif payload.startswith(b"BZh"):
            out = bz2.BZ2Decompressor().decompress(payload, MAX_VMLINUX)
        elif payload[:1] == b"\x5d":
            out = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload,
                                                                             MAX_VMLINUX)
        else:
            raise SymbolError(f"the kernel payload's compression is not supported "
                              f"(starts {payload[:4].hex()})")
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise SymbolError(f"the kernel payload does not decompress: {exc}") from None
    if not out.startswith(b"\x7fELF\x01\x01"):
        raise SymbolError("the decompressed kernel is not a 32-bit little-endian ELF file")
    return out


def _sections(elf: bytes) -> dict[str, tuple[int, int, int]]:
    """name -> (address, file offset, size) of an ELF32 file's sections."""
    try:
        shoff = struct.unpack_from("<I", elf, 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x2E)
        rows = [struct.unpack_from("<IIIIII", elf, shoff + i * shentsize) for i in range(shnum)]
        strtab = rows[shstrndx][4]
        out = {}
        for name, _typ, _flags, addr, off, size in rows:
            end = elf.index(b"\0", strtab + name)
            out[elf[strtab + name:end].decode(errors="replace")] = (addr, off, size)
        return out
    except (struct.error, IndexError, ValueError):
        raise SymbolError("the decompressed kernel's section table is damaged") from None


def kallsyms_from_vmlinux(elf: bytes) -> SymbolTable:
    """The kallsyms table of a decompressed 32-bit kernel (layout in the module docstring)."""
    secs = _sections(elf)
    if ".rodata" not in secs or ".text" not in secs:
        raise SymbolError("the kernel has no .rodata or .text section")
    _, ro_off, ro_size = secs[".rodata"]
    text_addr, _, text_size = secs[".text"]
    ro = memoryview(elf)[ro_off:ro_off + ro_size]
    words = ro[:ro_size // 4 * 4].cast("I")
    # kallsyms_relative_base is _text (rounded down), followed by kallsyms_num_syms.
    for i in range(1, len(words) - 1):
        base, n = words[i], words[i + 1]
        if not (text_addr - 0x100000 <= base <= text_addr and 1000 <= n <= MAX_SYMBOLS
                and n <= i):
            continue
        table = _decode(ro, i, base, n)
        if table is not None:
            addrs, names = table
            entries = [(a, nm[:1], nm[1:]) for a, nm in zip(addrs, names, strict=True)]
            init = secs.get(".init.text")
            end = max(text_addr + text_size, init[0] + init[2] if init else 0)
            return SymbolTable.build(entries, end)
    raise SymbolError("no kallsyms table found in the kernel (built without CONFIG_KALLSYMS, "
                      "or a layout this reader does not know)")


def _decode(ro: memoryview, i: int, base: int, n: int) -> tuple[list[int], list[str]] | None:
    """Decode the tables around word ``i`` (kallsyms_relative_base), or None if they do not
    hang together."""
    offsets = ro[(i - n) * 4:i * 4].cast("I")
    if any(offsets[k] > offsets[k + 1] for k in range(0, n - 1, max(1, n // 64))):
        return None
    pos = (i + 2) * 4
    raw: list[bytes] = []
    starts = []
    data = bytes(ro[pos:])
    p = 0
    try:
        for _ in range(n):
            starts.append(p)
            length = data[p]
            p += 1
            if length & 0x80:
                length = (length & 0x7F) | (data[p] << 7)
                p += 1
            if length == 0:
                return None
            raw.append(data[p:p + length])
            p += length
    except IndexError:
        return None
    m = (p + 3) & ~3
    markers_n = (n + 255) // 256
    if m + 4 * markers_n > len(data):
        return None
    markers = struct.unpack_from(f"<{markers_n}I", data, m)
    if any(markers[k] != starts[256 * k] for k in range(markers_n)):
        return None
    after = m + 4 * markers_n
    # kallsyms_token_table: 256 NUL-terminated tokens, then (aligned) kallsyms_token_index.
    # Kernels since 6.2 (and stable kernels that took the change, such as Debian's 6.1) have
    # kallsyms_seqs_of_names (3 bytes per symbol) between the markers and the tokens.
    for tt in (after, (after + 3 * n + 3) & ~3):
        tokens = _tokens(data, tt)
        if tokens is not None:
            break
    else:
        return None
    names = [b"".join(tokens[b] for b in r).decode("latin-1") for r in raw]
    addrs = [base + int(offsets[k]) for k in range(n)]
    return addrs, names


def _tokens(data: bytes, tt: int) -> list[bytes] | None:
    """The 256 tokens of a token table at ``tt``, if the token index after it agrees."""
    tokens = []
    q = tt
    for _ in range(256):
        end = data.find(b"\0", q)
        if end < 0 or end == q:
            return None
        tokens.append(data[q:end])
        q = end + 1
    ti = (q + 3) & ~3
    if ti + 512 > len(data):
        return None
    index = struct.unpack_from("<256H", data, ti)
    at = 0
    for k in range(256):
        if index[k] != at:
            return None
        at += len(tokens[k]) + 1
    return tokens


def kallsyms_from_bzimage(image: bytes) -> SymbolTable:
    """The kernel's own symbol table, out of its bzImage (see the module docstring)."""
    return kallsyms_from_vmlinux(vmlinux_from_bzimage(image))
