"""Explicit schemas for the JSON a trace carries (header metadata, summary, image head).

A trace file is untrusted input: every field aero uses is checked here for its type and its
range before anything else looks at it, and everything else in the object is ignored.

Invariants:

* :func:`load_json` never raises anything but :class:`aero.traces.container.TraceError`:
  bad UTF-8, numbers longer than :data:`MAX_NUMBER_DIGITS` digits, NaN/Infinity, nesting
  deeper than :data:`MAX_DEPTH` and any JSON syntax error are one-line errors.
* A validator returns a new dict holding only the checked fields (with defaults filled in
  where the field is optional) and raises TraceError naming the first bad field.
* ``bool`` is never accepted where an integer is expected, nor an integer for a bool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from aero.traces.container import TraceError

from aero.loader import MAX_IMAGE_BYTES

__all__ = ["MAX_DEPTH", "MAX_IMAGE_BYTES", "MAX_NUMBER_DIGITS", "MAX_RAM_BYTES", "MAX_TICK",
           "STOP_NAMES", "check_guest", "check_image_head", "check_machine", "check_metadata",
           "check_summary", "load_json"]

MAX_DEPTH = 32  # nesting of arrays and objects
MAX_NUMBER_DIGITS = 24  # characters of one JSON number (u64 needs 20)
MAX_TICK = (1 << 63) - 1
MAX_RAM_BYTES = 1 << 30  # the largest RAM a trace may configure (replay allocates it)
STOP_NAMES = frozenset({"exit", "halt", "shutdown", "idle", "limit", "interrupted",
                        "script-stalled", "script-unreachable"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


def _parse_int(s: str) -> int:
    if len(s) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(s)} digits")
    return int(s)


def _parse_float(s: str) -> float:
    if len(s) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(s)} characters")
    return float(s)


def _reject_constant(s: str) -> float:
    raise ValueError(f"{s} is not JSON")


def _depth_ok(data: str) -> bool:
    """Nesting of [ and { outside strings is at most MAX_DEPTH (checked before parsing so
    that the parser's recursion is never the limit)."""
    depth = 0
    in_str = esc = False
    for ch in data:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def load_json(raw: bytes, what: str) -> dict:
    """A JSON object from untrusted bytes (TraceError naming ``what`` on any problem)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{what} is not UTF-8 (byte {exc.start})") from None
    if ("[" in text or "{" in text) and not _depth_ok(text):
        raise TraceError(f"{what} nests deeper than {MAX_DEPTH} levels")
    try:
        obj = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                         parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{what} is not JSON ({exc.msg} at {exc.pos})") from None
    except (ValueError, RecursionError) as exc:
        raise TraceError(f"{what} is not acceptable JSON ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise TraceError(f"{what} is not a JSON object")
    return obj


# ---- field checks -------------------------------------------------------------------------

def _int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and lo <= v <= hi


def _str(max_len: int, pattern: re.Pattern[str] | None = None) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= max_len and (
        pattern is None or pattern.fullmatch(v) is not None)


def _bool(v: Any) -> bool:
    return type(v) is bool


def _one_of(*values: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in values


def _list_of(check: Callable[[Any], bool], max_len: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) <= max_len and all(check(x) for x in v)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_U32 = _int(0, 0xFFFF_FFFF)
_U64 = _int(0, (1 << 64) - 1)

# field -> (check, required, description)
_MACHINE: dict[str, tuple[Callable[[Any], bool], bool, str]] = {
    "ram_size": (lambda v: _int(4096, MAX_RAM_BYTES)(v) and v % 4096 == 0, True,
                 f"a multiple of 4096 up to {MAX_RAM_BYTES}"),
    "cpuid_vendor": (lambda v: isinstance(v, str) and len(v) == 12 and v.isascii(), False,
                     "12 ASCII characters"),
    "cpuid_signature": (_U32, False, "a 32-bit integer"),
    "features": (_list_of(_str(16), 32), False, "a list of feature names"),
    "tsc_per_tick": (_int(1, 1 << 32), False, "an integer from 1 to 2**32"),
    "a20_enabled": (_bool, False, "true or false"),
    "debug_ports": (_bool, False, "true or false"),
    "reset_on_triple_fault": (_bool, False, "true or false"),
    "devices": (_bool, False, "true or false"),
    "tick_hz": (_int(1000, 10**12), False, "an integer from 1000 to 10**12"),
    "post_ports": (_list_of(_int(1, 0xFFFF), 4), False, "up to four ports 1-FFFFh"),
    # A Linux kernel's command line (x86's COMMAND_LINE_SIZE is 2048, the NUL included).
    "cmdline": (lambda v: _str(2047)(v) and v.isascii() and v.isprintable(), False,
                "printable ASCII of at most 2047 characters"),
    # The platform revision the trace was recorded on (absent: revision 1). One this aero
    # does not have is refused when the configuration is built, naming it.
    "platform": (_int(0, 1 << 16), False, "a revision number"),
}

_GUEST: dict[str, tuple[Callable[[Any], bool], bool, str]] = {
    "name": (_str(255), True, "a string of at most 255 characters"),
    "fmt": (_one_of("flat", "rom", "multiboot", "linux"), True,
            "flat, rom, multiboot or linux"),
    "load_addr": (_U32, True, "a 32-bit address"),
    "sha256": (_str(64, _HEX64), True, "64 lowercase hex digits"),
    "size": (_int(1, MAX_IMAGE_BYTES), True, f"1 to {MAX_IMAGE_BYTES} bytes"),
    # A Linux guest's initial ramdisk.
    "initrd_sha256": (_str(64, _HEX64), False, "64 lowercase hex digits"),
    "initrd_size": (_int(1, MAX_IMAGE_BYTES), False, f"1 to {MAX_IMAGE_BYTES} bytes"),
    # The disk image on the primary IDE channel.
    "disk_sha256": (_str(64, _HEX64), False, "64 lowercase hex digits"),
    "disk_size": (_int(512, MAX_IMAGE_BYTES), False, f"512 to {MAX_IMAGE_BYTES} bytes"),
    # The disk's writes go to a copy-on-write overlay kept in the keyframes (format 3).
    "disk_writable": (_bool, False, "true or false"),
    # The VGA option ROM the firmware runs (the `pc` guest).
    "vgarom_sha256": (_str(64, _HEX64), False, "64 lowercase hex digits"),
    "vgarom_size": (_int(1, 1 << 20), False, "1 byte to 1 MB"),
}

_METADATA: dict[str, tuple[Callable[[Any], bool], bool, str]] = {
    "aero": (_str(64), False, "a version string"),
    "events_version": (_int(0, 1 << 16), True, "an integer"),
    "created": (_str(40), False, "a UTC time"),
    "machine": (lambda v: isinstance(v, dict), True, "an object"),
    "guest": (lambda v: isinstance(v, dict), True, "an object"),
    "checkpoint_interval": (_int(1, MAX_TICK), False, "a positive tick count"),
    "keyframe_interval": (_int(1, MAX_TICK), False, "a positive tick count"),
}

_SUMMARY: dict[str, tuple[Callable[[Any], bool], bool, str]] = {
    "ticks": (_int(0, MAX_TICK), True, "a tick"),
    "stop": (lambda v: isinstance(v, str) and v in STOP_NAMES, True,
             f"one of {', '.join(sorted(STOP_NAMES))}"),
    "exit_status": (_optional(_U32), False, "a 32-bit status or null"),
    "inputs": (_U64, False, "a count"),
    "device_events": (_U64, False, "a count"),
    "output_events": (_U64, False, "a count"),
    "checkpoints": (_U64, False, "a count"),
    "keyframes": (_U64, False, "a count"),
    "final_fingerprint": (_str(16, _HEX16), False, "16 hex digits"),
    "digest": (_str(64, _HEX64), False, "64 hex digits"),
    "reason": (_str(400), False, "a string"),
}

_IMAGE_HEAD: dict[str, tuple[Callable[[Any], bool], bool, str]] = {
    "name": (_str(255), True, "a string"),
    "sha256": (_str(64, _HEX64), True, "64 lowercase hex digits"),
    "size": (_int(1, MAX_IMAGE_BYTES), True, f"1 to {MAX_IMAGE_BYTES} bytes"),
    # A Linux guest's initial ramdisk.
    "initrd_sha256": (_str(64, _HEX64), False, "64 lowercase hex digits"),
    "initrd_size": (_int(1, MAX_IMAGE_BYTES), False, f"1 to {MAX_IMAGE_BYTES} bytes"),
}


def _check(obj: object, schema: dict[str, tuple[Callable[[Any], bool], bool, str]],
           what: str) -> dict:
    if not isinstance(obj, dict):
        raise TraceError(f"{what} is not an object")
    out = {}
    for key, (ok, required, desc) in schema.items():
        if key not in obj:
            if required:
                raise TraceError(f"{what} has no {key!r}")
            continue
        v = obj[key]
        if not ok(v):
            shown = repr(v) if isinstance(v, bool | int | float | type(None)) else \
                type(v).__name__
            if isinstance(v, int) and not isinstance(v, bool) and len(shown) > 24:
                shown = "a large integer"
            raise TraceError(f"{what}: {key!r} must be {desc} (got {shown})")
        out[key] = v
    return out


def check_machine(obj: object) -> dict:
    """The machine configuration (MachineConfig.to_dict) with every present field checked;
    unknown keys are an error (an older aero must not run a configuration it misreads)."""
    out = _check(obj, _MACHINE, "trace metadata 'machine'")
    extra = sorted(set(obj) - set(_MACHINE))  # type: ignore[arg-type]
    if extra:
        raise TraceError(f"trace metadata 'machine' has unknown keys: "
                         f"{', '.join(str(k)[:32] for k in extra[:5])}")
    return out


def check_guest(obj: object) -> dict:
    return _check(obj, _GUEST, "trace metadata 'guest'")


def check_metadata(meta: object) -> dict:
    """The header's metadata: every field aero uses, checked (others are ignored)."""
    out = _check(meta, _METADATA, "trace metadata")
    out["machine"] = check_machine(out["machine"])
    out["guest"] = check_guest(out["guest"])
    return out


def check_summary(obj: object) -> dict:
    return _check(obj, _SUMMARY, "trace summary")


def check_image_head(obj: object) -> dict:
    return _check(obj, _IMAGE_HEAD, "embedded image head")
