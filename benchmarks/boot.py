"""``aero bench --boot`` (opt-in): how long a PC takes to boot in aero and in QEMU, on the
same images.

Two workloads, each timed end to end from machine creation (aero) or process start (QEMU)
to a marker in the guest's output (perf_counter, one run each unless repetitions say more):

* ``seabios``: Debian's SeaBIOS (``/usr/share/seabios/bios.bin``) with no disk, to "No
  bootable device." on the debug console (port 402h). The boot menu is off in both (QEMU's
  default; aero's fw_cfg says so), so this is the whole POST and boot attempt.
* ``bios_to_shell``: SeaBIOS with the project-built Linux disk (:mod:`aero.linuxdisk`,
  ``--disk linux``): MBR, SYSLINUX, the kernel and the initramfs to the ``aero-init:
  ready`` marker on COM1, 128 MB of RAM.

The images are read (and the disk built) before the clocks start.

QEMU: ``qemu-system-i386 -M pc -cpu pentium2,-apic`` (TCG), the same BIOS and disk (raw,
IDE, ``snapshot=on`` so that nothing is written), ``-display none``, the marker's channel on
stdout. QEMU runs in its own process group with a timeout and is killed (SIGTERM, then
SIGKILL) when the marker shows; its time includes its start-up. aero's includes the
machine's creation, the ROM and disk copy and the Python run loop. aero reports its guest
ticks too (the tick of the marker's last byte, the same on every run); it runs in slices of
50 million ticks, so it may run up to that far past the marker before it sees it.
"""

from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from aero.events import Channel, Kind
from aero.launch import SEABIOS_IMAGE, ResolvedGuest, resolve, start_machine
from aero.machine import MachineConfig, StopReason
from aero.procgroup import stop_group

__all__ = ["QEMU", "print_report", "run"]

QEMU = "qemu-system-i386"
TIMEOUT = 600.0
WORKLOADS = {
    # name: (disk, RAM, marker, channel)
    "seabios": (None, 32 << 20, b"No bootable device.", Channel.DEBUGCON),
    "bios_to_shell": ("linux", 128 << 20, b"aero-init: ready", Channel.COM1),
}


def _aero(r: ResolvedGuest, ram: int, marker: bytes, channel: int) -> tuple[float, int]:
    t = time.perf_counter()
    m = start_machine(MachineConfig(ram_size=ram), r.ref, r.data, r.images)
    out = b""
    while True:
        stop = m.run(m.ticks + 50_000_000)
        m.take_output()
        ev = m.take_events()
        sel = ev[(ev["kind"] == Kind.OUTPUT) & (ev["a"] == channel)]
        keep = out[-len(marker):]
        out = keep + sel["b"].astype("u1").tobytes()
        at = out.find(marker)
        if at >= 0:  # the tick of the byte that completed the marker
            return time.perf_counter() - t, int(sel["tick"][at + len(marker) - 1 - len(keep)])
        if stop not in (StopReason.TICKS, StopReason.EVENTS, StopReason.OUTPUT) or \
                time.perf_counter() - t > TIMEOUT:
            raise RuntimeError(f"aero did not reach {marker!r} (stop {stop.name})")


def _qemu(disk: Path | None, ram: int, marker: bytes, channel: int,
          started: list[int] | None = None) -> float:
    """QEMU's seconds to the marker; the process's pid is appended to ``started``."""
    cmd = [QEMU, "-M", "pc", "-cpu", "pentium2,-apic", "-m", str(ram >> 20), "-bios",
           str(SEABIOS_IMAGE), "-display", "none", "-nodefaults", "-vga", "std",
           "-no-reboot", "-monitor", "none"]
    if channel == Channel.DEBUGCON:
        cmd += ["-chardev", "stdio,id=d", "-device", "isa-debugcon,iobase=0x402,chardev=d",
                "-serial", "none"]
    else:
        cmd += ["-serial", "stdio"]
    if disk is not None:
        cmd += ["-drive", f"file={disk},format=raw,if=ide,snapshot=on", "-boot", "c"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    if started is not None:
        started.append(proc.pid)
    out = b""
    try:
        assert proc.stdout is not None
        while marker not in out:
            if time.perf_counter() - t > TIMEOUT:
                raise RuntimeError(f"QEMU did not reach {marker!r} in {TIMEOUT:.0f} s")
            ready, _, _ = select.select([proc.stdout], [], [], 0.05)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"QEMU exited before {marker!r}")
                out = out[-len(marker):] + chunk
        return time.perf_counter() - t
    finally:
        stop_group(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def run(repetitions: int = 1, reference: bool = True, log=print) -> dict:  # noqa: ANN001
    """The boot figures: per workload aero's seconds and ticks and, with QEMU installed and
    ``reference``, QEMU's seconds; medians of ``repetitions`` interleaved runs."""
    report: dict[str, object] = {"method": "wall time from start to the marker (perf_counter)"}
    for name, (disk, ram, marker, channel) in WORKLOADS.items():
        disk_path: Path | None = None
        if disk is not None:
            from aero import linuxdisk

            disk_path = linuxdisk.disk_path()  # built on first use, outside the timing
        resolved = resolve("pc", disk=str(disk_path) if disk_path else None)
        aero_s, qemu_s, ticks = [], [], 0
        for _ in range(repetitions):
            log(f"boot {name}: aero")
            s, ticks = _aero(resolved, ram, marker, channel)
            aero_s.append(s)
            if reference and shutil.which(QEMU):
                log(f"boot {name}: QEMU")
                qemu_s.append(_qemu(disk_path, ram, marker, channel))
        row: dict[str, object] = {"marker": marker.decode(), "ticks": ticks,
                                  "aero_seconds": round(statistics.median(aero_s), 3)}
        if qemu_s:
            row["qemu_seconds"] = round(statistics.median(qemu_s), 3)
            row["aero_over_qemu"] = round(statistics.median(aero_s) / statistics.median(qemu_s), 2)
        report[name] = row
    return report


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="aero bench: booting a PC (SeaBIOS; the Linux disk)")
    for col in ("workload", "marker", "aero ticks", "aero s", "QEMU s", "aero / QEMU"):
        t.add_column(col, justify="left" if col in ("workload", "marker") else "right")
    for name in WORKLOADS:
        row = report.get(name)
        if not isinstance(row, dict):
            continue
        t.add_row(name, row["marker"], f"{row['ticks']:,}", f"{row['aero_seconds']:.2f}",
                  "-" if "qemu_seconds" not in row else f"{row['qemu_seconds']:.2f}",
                  "-" if "aero_over_qemu" not in row else f"{row['aero_over_qemu']:.2f}")
    Console().print(t)
