"""The guest programs: assembled on demand from ``guests/`` with the system's binutils.

Invariants:

* A built image is a pure function of its sources (the guest file, every file of
  ``guests/include``, the linker script), the assembly-time symbols, and the versions of
  ``as``, ``ld`` and ``objcopy``. The cache key hashes all of them, so a stale image is never
  returned and an unchanged guest is never rebuilt.
* Images are written to a temporary directory and moved into the cache atomically, so
  concurrent builds (parallel test workers) never see a half-written file.
* The cache lives under ``$AERO_GUEST_CACHE`` when set, else ``$XDG_CACHE_HOME/aero/guests``
  (``~/.cache/aero/guests`` by default).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BENCH_GUESTS", "BUILD_TIMEOUT", "GUESTS", "GuestImage", "GuestSpec", "INCLUDE_DIR",
           "ROM_SIZE", "SOURCE_DIR", "SUPPORT_GUESTS", "TOOLS", "ToolchainError", "build",
           "build_all", "cache_dir", "tool_versions"]

SOURCE_DIR = Path(__file__).resolve().parent.parent / "guests"
INCLUDE_DIR = SOURCE_DIR / "include"
TOOLS = ("as", "ld", "objcopy", "nm")
BUILD_TIMEOUT = 60.0

ROM_SIZE = 0x10000


class ToolchainError(RuntimeError):
    """binutils are missing or failed to assemble or link a guest."""


@dataclass(frozen=True)
class GuestSpec:
    """How one guest is built and loaded.

    ``fmt`` is the loader format (``flat``, ``rom`` or ``multiboot``); ``origin`` the
    address the code is linked at (the load address of a flat binary, 0 for a ROM, whose
    offsets are relative to segment F000, and unused for Multiboot kernels, which are linked
    at 1 MB by their script).
    """

    name: str
    source: str
    fmt: str
    origin: int
    description: str
    defines: Mapping[str, int] = field(default_factory=dict)

    @property
    def script(self) -> str:
        return {"flat": "flat.ld", "rom": "rom.ld", "multiboot": "multiboot.ld"}[self.fmt]


@dataclass(frozen=True)
class GuestImage:
    """A built guest: the image to load, its format and load address, and its symbols."""

    name: str
    path: Path
    fmt: str
    load_addr: int
    symbols: Mapping[str, int]


def _spec(name: str, fmt: str, description: str, origin: int = 0x7C00,
          source: str | None = None) -> GuestSpec:
    return GuestSpec(name, source or f"{name}.s", fmt, 0 if fmt != "flat" else origin,
                     description)


GUESTS: dict[str, GuestSpec] = {s.name: s for s in (
    _spec("rom_hello", "rom", "64 KB ROM started at the reset vector: real-mode checks"),
    _spec("pmode", "flat", "real mode to flat 32-bit protected mode: LGDT, CR0.PE, far jump"),
    _spec("multiboot", "multiboot", "Multiboot v1 ELF kernel: boot state and memory map"),
    _spec("cpu_alu", "flat", "ALU results and flags, BCD adjustment, SETcc and CMOVcc"),
    _spec("cpu_muldiv", "flat", "MUL/IMUL/DIV/IDIV, #DE through the IVT and through the IDT"),
    _spec("cpu_shift", "flat", "shifts and rotates (SHLD/SHRD/RCL/RCR), BT*/BSF/BSR"),
    _spec("cpu_string", "flat", "string instructions, REP prefixes, segment overrides"),
    _spec("cpu_stack", "flat", "PUSH/POP forms, PUSHA/POPA, ENTER/LEAVE, far calls"),
    _spec("cpu_misc", "flat", "CMPXCHG/CMPXCHG8B/XADD/BSWAP, CPUID, EFLAGS.ID"),
    _spec("cpu_fpu", "flat", "the x87: rounding modes and precisions, every load/store format, "
          "compares, FPREM, constants, masked exceptions, FSAVE/FRSTOR"),
    _spec("sys_rings", "flat", "ring 3 by IRET, call gate with parameters, interrupt gate, #GP"),
    _spec("sys_tasks", "flat", "task switches: JMP, CALL via a task gate, IRET, IDT task gates"),
    _spec("sys_v86", "flat", "virtual-8086 mode: IRET and task-switch entry, INT n, I/O bitmap"),
    _spec("sys_exceptions", "flat", "exception vectors, error codes, saved EIP, #DF, #AC, "
          "single step, instruction/data/I/O breakpoints"),
    _spec("sys_paging", "flat", "4 KB/4 MB pages, A/D bits, #PF codes and CR2, U/S, R/W, WP, "
          "INVLPG, MOV CR3, global pages"),
    _spec("demo", "flat", "interactive shell on COM1 and the keyboard; PIT, RTC and PIC "
          "interrupts (recorded and replayed by `aero demo`)"),
    _spec("stats", "flat", "numbers on COM1, n/sum/mean on an empty line; divides by zero "
          "when no number came first (a bug for `aero fuzz inputs` to find)"),
)}

BENCH_GUESTS: dict[str, GuestSpec] = {s.name: s for s in (
    _spec("bench_alu", "multiboot", "register ALU loop"),
    _spec("bench_memcpy", "multiboot", "MOV load/store copy loop"),
    _spec("bench_string", "multiboot", "REP MOVSD/STOSD, LODSB and SCASB loops"),
    _spec("bench_fib", "multiboot", "recursive Fibonacci: CALL/RET/PUSH/POP"),
    _spec("bench_syscall", "multiboot", "paging on; CPL 3 INT 0x80 through a DPL-3 gate to a "
          "ring-0 handler and IRET back"),
)}


SUPPORT_GUESTS: dict[str, GuestSpec] = {s.name: s for s in (
    _spec("flatboot", "rom", "ROM stub that copies a flat binary to its load address (QEMU)"),
    _spec("flood", "flat", "writes to the debug console for ever (recorder and replay stress)"),
    _spec("reset_loop", "rom", "resets itself through the 8042 for ever (replay stress)"),
)}


def cache_dir() -> Path:
    """Where built images are kept (see the module docstring)."""
    env = os.environ.get("AERO_GUEST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aero" / "guests"


@functools.lru_cache(maxsize=1)
def tool_versions() -> str:
    """The first version line of each binutils tool; raises ToolchainError when one is missing."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise ToolchainError(
            f"cannot build guests: {', '.join(missing)} not found on PATH "
            f"(install GNU binutils, e.g. `apt-get install binutils`)")
    lines = []
    for tool in TOOLS:
        proc = subprocess.run([tool, "--version"], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT, check=False)
        lines.append(proc.stdout.splitlines()[0] if proc.stdout else tool)
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def _ld_flags() -> tuple[str, ...]:
    """Linker flags: silence the RWX-segment note of binutils >= 2.39 where it exists."""
    proc = subprocess.run(["ld", "--help"], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, check=False)
    flags = ["-m", "elf_i386", "--build-id=none", "-nostdlib"]
    if "--no-warn-rwx-segments" in proc.stdout:
        flags.append("--no-warn-rwx-segments")
    return tuple(flags)


def _cache_key(spec: GuestSpec, defines: Mapping[str, int]) -> str:
    h = hashlib.sha256()
    h.update(tool_versions().encode())
    h.update(json.dumps([spec.name, spec.fmt, spec.origin, sorted(defines.items())]).encode())
    files = [SOURCE_DIR / spec.source, SOURCE_DIR / spec.script]
    files += sorted(INCLUDE_DIR.glob("*")) if INCLUDE_DIR.is_dir() else []
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


def _run(cmd: list[str], what: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{what}: {cmd[0]} timed out") from exc
    if proc.returncode != 0:
        raise ToolchainError(f"{what}: {cmd[0]} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def _symbols(elf: Path, what: str) -> dict[str, int]:
    out = _run(["nm", str(elf)], what)
    syms: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and not parts[2].startswith(".L"):
            syms[parts[2]] = int(parts[0], 16)
    return syms


def _lookup(name: str) -> GuestSpec:
    spec = GUESTS.get(name) or BENCH_GUESTS.get(name) or SUPPORT_GUESTS.get(name)
    if spec is None:
        known = ", ".join([*GUESTS, *BENCH_GUESTS, *SUPPORT_GUESTS])
        raise KeyError(f"unknown guest {name!r}; known guests: {known}")
    return spec


def build(name: str, defines: Mapping[str, int] | None = None,
          cache: Path | None = None) -> GuestImage:
    """Build guest ``name`` (with assembly-time symbols ``defines``) unless cached.

    Returns the image; raises ToolchainError when binutils are missing or fail, KeyError
    for an unknown guest name.
    """
    spec = _lookup(name)
    if not (SOURCE_DIR / spec.source).is_file():
        raise ToolchainError(f"guest {name}: source {SOURCE_DIR / spec.source} not found "
                             f"(guests are built from the source tree's guests/ folder)")
    defs = dict(spec.defines)
    defs.update(defines or {})
    key = _cache_key(spec, defs)
    root = cache or cache_dir()
    suffix = {"flat": ".bin", "rom": ".rom", "multiboot": ".elf"}[spec.fmt]
    target = root / f"{name}-{key}{suffix}"
    symfile = root / f"{name}-{key}.sym.json"
    load_addr = spec.origin if spec.fmt == "flat" else 0
    if target.exists() and symfile.exists():
        syms = json.loads(symfile.read_text())
        return GuestImage(name, target, spec.fmt, load_addr, syms)
    root.mkdir(parents=True, exist_ok=True)
    what = f"guest {name}"
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        t = Path(tmp)
        obj, elf = t / "guest.o", t / "guest.elf"
        cmd = ["as", "--32", "--noexecstack", "--fatal-warnings", "-I", str(INCLUDE_DIR),
               "-o", str(obj)]
        for sym, val in sorted(defs.items()):
            cmd += ["--defsym", f"{sym}={val}"]
        _run([*cmd, str(SOURCE_DIR / spec.source)], what)
        link = ["ld", *_ld_flags(), "-T", str(SOURCE_DIR / spec.script), "-o", str(elf)]
        if spec.fmt == "flat":
            link += ["--defsym", f"GUEST_BASE={spec.origin:#x}"]
        _run([*link, str(obj)], what)
        syms = _symbols(elf, what)
        out = t / f"image{suffix}"
        if spec.fmt == "multiboot":
            shutil.copyfile(elf, out)
        else:
            _run(["objcopy", "-O", "binary", str(elf), str(out)], what)
            size = out.stat().st_size
            if spec.fmt == "rom" and size != ROM_SIZE:
                raise ToolchainError(f"{what}: ROM image is {size} bytes, not {ROM_SIZE}")
            if spec.fmt == "flat" and spec.origin + size > 0x10000:
                raise ToolchainError(f"{what}: flat image of {size} bytes at "
                                     f"{spec.origin:#x} does not fit below 64 KB")
        tmp_sym = t / "sym.json"
        tmp_sym.write_text(json.dumps(syms, sort_keys=True))
        os.replace(tmp_sym, symfile)
        os.replace(out, target)
    return GuestImage(name, target, spec.fmt, load_addr, syms)


def build_all(cache: Path | None = None) -> dict[str, GuestImage]:
    """Build every guest of :data:`GUESTS` (not the benchmark workloads)."""
    return {name: build(name, cache=cache) for name in GUESTS}
