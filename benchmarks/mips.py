"""``aero bench``: guest MIPS of aero, side by side with Unicorn and QEMU on the same code.

Method (also printed with ``--json`` under ``"method"``):

* Workloads are the Multiboot kernels ``guests/bench_*.s``: a loop run ITERS times in flat
  32-bit protected mode, then an OUT to the debug-exit port. ITERS is an assembly-time
  symbol, so each run is one deterministic instruction stream.
* Instruction counts come from aero's guest clock (one tick per retired instruction, one per
  REP iteration). The count is affine in ITERS: ``T(n) = a + b*n``; ``a`` and ``b`` are
  measured with ITERS = 1 and 2 and checked at 3, which gives the exact count of any run.
* aero: the time of ``Machine.run`` alone (the load is excluded); MIPS = ticks / seconds.
* Unicorn: the same image in the same process, ``emu_start`` from the entry point to the
  final OUT (``bench_exit``), so it executes every instruction but that OUT: ticks - 1. The
  general registers at the end are compared with aero's, a check that both ran the same
  computation.
* QEMU (qemu-system-i386, TCG): a whole QEMU process runs the kernel (``-kernel``, so its
  firmware boots it). Start-up and firmware time are removed by also timing a run with
  ITERS = 1: MIPS = (T(N) - T(1)) / (t(N) - t(1)). QEMU gets a larger N than aero so that the
  loop dominates its run time.
* Repetitions are interleaved: each one runs aero, then Unicorn, then QEMU, so the three
  see the same machine conditions. Every figure is the median of the repetitions, with its
  spread; a ratio is the median of the per-repetition ratios. A spread above 10 % marks the
  figure untrusted (:mod:`aero.bench.stats`). Timing uses ``time.perf_counter``.
* ``memcpy`` and ``string`` also report bytes stored per second: most of ``string``'s ticks
  are REP iterations (one tick each), so its MIPS alone would overstate the work.
* ``syscall`` runs with paging on and enters ring 0 through an IDT gate once per iteration;
  it also reports system calls per second (ITERS per second of the loop). Unicorn does not
  deliver interrupts through the IDT (its interrupt hook only reports the vector), so it
  cannot run this workload: its figures are shown as not applicable.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from aero.bench import stats
from aero.bench.workloads import RAM_SIZE, bench_image, instruction_model, run_on_aero

from aero.guests import BENCH_GUESTS, GuestImage

__all__ = ["ALU_TARGET_MIPS", "FULL", "QUICK", "Result", "Settings", "UNICORN_NO_IDT", "WORKLOADS",
           "Workload", "bench_workload", "method", "print_table", "qemu_seconds", "run",
           "unicorn_run"]

ALU_TARGET_MIPS = 300

# Bytes stored per loop iteration, read off the guest sources: bench_string.s stores 16 KB
# with REP STOSD (ECX = 4096 dwords) and copies 16 KB with REP MOVSD (LODSB and SCASB only
# read); bench_memcpy.s copies 2048 x 8 bytes.
STRING_BYTES = 4096 * 4 + 4096 * 4
MEMCPY_BYTES = 2048 * 8


UNICORN_NO_IDT = ("Unicorn does not deliver interrupts or exceptions through the IDT (its "
                  "interrupt hook only reports the vector): INT 0x80 cannot reach the ring-0 "
                  "handler")


@dataclass(frozen=True)
class Workload:
    name: str
    guest: str
    description: str
    unicorn_na: str | None = None  # why Unicorn cannot run it, when it cannot
    syscalls: bool = False  # one system call per iteration: report calls per second
    # QEMU's run size relative to Settings.qemu_target: QEMU delivers interrupts through
    # its slow path, so the syscall loop gets fewer instructions to stay within a minute.
    qemu_scale: float = 1.0
    bytes_per_iter: int = 0  # bytes the loop stores per iteration (0: not a copying workload)


WORKLOADS = (
    Workload("alu", "bench_alu", BENCH_GUESTS["bench_alu"].description),
    Workload("memcpy", "bench_memcpy", BENCH_GUESTS["bench_memcpy"].description,
             bytes_per_iter=MEMCPY_BYTES),
    # Most of this workload's ticks are REP iterations (one tick each): bytes per second says
    # what the instruction count alone does not.
    Workload("string", "bench_string", BENCH_GUESTS["bench_string"].description,
             bytes_per_iter=STRING_BYTES),
    Workload("fib", "bench_fib", BENCH_GUESTS["bench_fib"].description),
    Workload("syscall", "bench_syscall", BENCH_GUESTS["bench_syscall"].description,
             unicorn_na=UNICORN_NO_IDT, syscalls=True, qemu_scale=0.05),
)


@dataclass(frozen=True)
class Settings:
    """Run sizes: aero and Unicorn run about ``target`` instructions, QEMU ``qemu_target``."""

    target: int
    qemu_target: int
    repetitions: int


FULL = Settings(target=200_000_000, qemu_target=2_000_000_000, repetitions=5)
QUICK = Settings(target=5_000_000, qemu_target=200_000_000, repetitions=1)


@dataclass
class Result:
    """One workload's figures; None where a reference was skipped or unavailable. Times are
    medians of the interleaved repetitions; each ``*_timing`` / ratio dict also carries the
    spread and whether it is trusted (:mod:`aero.bench.stats`)."""

    name: str
    description: str
    iters: int
    instructions: int
    seconds: float  # median
    mips: float  # instructions / median seconds
    aero_timing: dict = field(default_factory=dict)
    unicorn_mips: float | None = None
    unicorn_match: bool | None = None
    unicorn_timing: dict | None = None
    qemu_iters: int | None = None
    qemu_instructions: int | None = None
    qemu_mips: float | None = None
    qemu_timing: dict | None = None  # of the loop time t(N) - t(1)
    aero_unicorn_ratio: float | None = None
    aero_unicorn: dict | None = None  # the per-pair ratio of MIPS, with its spread
    aero_qemu_ratio: float | None = None
    aero_qemu: dict | None = None
    syscalls_per_second: float | None = None  # aero, for the syscall workload
    qemu_syscalls_per_second: float | None = None
    bytes_per_second: float | None = None  # aero, for workloads that move bytes
    qemu_bytes_per_second: float | None = None
    unicorn_na: str | None = None  # why Unicorn has no figure (not applicable)
    note: str = ""


def unicorn_run(image: GuestImage) -> tuple[float, list[int]]:
    """(seconds of emu_start, final general registers) running ``image`` in Unicorn."""
    from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
    from unicorn import x86_const as x

    from aero.loader import INFO_ADDR, MB_BOOT_MAGIC, parse_elf

    data = image.path.read_bytes()
    entry, segs = parse_elf(data, image.path.name)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, RAM_SIZE)
    for s in segs:
        uc.mem_write(s.paddr, data[s.offset:s.offset + s.filesz] + bytes(s.memsz - s.filesz))
    uc.reg_write(x.UC_X86_REG_EAX, MB_BOOT_MAGIC)
    uc.reg_write(x.UC_X86_REG_EBX, INFO_ADDR)
    uc.reg_write(x.UC_X86_REG_ESP, 0x7000)
    start = time.perf_counter()
    uc.emu_start(entry, image.symbols["bench_exit"])
    seconds = time.perf_counter() - start
    order = (x.UC_X86_REG_EAX, x.UC_X86_REG_ECX, x.UC_X86_REG_EDX, x.UC_X86_REG_EBX,
             x.UC_X86_REG_ESP, x.UC_X86_REG_EBP, x.UC_X86_REG_ESI, x.UC_X86_REG_EDI)
    return seconds, [int(uc.reg_read(r)) for r in order]


def qemu_seconds(image: GuestImage) -> float:
    """Wall time of one whole QEMU run of the kernel ``image``."""
    from aero.fuzz.qemu import run_qemu

    res = run_qemu(image.path, "multiboot", timeout=600.0)
    if res.exit_status != 1:
        raise RuntimeError(f"{image.name}: QEMU ended with status {res.exit_status} "
                           f"(timed out: {res.timed_out})")
    return res.elapsed


def bench_workload(w: Workload, s: Settings, reference: bool,
                   log: Callable[[str], None] = lambda _m: None) -> Result:
    """Measure one workload (see the module docstring for the method): aero, Unicorn and
    QEMU run in turn within each repetition, so every ratio compares back-to-back runs."""
    a, b = instruction_model(w.guest)
    iters = max(2, (s.target - a) // b)
    image = bench_image(w.guest, iters)
    ticks = a + b * iters
    notes: list[str] = []
    use_unicorn = reference and w.unicorn_na is None
    if use_unicorn:
        try:
            import unicorn  # noqa: F401
        except ImportError:
            use_unicorn = False
            notes.append("unicorn is not installed")
    use_qemu = False
    q_iters = iters
    if reference:
        from aero.fuzz.qemu import qemu_binary

        use_qemu = qemu_binary() is not None
        if not use_qemu:
            notes.append("qemu-system-i386 is not installed")
        q_iters = max(iters, (int(s.qemu_target * w.qemu_scale) - a) // b)
    base_image = bench_image(w.guest, 1) if use_qemu else None
    full_image = bench_image(w.guest, q_iters) if use_qemu else None
    aero_t: list[float] = []
    uc_t: list[float] = []
    q_loop: list[float] = []
    matches: list[bool] = []
    for rep in range(s.repetitions):
        log(f"{w.name}: repetition {rep + 1}/{s.repetitions}: aero ({ticks:,} instructions)")
        got, sec, regs = run_on_aero(image)
        if got != ticks:
            raise RuntimeError(f"{w.guest}: {got} ticks, the model predicts {ticks}")
        aero_t.append(sec)
        if use_unicorn:
            log(f"{w.name}: repetition {rep + 1}/{s.repetitions}: unicorn")
            usec, uregs = unicorn_run(image)
            uc_t.append(usec)
            matches.append(uregs[:4] + uregs[5:] == regs[:4] + regs[5:])
        if use_qemu:
            assert base_image is not None and full_image is not None
            log(f"{w.name}: repetition {rep + 1}/{s.repetitions}: qemu "
                f"({a + b * q_iters:,} instructions)")
            q_loop.append(qemu_seconds(full_image) - qemu_seconds(base_image))
    timing = stats.sample(aero_t)
    res = Result(w.name, w.description, iters, ticks, timing.median, ticks / timing.median / 1e6,
                 aero_timing=timing.to_dict(), unicorn_na=w.unicorn_na)
    if w.syscalls:
        res.syscalls_per_second = iters / timing.median
    if w.bytes_per_iter:
        res.bytes_per_second = w.bytes_per_iter * iters / timing.median
    aero_mips = [ticks / t / 1e6 for t in aero_t]
    if uc_t:
        ut = stats.sample(uc_t)
        res.unicorn_timing = ut.to_dict()
        res.unicorn_mips = (ticks - 1) / ut.median / 1e6
        res.unicorn_match = all(matches)
        r = stats.ratio(aero_mips, [(ticks - 1) / t / 1e6 for t in uc_t])
        res.aero_unicorn, res.aero_unicorn_ratio = r.to_dict(), r.median
    if q_loop:
        if min(q_loop) <= 0:
            notes.append("QEMU loop time below start-up noise")
        else:
            qt = stats.sample(q_loop)
            loop_instr = b * (q_iters - 1)
            res.qemu_iters, res.qemu_instructions = q_iters, a + b * q_iters
            res.qemu_timing = qt.to_dict()
            res.qemu_mips = loop_instr / qt.median / 1e6
            if w.syscalls:
                res.qemu_syscalls_per_second = (q_iters - 1) / qt.median
            if w.bytes_per_iter:
                res.qemu_bytes_per_second = w.bytes_per_iter * (q_iters - 1) / qt.median
            r = stats.ratio(aero_mips, [loop_instr / t / 1e6 for t in q_loop])
            res.aero_qemu, res.aero_qemu_ratio = r.to_dict(), r.median
    res.note = "; ".join(notes)
    return res


def method() -> dict[str, str]:
    return {
        "instructions": "aero guest-clock ticks (one per instruction, one per REP iteration); "
                        "exact for any ITERS from T(n) = a + b*n measured on aero",
        "aero": "ticks / seconds of Machine.run, median of the repetitions",
        "unicorn": "(ticks - 1) / seconds of emu_start from the entry to the final OUT, median",
        "qemu": "whole qemu-system-i386 runs (-kernel, TCG) with ITERS = N and ITERS = 1; "
                "(T(N) - T(1)) / median of (t(N) - t(1))",
        "interleaving": "each repetition runs aero, then Unicorn, then QEMU (A B C A B C ...); "
                        "a ratio is the median of the per-repetition ratios; a figure whose "
                        "spread (max - min) / median exceeds 10 % is marked untrusted",
        "bytes": "bytes moved per second, for workloads that move bytes: bytes per "
                 "iteration (from the guest source) x iterations / loop seconds",
        "syscalls": "system calls per second: ITERS / seconds (aero), "
                    "(N - 1) / (t(N) - t(1)) (QEMU); one INT 0x80 and IRET per iteration",
    }


def run(settings: Settings, reference: bool,
        log: Callable[[str], None] = lambda _m: None) -> dict[str, object]:
    """Run every workload; returns the JSON-ready report."""
    results = [bench_workload(w, settings, reference, log) for w in WORKLOADS]
    return {
        "workloads": [asdict(r) for r in results],
        "settings": asdict(settings),
        "method": method(),
        "alu_target_mips": ALU_TARGET_MIPS,
        "host": {"machine": platform.machine(), "python": platform.python_version(),
                 "cpus": os.cpu_count()},
    }


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _spread(d: dict | None) -> str:
    """' ±x %' and a mark when the figure is not trusted."""
    if not d:
        return ""
    mark = "" if d["trusted"] else " [yellow](noisy)[/yellow]"
    return f" ±{d['spread_percent'] / 2:.1f}%{mark}"


def _ratio_cell(value: float | None, d: dict | None) -> str:
    return "-" if value is None else f"{value:.2f}{_spread(d)}"


def print_table(report: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    reps = report["settings"]["repetitions"]  # type: ignore[index]
    table = Table(title=f"aero bench: guest MIPS (median of {reps} interleaved repetitions)")
    for col in ("workload", "instructions", "aero MIPS", "Unicorn MIPS", "QEMU MIPS",
                "aero/Unicorn", "aero/QEMU"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    for r in report["workloads"]:  # type: ignore[attr-defined]
        na = r.get("unicorn_na") is not None
        table.add_row(r["name"], f"{r['instructions']:,}",
                      _fmt(r["mips"]) + _spread(r.get("aero_timing")),
                      "n/a" if na else _fmt(r["unicorn_mips"]), _fmt(r["qemu_mips"]),
                      "n/a" if na else _ratio_cell(r["aero_unicorn_ratio"], r["aero_unicorn"]),
                      _ratio_cell(r["aero_qemu_ratio"], r["aero_qemu"]))
    console.print(table)
    for r in report["workloads"]:  # type: ignore[attr-defined]
        if r.get("syscalls_per_second") is not None:
            console.print(f"{r['name']}: system calls per second: aero "
                          f"{r['syscalls_per_second']:,.0f}, QEMU "
                          f"{_fmt(r.get('qemu_syscalls_per_second'), 0)}")
        if r.get("bytes_per_second") is not None:
            q = r.get("qemu_bytes_per_second")
            console.print(f"{r['name']}: bytes stored per second: aero "
                          f"{r['bytes_per_second'] / 1e6:,.0f} MB/s, QEMU "
                          f"{'-' if q is None else f'{q / 1e6:,.0f} MB/s'}")
        if r.get("unicorn_na"):
            console.print(f"{r['name']}: Unicorn n/a: {r['unicorn_na']}")
        if r["note"]:
            console.print(f"{r['name']}: {r['note']}")
        if r["unicorn_match"] is False:
            console.print(f"[red]{r['name']}: Unicorn ended with different registers[/red]")
    alu = next(r for r in report["workloads"] if r["name"] == "alu")  # type: ignore[attr-defined]
    console.print(f"ALU loop: {alu['mips']:.1f} MIPS (target {ALU_TARGET_MIPS})")
    for key, text in report["method"].items():  # type: ignore[attr-defined]
        console.print(f"[dim]{key}: {text}[/dim]")
