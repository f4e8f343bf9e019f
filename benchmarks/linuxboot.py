"""``aero bench --linux``: the bundled Linux guest booted to the ``aero-init: ready`` marker
of its /init, in aero and in ``qemu-system-i386`` (TCG) on the same kernel, initramfs,
command line and RAM size; then the record/replay figures of that boot and of the shipped
session (``guests/linux.script``).

Method (also in the JSON report under ``"method"``):

* aero: :class:`aero.machine.Machine` runs in slices of 20 million ticks until COM1 has
  shown the marker; the marker's tick is the tick of its last byte (an output event). The
  wall time is the time of those ``Machine.run`` calls (loading excluded).
* QEMU: ``qemu-system-i386 -M pc -cpu pentium2,-apic -m RAM -kernel -initrd -append
  -nographic -no-reboot`` (serial on stdout), timed from the start of the process until the
  marker shows on its output (its firmware included: SeaBIOS and the kernel loader take a
  fraction of a second); then it is stopped (own process group, SIGTERM, then SIGKILL).
* HLT time: a second aero run, in slices of ``IDLE_SLICE`` ticks, that looks at the CPU
  between slices. When it is halted, it runs to the next device deadline in one call (no
  input comes during a boot, so nothing else can wake it) and counts those ticks as
  skipped. The figure is a lower bound: the part of a halt before the first slice boundary
  it spans is counted as executed (less than one slice per halt), and a halt shorter than
  a slice may fall between two boundaries and not be seen at all. ``halts`` counts the
  halts seen. Instructions executed = ticks - skipped ticks (each delivered interrupt is
  one tick as well).
* Traces: the boot recorded to the marker's tick, and the whole session recorded with
  ``guests/linux.script``, both with the shipped session's options (RAM ``RAM``, one keyframe
  at tick 0, a checkpoint every 10 million ticks, RTC at ``RTC``); the boot trace is
  replayed (verified) for the replay speed. The session's HLT time is counted as the boot's,
  on a third run that injects the session trace's inputs at their ticks.

One repetition: each figure takes a whole boot (about 3 billion ticks); the run takes
several minutes, which is why the default ``aero bench`` does not include it.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from aero.traces.container import open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, load_contents
from aero.traces.script import ScriptRunner, load

from aero import guests
from aero import linuxguest as lg
from aero.events import Channel, Kind
from aero.launch import LINUX_GUEST, ResolvedGuest, resolve, start_machine, store_image
from aero.machine import Machine, MachineConfig, StopReason
from aero.procgroup import stop_group

__all__ = ["IDLE_SLICE", "QEMU", "RAM", "RTC", "SESSION_KEYFRAME_INTERVAL", "boot_aero",
           "boot_qemu", "idle_ticks", "print_report", "run"]

RAM = 40 << 20  # the shipped session's RAM (docs/linux.md: why 40 MB)
RTC = 1_700_000_000
SESSION_KEYFRAME_INTERVAL = 10_000_000_000  # longer than the session: one keyframe, at 0
MAX_TICKS = 6_000_000_000
SLICE = 20_000_000
IDLE_SLICE = 10_000
QEMU = "qemu-system-i386"
QEMU_TIMEOUT = 900.0


def _guest() -> ResolvedGuest:
    r = resolve(LINUX_GUEST)
    for data in r.images.values():
        store_image(data)
    return r


def _machine(r: ResolvedGuest) -> Machine:
    return start_machine(MachineConfig(ram_size=RAM, cmdline=r.cmdline or lg.DEFAULT_CMDLINE),
                         r.ref, r.data, r.images)


def boot_aero(r: ResolvedGuest, marker: bytes = lg.READY_MARKER) -> dict[str, float | int]:
    """Boot to ``marker`` on COM1: {"seconds", "marker_tick", "ticks"}."""
    m = _machine(r)
    out = bytearray()
    ticks_of: list[int] = []
    seconds = 0.0
    while m.ticks < MAX_TICKS:
        t = time.perf_counter()
        stop = m.run(m.ticks + SLICE)
        seconds += time.perf_counter() - t
        ev = m.take_events()
        m.take_output()
        com1 = ev[(ev["kind"] == Kind.OUTPUT) & (ev["a"] == Channel.COM1)]
        out += bytes(int(b) & 0xFF for b in com1["b"])
        ticks_of += [int(x) for x in com1["tick"]]
        at = out.find(marker)
        if at >= 0:
            return {"seconds": seconds, "marker_tick": ticks_of[at + len(marker) - 1],
                    "ticks": m.ticks}
        if stop not in (StopReason.TICKS, StopReason.EVENTS, StopReason.OUTPUT):
            break
    raise RuntimeError(f"aero: the Linux guest did not print {marker.decode()!r} within "
                       f"{m.ticks:,} ticks")


def idle_ticks(m: Machine, until: int, inputs: np.ndarray | None = None) -> dict[str, int]:
    """Ticks the core skips in HLT while ``m`` runs to tick ``until`` (the method in the
    module docstring), injecting ``inputs`` (a trace's input events, in tick order) at their
    ticks: {"idle_ticks", "halts"}, a lower bound of the skipped ticks and the number of
    halts seen."""
    at = [] if inputs is None else [int(t) for t in inputs["tick"]]
    j = 0
    idle = halts = 0
    was_halted = False
    while m.ticks < until:
        injected = False
        while j < len(at) and at[j] <= m.ticks:
            if at[j] == m.ticks:
                e = inputs[j]  # type: ignore[index]
                m.inject(int(e["kind"]), int(e["a"]), int(e["b"]))
                injected = True
            j += 1
        limit = min(until, at[j]) if j < len(at) else until
        halted = m.get_regs().halted and not injected  # an input may wake it at once
        if halted:
            d = m.next_deadline
            if d is not None and d <= m.ticks:
                stop = m.run(m.ticks + 1)  # the timers due now fire and wake the CPU
            else:
                # Nothing can wake the CPU before the next deadline or input.
                start = m.ticks
                stop = m.run(limit if d is None else min(d, limit))
                if m.get_regs().halted:
                    idle += m.ticks - start
                    if not was_halted:
                        halts += 1
        else:
            stop = m.run(min(m.ticks + IDLE_SLICE, limit))
        was_halted = halted
        if stop in (StopReason.EVENTS, StopReason.OUTPUT):
            m.take_events()
            m.take_output()
        elif stop != StopReason.TICKS:
            break
    return {"idle_ticks": idle, "halts": halts}


def boot_qemu(kernel: Path, initrd: Path, cmdline: str, marker: bytes = lg.READY_MARKER,
              timeout: float = QEMU_TIMEOUT, qemu: str = QEMU) -> dict[str, float] | None:
    """QEMU (TCG) booting the same files to ``marker``: {"seconds", "pid"} (the process,
    stopped and reaped by then); None without QEMU. Raises RuntimeError when the marker
    does not appear within ``timeout`` seconds."""
    if shutil.which(qemu) is None:
        return None
    cmd = [qemu, "-M", "pc", "-cpu", "pentium2,-apic", "-m", str(RAM >> 20),
           "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
           "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    out = b""
    seconds = None
    try:
        assert proc.stdout is not None
        deadline = start + timeout
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)  # drained as it comes
                if not chunk:
                    break
                out += chunk
                if marker in out:
                    seconds = time.perf_counter() - start
                    break
    finally:
        stop_group(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    if seconds is None:
        tail = out[-300:].decode(errors="replace").strip().replace("\n", " | ")
        raise RuntimeError(f"{qemu} did not print {marker.decode()!r} within {timeout:.0f} s "
                           f"(exit status {proc.returncode}; output ends: {tail})")
    return {"seconds": seconds, "pid": proc.pid}


def _record(r: ResolvedGuest, path: Path, *, max_ticks: int | None = None,
            script: ScriptRunner | None = None) -> tuple[float, object]:
    m = _machine(r)
    opt = RecordOptions(max_ticks=max_ticks, rtc_time=RTC, script=script,
                        keyframe_interval=SESSION_KEYFRAME_INTERVAL)
    t = time.perf_counter()
    res = Recorder(m, r.ref, path, opt).run()
    return time.perf_counter() - t, res


def _replay(path: Path) -> tuple[float, object]:
    c = load_contents(open_trace(path))
    t = time.perf_counter()
    res = Replayer(c).run()
    elapsed = time.perf_counter() - t
    if res.diverged:
        raise RuntimeError(f"Linux boot replay diverged: {res.divergence}")
    return elapsed, res


def run(log: Callable[[str], None] = lambda _m: None) -> dict[str, object]:
    """All the figures (one repetition); raises aero.launch.LaunchError without the guest."""
    log("linux: fetching the guest")
    r = _guest()
    g = lg.fetch()
    log("linux: aero boots to the /init marker")
    aero = boot_aero(r)
    log("linux: qemu-system-i386 boots to the /init marker")
    qemu = boot_qemu(g.kernel, g.initrd, r.cmdline or lg.DEFAULT_CMDLINE)
    log("linux: counting the ticks skipped in HLT (a second aero boot)")
    idle = idle_ticks(_machine(r), int(aero["marker_tick"]))
    out: dict[str, object] = {
        "ram_bytes": RAM, "cmdline": r.cmdline, "kernel_package": g.kernel_package,
        "kernel_version": g.kernel_version, "marker": lg.READY_MARKER.decode(),
        "aero_seconds": round(float(aero["seconds"]), 3),
        "marker_tick": aero["marker_tick"],
        "qemu_seconds": None if qemu is None else round(qemu["seconds"], 3),
        "qemu_over_aero": None if qemu is None else round(qemu["seconds"] / aero["seconds"], 3),
        "aero_mips": round(aero["marker_tick"] / aero["seconds"] / 1e6, 1),
        **idle,
        "instructions": int(aero["marker_tick"]) - idle["idle_ticks"],
    }
    with tempfile.TemporaryDirectory(prefix="aero-linuxbench-") as tmp:
        boot = Path(tmp) / "boot.aerotrace"
        log("linux: recording the boot")
        rec_s, _ = _record(r, boot, max_ticks=int(aero["marker_tick"]))
        log("linux: replaying the boot")
        rep_s, rep = _replay(boot)
        log("linux: recording the session (guests/linux.script)")
        script = ScriptRunner.paced(load(guests.SOURCE_DIR / "linux.script"),
                                    MachineConfig().tick_hz)
        ses_path = Path(tmp) / "session.aerotrace"
        ses_s, ses = _record(r, ses_path, script=script)
        log("linux: counting the ticks skipped in HLT during the session (a third aero run)")
        c = load_contents(open_trace(ses_path))
        ses_idle = idle_ticks(_machine(r), ses.ticks, c.inputs)  # type: ignore[attr-defined]
        out.update({
            "boot_record_seconds": round(rec_s, 3),
            "boot_trace_bytes": boot.stat().st_size,
            "boot_replay_seconds": round(rep_s, 3),
            "boot_replay_ticks": rep.ticks,  # type: ignore[attr-defined]
            "boot_replay_mips": round(rep.ticks / rep_s / 1e6, 1),  # type: ignore[attr-defined]
            "session_record_seconds": round(ses_s, 3),
            "session_ticks": ses.ticks,  # type: ignore[attr-defined]
            "session_stop": ses.stop,  # type: ignore[attr-defined]
            "session_trace_bytes": ses_path.stat().st_size,
            "session_idle_ticks": ses_idle["idle_ticks"],
            "session_halts": ses_idle["halts"],
        })
    out["method"] = __doc__.split("Method (also in the JSON report under ``\"method\"``):")[1] \
        .split("One repetition")[0].strip() if __doc__ else ""
    return out


def print_report(report: dict) -> None:
    """The Linux figures as a table."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Linux boot to {report['marker']!r} ({report['kernel_package']} "
                    f"{report['kernel_version']}, {report['ram_bytes'] >> 20} MB)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    q = report["qemu_seconds"]
    rows = [
        ("aero wall time", f"{report['aero_seconds']:.1f} s"),
        ("qemu-system-i386 (TCG) wall time", "not installed" if q is None else f"{q:.1f} s"),
        ("qemu / aero", "-" if q is None else f"{report['qemu_over_aero']:.2f}"),
        ("ticks to the marker", f"{report['marker_tick']:,}"),
        ("ticks skipped in HLT (lower bound)", f"{report['idle_ticks']:,} "
                                               f"({report['halts']:,} halts seen)"),
        ("guest instructions executed", f"{report['instructions']:,}"),
        ("ticks skipped in HLT over the session (lower bound)",
         f"{report['session_idle_ticks']:,} ({report['session_halts']:,} halts seen)"),
        ("aero guest MIPS (ticks / s)", f"{report['aero_mips']:.1f}"),
        ("boot trace", f"{report['boot_trace_bytes']:,} bytes"),
        ("boot replay", f"{report['boot_replay_seconds']:.1f} s "
                        f"({report['boot_replay_mips']:.1f} M ticks/s)"),
        ("session trace (guests/linux.script)", f"{report['session_trace_bytes']:,} bytes, "
                                                f"{report['session_ticks']:,} ticks, "
                                                f"{report['session_stop']}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)
