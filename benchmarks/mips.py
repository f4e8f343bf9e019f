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
* Every figure is the best (shortest time) of ``repetitions`` runs; aero's median is also
  reported. Timing uses ``time.perf_counter``.
* ``syscall`` runs with paging on and enters ring 0 through an IDT gate once per iteration;
  it also reports system calls per second (ITERS per second of the loop). Unicorn does not
  deliver interrupts through the IDT (its interrupt hook only reports the vector), so it
  cannot run this workload: its figures are shown as not applicable.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from aero.bench.workloads import RAM_SIZE, bench_image, instruction_model, run_on_aero

from aero.guests import BENCH_GUESTS, GuestImage

__all__ = ["ALU_TARGET_MIPS", "FULL", "QUICK", "Result", "Settings", "UNICORN_NO_IDT", "WORKLOADS",
           "Workload", "bench_workload", "method", "print_table", "qemu_seconds", "run",
           "unicorn_run"]

ALU_TARGET_MIPS = 150


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


WORKLOADS = (
    Workload("alu", "bench_alu", BENCH_GUESTS["bench_alu"].description),
    Workload("memcpy", "bench_memcpy", BENCH_GUESTS["bench_memcpy"].description),
    Workload("string", "bench_string", BENCH_GUESTS["bench_string"].description),
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


FULL = Settings(target=200_000_000, qemu_target=2_000_000_000, repetitions=3)
QUICK = Settings(target=5_000_000, qemu_target=200_000_000, repetitions=1)


@dataclass
class Result:
    """One workload's figures; None where a reference was skipped or unavailable."""

    name: str
    description: str
    iters: int
    instructions: int
    seconds: float
    mips: float
    mips_median: float
    unicorn_mips: float | None = None
    unicorn_match: bool | None = None
    qemu_iters: int | None = None
    qemu_instructions: int | None = None
    qemu_mips: float | None = None
    aero_unicorn_ratio: float | None = None
    aero_qemu_ratio: float | None = None
    syscalls_per_second: float | None = None  # aero, for the syscall workload
    qemu_syscalls_per_second: float | None = None
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


def qemu_seconds(image: GuestImage, reps: int) -> float:
    """Best wall time of whole QEMU runs of the kernel ``image``."""
    from aero.fuzz.qemu import run_qemu

    best = float("inf")
    for _ in range(reps):
        res = run_qemu(image.path, "multiboot", timeout=600.0)
        if res.exit_status != 1:
            raise RuntimeError(f"{image.name}: QEMU ended with status {res.exit_status} "
                               f"(timed out: {res.timed_out})")
        best = min(best, res.elapsed)
    return best


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def bench_workload(w: Workload, s: Settings, reference: bool,
                   log: Callable[[str], None] = lambda _m: None) -> Result:
    """Measure one workload (see the module docstring for the method)."""
    a, b = instruction_model(w.guest)
    iters = max(2, (s.target - a) // b)
    image = bench_image(w.guest, iters)
    log(f"{w.name}: aero, {a + b * iters:,} instructions x {s.repetitions}")
    times, ticks, regs = [], 0, []
    for _ in range(s.repetitions):
        ticks, sec, regs = run_on_aero(image)
        times.append(sec)
    if ticks != a + b * iters:
        raise RuntimeError(f"{w.guest}: {ticks} ticks, the model predicts {a + b * iters}")
    best = min(times)
    res = Result(w.name, w.description, iters, ticks, best, ticks / best / 1e6,
                 ticks / statistics.median(times) / 1e6, unicorn_na=w.unicorn_na)
    if w.syscalls:
        res.syscalls_per_second = iters / best
    if not reference:
        return res
    notes = []
    if w.unicorn_na is None:
        try:
            log(f"{w.name}: unicorn")
            runs = [unicorn_run(image) for _ in range(s.repetitions)]
            res.unicorn_mips = (ticks - 1) / min(r[0] for r in runs) / 1e6
            res.unicorn_match = all(r[1][:4] + r[1][5:] == regs[:4] + regs[5:] for r in runs)
        except ImportError:
            notes.append("unicorn is not installed")
    from aero.fuzz.qemu import qemu_binary

    if qemu_binary() is None:
        notes.append("qemu-system-i386 is not installed")
    else:
        q_iters = max(iters, (int(s.qemu_target * w.qemu_scale) - a) // b)
        log(f"{w.name}: qemu, {a + b * q_iters:,} instructions x {s.repetitions}")
        base = qemu_seconds(bench_image(w.guest, 1), s.repetitions)
        full = qemu_seconds(bench_image(w.guest, q_iters), s.repetitions)
        res.qemu_iters = q_iters
        res.qemu_instructions = a + b * q_iters
        if full > base:
            res.qemu_mips = b * (q_iters - 1) / (full - base) / 1e6
            if w.syscalls:
                res.qemu_syscalls_per_second = (q_iters - 1) / (full - base)
        else:
            notes.append("QEMU loop time below start-up noise")
    res.aero_unicorn_ratio = _ratio(res.mips, res.unicorn_mips)
    res.aero_qemu_ratio = _ratio(res.mips, res.qemu_mips)
    res.note = "; ".join(notes)
    return res


def method() -> dict[str, str]:
    return {
        "instructions": "aero guest-clock ticks (one per instruction, one per REP iteration); "
                        "exact for any ITERS from T(n) = a + b*n measured on aero",
        "aero": "ticks / seconds of Machine.run, best of the repetitions (median also given)",
        "unicorn": "(ticks - 1) / seconds of emu_start from the entry to the final OUT, best",
        "qemu": "whole qemu-system-i386 runs (-kernel, TCG) with ITERS = N and ITERS = 1; "
                "(T(N) - T(1)) / (t(N) - t(1)), best of the repetitions",
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


def print_table(report: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(110, Console().width))
    table = Table(title="aero bench: guest MIPS (best of "
                        f"{report['settings']['repetitions']})")  # type: ignore[index]
    for col in ("workload", "instructions", "aero MIPS", "Unicorn MIPS", "QEMU MIPS",
                "aero/Unicorn", "aero/QEMU"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    for r in report["workloads"]:  # type: ignore[attr-defined]
        na = r.get("unicorn_na") is not None
        table.add_row(r["name"], f"{r['instructions']:,}", _fmt(r["mips"]),
                      "n/a" if na else _fmt(r["unicorn_mips"]), _fmt(r["qemu_mips"]),
                      "n/a" if na else _fmt(r["aero_unicorn_ratio"], 2),
                      _fmt(r["aero_qemu_ratio"], 2))
    console.print(table)
    for r in report["workloads"]:  # type: ignore[attr-defined]
        if r.get("syscalls_per_second") is not None:
            console.print(f"{r['name']}: system calls per second: aero "
                          f"{r['syscalls_per_second']:,.0f}, QEMU "
                          f"{_fmt(r.get('qemu_syscalls_per_second'), 0)}")
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
