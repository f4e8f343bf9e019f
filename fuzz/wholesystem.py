"""Whole-system differential runs: a guest image in aero and in ``qemu-system-i386``, and
the first point where they part ways (``aero difftest GUEST --against qemu``).

Two comparisons, in this order:

* **Lockstep** (flat guests, while interrupts are disabled): QEMU is started stopped with
  its gdbstub, run to the guest's entry point (a breakpoint at the load address, after the
  boot ROM that copies the payload there), and then both execute one instruction at a
  time; after each, the general registers, EIP, EFLAGS (bits the instruction leaves
  undefined excepted, :func:`aero.fuzz.difftest.undefined_masks`, and aero's value given to
  QEMU so that they cannot resurface) and the six selectors are compared. Lockstep ends at
  the guest's exit, after ``max_steps`` instructions, or when EFLAGS.IF is set: from then
  on asynchronous interrupts arrive at points that differ between the two machines, and
  the comparison falls back to the next one. Memory is not compared in lockstep.
* **Output and exit status** of full runs (the debug console and COM1; the exit status of
  the debug-exit port): the first differing byte of output, else a differing status.

Invariant: the report is ``identical`` only if no comparison found a difference; a
lockstep that could not run (a ROM or Multiboot guest) says so in ``lockstep``. QEMU
processes started here are gone when :func:`difftest_guest` returns.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .difftest import GPRS, SEGS, decode, undefined_masks

__all__ = ["DEFAULT_MAX_STEPS", "difftest_chunk", "difftest_guest", "lockstep"]

DEFAULT_MAX_STEPS = 5000
F_IF = 0x200
EFLAGS_DEFINED = 0x003F7FD7


def _aero_machine(guest: str):
    from aero.launch import resolve_guest, start_machine
    from aero.machine import MachineConfig

    ref, data = resolve_guest(guest)
    return ref, data, start_machine(MachineConfig(ram_size=32 << 20), ref, data)


def _aero_regs(m) -> dict[str, int]:  # noqa: ANN001 - aero.machine.Machine
    r = m.get_regs()
    out = {k: getattr(r, k) for k in GPRS + ("eip", "eflags")}
    out.update({s: getattr(r, s).selector for s in SEGS})
    return out


def _aero_run(guest: str, ticks: int = 2_000_000_000) -> tuple[bytes, int | None]:
    from aero.events import Channel, Kind
    from aero.machine import StopReason

    _ref, _data, m = _aero_machine(guest)
    out = bytearray()
    while True:
        stop = m.run(ticks)
        m.take_output()
        ev = m.take_events()
        shown = ev[(ev["kind"] == Kind.OUTPUT) & ((ev["a"] == Channel.DEBUGCON) |
                                                  (ev["a"] == Channel.COM1))]
        out += shown["b"].astype("u1").tobytes()
        if stop not in (StopReason.OUTPUT, StopReason.EVENTS):
            break
    return bytes(out), m.exit_status


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def lockstep(guest: str, max_steps: int = DEFAULT_MAX_STEPS, timeout: float = 10.0) -> dict:
    """Instruction-by-instruction comparison from the entry point (flat guests)."""
    from aero.machine import StopReason

    from .gdbremote import GdbClient, GdbError
    from .qemu import _spawn, _stage_guest, command
    from .qemu_cpu import _IDX, _OFFS

    ref, data, m = _aero_machine(guest)
    if ref.fmt != "flat":
        return {"lockstep": f"not run ({ref.fmt} guest: QEMU boots it through firmware)",
                "steps": 0, "divergence": None}
    with tempfile.TemporaryDirectory(prefix="aero-difftest-") as tmp:
        t = Path(tmp)
        (t / "guest.bin").write_bytes(data)
        firmware, kernel = _stage_guest(t, t / "guest.bin", "flat", ref.load_addr)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = command(firmware, kernel, t / "debugcon.txt",
                      extra=("-S", "-gdb", f"tcp:127.0.0.1:{port}"))
        # A UART at COM1 (its output discarded), as aero has one: without it the guest's
        # reads of its registers would differ.
        cmd = ["null" if i and cmd[i - 1] == "-serial" else a for i, a in enumerate(cmd)]
        with open(t / "out", "wb") as out, open(t / "err", "wb") as err:
            proc = _spawn(cmd, t, out, err)
        try:
            return _lockstep(m, proc, port, ref.load_addr, max_steps, timeout,
                             GdbClient, GdbError, _IDX, _OFFS, StopReason)
        finally:
            _end(proc)


def _lockstep(m, proc, port, entry, max_steps, timeout, GdbClient, GdbError, idx, offs,  # noqa: N803
              StopReason) -> dict:  # noqa: N803, ANN001
    deadline = time.monotonic() + timeout
    while True:
        try:
            gdb = GdbClient("127.0.0.1", port, timeout=timeout)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                return {"lockstep": "not run (QEMU did not open its gdbstub)", "steps": 0,
                        "divergence": None}
            time.sleep(0.02)
    try:
        gdb.ok(f"Z0,{entry:x},1")
        gdb.command("c", timeout)
        gdb.ok(f"z0,{entry:x},1")

        def qregs() -> tuple[bytearray, dict[str, int]]:
            blob = bytearray(gdb.read_registers())
            return blob, {k: int.from_bytes(blob[offs[idx[k]]:offs[idx[k]] + 4], "little")
                          for k in GPRS + ("eip", "eflags") + SEGS}

        steps = 0
        blob, q = qregs()
        a = _aero_regs(m)
        diff = _differences(a, q, 0, {})
        if diff:
            return {"lockstep": "diverged", "steps": 0, "divergence": {
                "kind": "registers", "eip": a["eip"], "step": 0, "registers": diff,
                "at": "entry"}}
        while steps < max_steps:
            if a["eflags"] & F_IF:
                return {"lockstep": "stopped: interrupts enabled", "steps": steps,
                        "divergence": None}
            r = m.get_regs()
            code32 = bool(r.cs.attr & 0x4000)
            lin = (r.cs.base + r.eip) & 0xFFFFFFFF
            info = decode(m.read(lin, 15), code32)
            bases = {s: getattr(r, s).base for s in SEGS}
            attrs = {s: getattr(r, s).attr for s in SEGS}
            masks = undefined_masks(info, a, bases.__getitem__, m.read, attrs.__getitem__)
            stop = m.step()
            steps += 1
            try:
                gdb.step(timeout)
            except GdbError:
                if proc.poll() is not None:
                    break  # QEMU exited (the guest wrote the debug-exit port)
                raise
            a = _aero_regs(m)
            blob, q = qregs()
            diff = _differences(a, q, masks.flags, masks.regs)
            if diff:
                return {"lockstep": "diverged", "steps": steps, "divergence": {
                    "kind": "registers", "eip": a["eip"], "step": steps,
                    "instruction": info.text(), "registers": diff}}
            if masks.flags or masks.regs:  # aero's undefined values, for QEMU too
                for k in ("eflags", *masks.regs):
                    i = idx[k]
                    blob[offs[i]:offs[i] + 4] = a[k].to_bytes(4, "little")
                gdb.write_registers(bytes(blob))
            if stop not in (StopReason.TICKS,):
                break
        state = "complete" if steps < max_steps else f"stopped after {max_steps} steps"
        return {"lockstep": state, "steps": steps, "divergence": None}
    except GdbError as exc:
        if proc.poll() is not None:
            return {"lockstep": "complete (QEMU exited)", "steps": 0, "divergence": None}
        return {"lockstep": f"not finished ({exc})", "steps": 0, "divergence": None}
    finally:
        gdb.close()


def _differences(a: dict[str, int], q: dict[str, int], flag_mask: int,
                 reg_masks: dict[str, int]) -> dict[str, dict[str, int]]:
    out = {}
    for k in GPRS + ("eip", "eflags") + SEGS:
        keep = 0xFFFF if k in SEGS else 0xFFFFFFFF
        if k == "eflags":
            keep = EFLAGS_DEFINED & ~flag_mask
        keep &= ~reg_masks.get(k, 0)
        if (a[k] ^ q[k]) & keep:
            out[k] = {"aero": a[k], "qemu": q[k]}
    return out


def difftest_guest(guest: str, max_steps: int = DEFAULT_MAX_STEPS,
                   timeout: float = 60.0) -> dict:
    """The report for one guest (see the module docstring)."""
    from aero.launch import resolve_guest

    from .qemu import run_qemu

    ref, data = resolve_guest(guest)
    report: dict = {"guest": guest, "format": ref.fmt}
    step = lockstep(guest, max_steps)
    report["lockstep"] = step["lockstep"]
    report["lockstep_steps"] = step["steps"]
    first = step["divergence"]
    aero_out, aero_status = _aero_run(guest)
    with tempfile.TemporaryDirectory(prefix="aero-difftest-") as tmp:
        path = Path(tmp) / "guest.bin"
        path.write_bytes(data)
        q = run_qemu(path, ref.fmt, load_addr=ref.load_addr, timeout=timeout)
    report["output"] = {"aero_bytes": len(aero_out), "qemu_bytes": len(q.output),
                        "qemu_timed_out": q.timed_out}
    report["exit_status"] = {"aero": aero_status, "qemu": q.exit_status}
    if first is None and aero_out != q.output:
        n = next((i for i, (x, y) in enumerate(zip(aero_out, q.output, strict=False))
                  if x != y),
                 min(len(aero_out), len(q.output)))
        line = aero_out[:n].count(b"\n") + 1
        first = {"kind": "output", "eip": None, "registers": {}, "offset": n, "line": line,
                 "aero": aero_out[n:n + 60].decode("latin-1"),
                 "qemu": q.output[n:n + 60].decode("latin-1")}
    if first is None and aero_status != q.exit_status:
        first = {"kind": "exit-status", "eip": None, "registers": {},
                 "aero": aero_status, "qemu": q.exit_status}
    report["identical"] = first is None
    report["first_divergence"] = first
    return report


def difftest_chunk(chunk, params: dict) -> dict:  # noqa: ANN001 - executor Chunk
    """Executor job: the guests of this chunk (``params['guests']``, by index)."""
    guests = params["guests"][chunk.start:chunk.start + chunk.count]
    return {"reports": [difftest_guest(g, int(params.get("max_steps", DEFAULT_MAX_STEPS)))
                        for g in guests]}
