"""Figures from repeated timings: medians, spread, and ratios measured in interleaved pairs.

A ratio between two configurations (aero and QEMU, a plain run and a recording, a recording
and its replay) is only worth quoting when both sides were measured under the same machine
conditions. The harness therefore runs them interleaved (A B A B ...), and this module
reduces the pairs:

* a sample is the median of n timings with their spread, ``(max - min) / median``;
* a ratio is the median of the per-pair ratios (each pair ran back to back), with the spread
  of those ratios;
* a figure whose spread exceeds :data:`TRUST_SPREAD` is marked untrusted: the machine was
  too noisy for its ratio to mean anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["TRUST_SPREAD", "Summary", "ratio", "sample"]

TRUST_SPREAD = 0.10  # a spread above 10 % of the median: not trusted


@dataclass(frozen=True)
class Summary:
    """n values (timings in seconds, or per-pair ratios): their median and range."""

    median: float
    minimum: float
    maximum: float
    n: int

    @property
    def spread(self) -> float:
        """(max - min) / median: 0 for identical values."""
        return (self.maximum - self.minimum) / self.median if self.median else 0.0

    @property
    def trusted(self) -> bool:
        """At least two values, within :data:`TRUST_SPREAD` of each other."""
        return self.n >= 2 and self.spread <= TRUST_SPREAD

    def to_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "spread_percent": round(100 * self.spread, 2),
                "trusted": self.trusted}


def sample(times: Sequence[float]) -> Summary:
    """The median and spread of ``times`` (at least one, all positive)."""
    if not times or min(times) <= 0:
        raise ValueError("a sample needs at least one positive timing")
    return Summary(statistics.median(times), min(times), max(times), len(times))


def ratio(a: Sequence[float], b: Sequence[float]) -> Summary:
    """The ratio of paired values ``a[i] / b[i]`` (pairs measured back to back)."""
    if len(a) != len(b) or not a:
        raise ValueError("a ratio needs the same positive number of values on both sides")
    if min(b) <= 0:
        raise ValueError("a ratio needs positive denominators")
    rs = [x / y for x, y in zip(a, b, strict=True)]
    return Summary(statistics.median(rs), min(rs), max(rs), len(rs))
