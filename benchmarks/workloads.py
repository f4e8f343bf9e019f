"""The benchmark guests as workloads: building one for an iteration count, running it on aero,
and the exact instruction count of a run (shared by :mod:`aero.bench.mips` and
:mod:`aero.bench.recordreplay`).
"""

from __future__ import annotations

import time

from aero.guests import GuestImage, build

__all__ = ["RAM_SIZE", "bench_image", "instruction_model", "run_on_aero"]

RAM_SIZE = 32 << 20


def bench_image(guest: str, iters: int) -> GuestImage:
    return build(guest, {"ITERS": iters})


def run_on_aero(image: GuestImage) -> tuple[int, float, list[int]]:
    """(ticks, seconds of Machine.run, final general registers) of one aero run."""
    from aero.loader import load_guest
    from aero.machine import Machine, MachineConfig, StopReason

    m = Machine(MachineConfig(ram_size=RAM_SIZE))
    load_guest(m, image.path, fmt="multiboot")
    start = time.perf_counter()
    stop = m.run(1 << 62)
    while stop in (StopReason.EVENTS, StopReason.OUTPUT):  # drained only if the guest logs much
        m.take_events()
        m.take_output()
        stop = m.run(1 << 62)
    seconds = time.perf_counter() - start
    if stop != StopReason.EXIT or m.exit_status != 1:
        raise RuntimeError(f"{image.name}: aero stopped with {stop.name}, exit status "
                           f"{m.exit_status} (expected a debug-exit with status 1)")
    return m.ticks, seconds, m.get_regs().gpr()


def instruction_model(guest: str) -> tuple[int, int]:
    """(a, b) with T(ITERS) = a + b*ITERS ticks, measured and checked on aero."""
    t1, t2, t3 = (run_on_aero(bench_image(guest, n))[0] for n in (1, 2, 3))
    b = t2 - t1
    a = t1 - b
    if t3 != a + 3 * b or b <= 0:
        raise RuntimeError(f"{guest}: instruction count is not affine in ITERS "
                           f"({t1}, {t2}, {t3})")
    return a, b
