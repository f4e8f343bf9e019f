"""The memory oracle: declared read-only regions of physical memory never change."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .api import Context, Oracle
from .registry import register


def parse_region(text: str) -> tuple[int, int]:
    """``START+LENGTH`` or ``START:END`` (integers in any base Python accepts, e.g. 0x7c00)."""
    try:
        if "+" in text:
            start_s, length_s = text.split("+", 1)
            start, length = int(start_s, 0), int(length_s, 0)
        else:
            start_s, end_s = text.split(":", 1)
            start = int(start_s, 0)
            length = int(end_s, 0) - start
    except ValueError:
        raise ValueError(f"not a region: {text!r} (START+LENGTH or START:END)") from None
    if start < 0 or length <= 0 or start + length > 1 << 32:
        raise ValueError(f"not a region within 4 GB: {text!r}")
    return start, length


@register
class ReadOnlyMemory(Oracle):
    """Declared read-only regions of physical memory never change.

    Invariant: the bytes of every configured (start, length) region are the same at every
    checkpoint and at the end as at tick 0 (after the guest image was loaded). Typical
    regions: a flat guest's code, a multiboot kernel's text, a table the guest must only
    read. There are no regions by default: a flat image may legitimately write into itself,
    and the ROM area is not RAM (writes to it are ignored by the memory map, so it cannot
    change). Configure with ``ReadOnlyMemory(regions=[(0x7C00, 512)])`` or
    ``aero check --readonly 0x7c00+512``.

    Implementation: each region is hashed at the start and at every checkpoint, so a change
    is reported at the first checkpoint after it (not at the writing instruction; seek to
    the previous checkpoint and step to find it). After a report the new contents become
    the reference, so each later change is reported too. Source: the guest's own contract
    (which memory it declares immutable), not an architectural rule.
    """

    name = "memory"

    def __init__(self, regions: Iterable[tuple[int, int]] = ()) -> None:
        self.regions = [(int(s), int(n)) for s, n in regions]
        for s, n in self.regions:
            if s < 0 or n <= 0 or s + n > 1 << 32:
                raise ValueError(f"bad read-only region {s:#x}+{n:#x}")

    def start(self, ctx: Context) -> None:
        self._ref = [ctx.machine.read(s, n) for s, n in self.regions]
        self._hash = [hashlib.sha256(b).digest() for b in self._ref]

    def _check(self, ctx: Context) -> None:
        for i, (s, n) in enumerate(self.regions):
            now = ctx.machine.read(s, n)
            h = hashlib.sha256(now).digest()
            if h == self._hash[i]:
                continue
            old = self._ref[i]
            off = next(k for k in range(n) if old[k] != now[k])
            changed = sum(1 for a, b in zip(old, now, strict=True) if a != b)
            self.violation(ctx, f"read-only region {s:#x}+{n:#x} changed (first at "
                                f"{s + off:#x}: {old[off]:#04x} -> {now[off]:#04x})",
                           state={"region_start": s, "region_length": n,
                                  "first_address": s + off, "old": old[off], "new": now[off],
                                  "bytes_changed": changed})
            self._ref[i], self._hash[i] = now, h

    def checkpoint(self, ctx: Context) -> None:
        self._check(ctx)

    def end(self, ctx: Context) -> None:
        self._check(ctx)
