"""The machine: a Python handle on one instance of the C core.

Invariants:

* The core is a pure function of (configuration, guest images, injected inputs): two
  machines built from the same configuration and fed the same inputs reach the same
  fingerprints at the same ticks.
* Calls into C are coarse: ``run`` executes millions of instructions per call.
* ``ram`` is a zero-copy, read-only numpy view of guest RAM. Write through
  :meth:`Machine.write` (or the :meth:`Machine.ram_writable` context), which keeps the
  decoded-code cache and dirty-page tracking coherent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np

from aero._core_loader import load_core
from aero.events import EVENT_DTYPE

__all__ = ["DEFAULT_FEATURES", "FEATURE_BITS", "GPR_NAMES", "INTR_QUEUE", "Machine",
           "MachineConfig", "PORT_STAT_DTYPE", "PortStat", "Regs", "SEGMENT_NAMES", "Segment",
           "StopReason", "WATCH_EXEC", "WATCH_IO", "WATCH_LOG", "WATCH_MAX", "WATCH_PHYS",
           "WATCH_READ", "WATCH_WRITE", "Access", "WatchHit", "hash64", "text_screen",
           "PLATFORM_REVISION", "LEGACY_PLATFORM"]

ffi, lib = load_core()

# The platform revision new machines get, and the one a configuration that names none is
# (api.h: AERO_PLATFORM_REV and the revisions).
PLATFORM_REVISION = int(lib.AERO_PLATFORM_REV)
LEGACY_PLATFORM = 1

# CPUID.1:EDX feature bits advertised by default: FPU, DE, PSE, TSC, MSR, CX8, PGE, CMOV (CMOV
# with FPU also announces FCMOV). Without "fpu" the machine has no x87: the escapes raise #UD.
FEATURE_BITS: dict[str, int] = {
    "fpu": 0, "vme": 1, "de": 2, "pse": 3, "tsc": 4, "msr": 5, "pae": 6, "mce": 7, "cx8": 8,
    "apic": 9, "sep": 11, "mtrr": 12, "pge": 13, "mca": 14, "cmov": 15,
}
DEFAULT_FEATURES = ("fpu", "de", "pse", "tsc", "msr", "cx8", "pge", "cmov")

SEGMENT_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
INTR_QUEUE = lib.AERO_INTR_QUEUE
WATCH_MAX = lib.AERO_WATCH_MAX
WATCH_WRITE, WATCH_READ = lib.AERO_WATCH_WRITE, lib.AERO_WATCH_READ
WATCH_EXEC, WATCH_PHYS, WATCH_IO = lib.AERO_WATCH_EXEC, lib.AERO_WATCH_PHYS, lib.AERO_WATCH_IO
WATCH_LOG = lib.AERO_WATCH_LOG
GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


class WatchHit(NamedTuple):
    """A host watch hit. For I/O the addresses are the port, ``kind`` includes WATCH_IO and
    ``value`` is what was transferred (0 for memory); ``eip`` is EIP as the access was made
    (the accessing instruction's, or the interrupted one's during an event delivery)."""

    lin: int
    phys: int
    size: int
    kind: int
    value: int
    eip: int


class Access(NamedTuple):
    """A data access logged by a WATCH_LOG watch: linear and physical address, size in
    bytes, kind (WATCH_READ or WATCH_WRITE) and the value read or written (little-endian,
    ``size`` bytes)."""

    lin: int
    phys: int
    size: int
    kind: int
    value: int


class StopReason(enum.IntEnum):
    """Why :meth:`Machine.run` returned."""

    TICKS = lib.AERO_STOP_TICKS
    HALT = lib.AERO_STOP_HALT
    EXIT = lib.AERO_STOP_EXIT
    SHUTDOWN = lib.AERO_STOP_SHUTDOWN
    OUTPUT = lib.AERO_STOP_OUTPUT
    EXCEPTION = lib.AERO_STOP_EXCEPTION
    EVENTS = lib.AERO_STOP_EVENTS  # the event log is nearly full: take_events() and run on
    WATCH = lib.AERO_STOP_WATCH  # a host watch was hit: Machine.take_watch_hit()


@dataclass(frozen=True)
class MachineConfig:
    """Everything the core's behaviour depends on besides guest images and inputs."""

    ram_size: int = 16 * 1024 * 1024
    cpuid_vendor: str = "GenuineIntel"
    cpuid_signature: int = 0x0000_0619  # family 6, model 1, stepping 9: a Pentium Pro
    features: tuple[str, ...] = DEFAULT_FEATURES
    tsc_per_tick: int = 1
    a20_enabled: bool = True
    debug_ports: bool = True  # QEMU-compatible debug console (0xE9) and exit port (0xF4)
    # A triple fault resets the CPU (RAM kept) and runs on, as a PC does; otherwise run()
    # stops with StopReason.SHUTDOWN.
    reset_on_triple_fault: bool = False
    # The PC platform: 8259A pair, 8254, COM1/COM2 16550A, RTC/CMOS, 8042 + keyboard,
    # port 92h, POST ports, a PCI host bridge. Without it only the debug ports exist.
    devices: bool = True
    # Guest ticks per guest second: the time base of every device (and of realtime replay).
    tick_hz: int = 100_000_000
    # POST-code ports besides 80h (at most four).
    post_ports: tuple[int, ...] = ()
    # The kernel command line a Linux guest is loaded with (the loader writes it into guest
    # memory; the core never sees it). Empty for every other guest.
    cmdline: str = ""
    # The PC platform's revision (api.h lists them): a machine is built as its revision
    # was, so a trace replays on the platform it was recorded on. New machines get the
    # current one; a configuration read from a trace that names none is revision 1, the
    # platform of every trace recorded before revisions were written down.
    platform: int = PLATFORM_REVISION

    def __post_init__(self) -> None:
        if self.ram_size <= 0 or self.ram_size % 4096 or self.ram_size > 0xF000_0000:
            raise ValueError(f"ram_size must be a positive multiple of 4096 below 3.75 GB, "
                             f"not {self.ram_size}")
        if len(self.cpuid_vendor.encode("ascii")) != 12:
            raise ValueError(f"cpuid_vendor must be 12 ASCII characters: {self.cpuid_vendor!r}")
        unknown = set(self.features) - set(FEATURE_BITS)
        if unknown:
            raise ValueError(f"unknown CPU features: {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(FEATURE_BITS)}")
        if self.tsc_per_tick < 1:
            raise ValueError("tsc_per_tick must be at least 1")
        if not 1_000 <= self.tick_hz <= 10**12:
            raise ValueError(f"tick_hz must be between 1000 and 10**12, not {self.tick_hz}")
        if len(self.post_ports) > 4 or any(not 0 < p <= 0xFFFF for p in self.post_ports):
            raise ValueError(f"post_ports takes up to four ports in 1-FFFFh: {self.post_ports}")
        if not isinstance(self.cmdline, str):
            raise ValueError(f"cmdline must be a string, not {type(self.cmdline).__name__}")
        if type(self.platform) is not int or not 0 <= self.platform <= PLATFORM_REVISION:
            raise ValueError(f"platform revision {self.platform!r} is not one this aero has "
                             f"(0 to {PLATFORM_REVISION})")

    @property
    def features_edx(self) -> int:
        value = 0
        for name in self.features:
            value |= 1 << FEATURE_BITS[name]
        return value

    def to_dict(self) -> dict[str, object]:
        """The configuration as JSON-ready values. Fields added after traces first recorded
        a configuration (``cmdline``) are left out at their default, so the metadata and the
        digest of a trace that does not use them stay what they were."""
        d = {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
             for f in fields(self)}
        if not self.cmdline:
            del d["cmdline"]
        if self.platform == LEGACY_PLATFORM:
            del d["platform"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MachineConfig:
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown machine configuration keys: {', '.join(sorted(extra))}")
        values = dict(data)
        values.setdefault("platform", LEGACY_PLATFORM)
        for key in ("features", "post_ports"):
            if key in values:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PortStat:
    """One port's line of the port log (:meth:`Machine.port_log`)."""

    reads: int
    writes: int
    first_tick: int
    last_value: int
    last_size: int


PORT_STAT_DTYPE = np.dtype([("reads", "<u4"), ("writes", "<u4"), ("first_tick", "<u8"),
                            ("last_value", "<u4"), ("last_size", "<u4")])


@dataclass
class Segment:
    """A segment register: selector and hidden descriptor cache."""

    selector: int = 0
    base: int = 0
    limit: int = 0xFFFF
    attr: int = 0x93


@dataclass
class Regs:
    """Architectural CPU state. ``eflags`` is always fully materialized."""

    eax: int = 0
    ecx: int = 0
    edx: int = 0
    ebx: int = 0
    esp: int = 0
    ebp: int = 0
    esi: int = 0
    edi: int = 0
    eip: int = 0
    eflags: int = 2
    es: Segment = field(default_factory=Segment)
    cs: Segment = field(default_factory=Segment)
    ss: Segment = field(default_factory=Segment)
    ds: Segment = field(default_factory=Segment)
    fs: Segment = field(default_factory=Segment)
    gs: Segment = field(default_factory=Segment)
    ldtr: Segment = field(default_factory=lambda: Segment(attr=0x82))
    tr: Segment = field(default_factory=lambda: Segment(attr=0x8B))
    gdtr_base: int = 0
    gdtr_limit: int = 0xFFFF
    idtr_base: int = 0
    idtr_limit: int = 0x3FF
    cr0: int = 0x60000010
    cr2: int = 0
    cr3: int = 0
    cr4: int = 0
    dr: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400])
    cpl: int = 0
    halted: bool = False

    def gpr(self) -> list[int]:
        return [getattr(self, n) for n in GPR_NAMES]


@dataclass
class FpuRegs:
    """The x87 state. ``st[i]`` is ST(i) as an 80-bit integer (sign << 79 | exponent << 64 |
    significand), in stack order; ``ftw`` is the full tag word (two bits per physical
    register, 11 = empty), as FSTENV stores it: only its empty/non-empty bits are state,
    the rest follows from the register contents."""

    st: list[int] = field(default_factory=lambda: [0] * 8)
    fcw: int = 0x037F
    fsw: int = 0
    ftw: int = 0xFFFF
    fop: int = 0
    fcs: int = 0
    fip: int = 0
    fds: int = 0
    fdp: int = 0
    ferr: bool = False  # FERR# holds IRQ 13 (read-only)

    @property
    def top(self) -> int:
        return (self.fsw >> 11) & 7

    def empty(self, i: int) -> bool:
        """Is ST(i) empty?"""
        return (self.ftw >> (2 * ((self.top + i) & 7))) & 3 == 3


def _seg_from_c(s) -> Segment:
    return Segment(s.selector, s.base, s.limit, s.attr)


def _seg_to_c(dst, s: Segment) -> None:
    dst.selector = s.selector & 0xFFFF
    dst.base = s.base & 0xFFFFFFFF
    dst.limit = s.limit & 0xFFFFFFFF
    dst.attr = s.attr & 0xFFFF


class Machine:
    """One emulated PC. Not thread-safe; two machines side by side are independent."""

    def __init__(self, config: MachineConfig | None = None) -> None:
        self.config = config or MachineConfig()
        c = ffi.new("aero_config *")
        c.ram_size = self.config.ram_size
        c.cpuid_vendor = self.config.cpuid_vendor.encode("ascii")
        c.cpuid_signature = self.config.cpuid_signature
        c.cpuid_features_edx = self.config.features_edx
        c.cpuid_features_ecx = 0
        c.tsc_per_tick = self.config.tsc_per_tick
        c.a20_enabled = 1 if self.config.a20_enabled else 0
        c.debug_ports = 1 if self.config.debug_ports else 0
        c.reset_on_triple_fault = 1 if self.config.reset_on_triple_fault else 0
        c.pc_devices = 1 if self.config.devices else 0
        c.tick_hz = self.config.tick_hz
        c.platform_rev = self.config.platform
        for i, port in enumerate(self.config.post_ports):
            c.post_ports[i] = port
        ptr = lib.aero_machine_new(c)
        if ptr == ffi.NULL:
            raise MemoryError(f"cannot allocate a machine with {self.config.ram_size} bytes of RAM")
        self._m = ffi.gc(ptr, lib.aero_machine_free)
        buf = ffi.buffer(lib.aero_ram(self._m), lib.aero_ram_size(self._m))
        self._ram = np.frombuffer(buf, dtype=np.uint8)
        self._ram_view = self._ram.view()
        self._ram_view.flags.writeable = False
        self._disk_size = 0  # bytes of the attached disk image (0: none)

    # ---- memory -------------------------------------------------------------------------
    @property
    def ram(self) -> np.ndarray:
        """Read-only zero-copy view of guest RAM."""
        return self._ram_view

    @contextmanager
    def ram_writable(self, start: int = 0, length: int | None = None) -> Iterator[np.ndarray]:
        """A writable view of RAM; on exit the core re-checks [start, start+length)."""
        length = self.config.ram_size - start if length is None else length
        try:
            yield self._ram
        finally:
            lib.aero_ram_modified(self._m, start, length)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write bytes at a physical address (RAM only; ROM and unmapped space ignore it)."""
        data = bytes(data)
        if addr < 0 or addr + len(data) > 1 << 32:
            raise ValueError(f"physical range {addr:#x}+{len(data)} is outside 4 GB")
        lib.aero_write_phys(self._m, addr, data, len(data))

    def read(self, addr: int, length: int) -> bytes:
        """Read bytes at a physical address (unmapped space reads as 0xFF)."""
        if addr < 0 or length < 0 or addr + length > 1 << 32:
            raise ValueError(f"physical range {addr:#x}+{length} is outside 4 GB")
        out = ffi.new("uint8_t[]", max(length, 1))
        lib.aero_read_phys(self._m, addr, out, length)
        return bytes(ffi.buffer(out, length))

    def load_rom(self, image: bytes) -> None:
        """Map a ROM at the top of 4 GB (and its last 128 KB below 1 MB); reset the CPU."""
        if not image or len(image) % 4096 or len(image) > 16 << 20:
            raise ValueError(f"ROM size must be a multiple of 4096 up to 16 MB, not {len(image)}")
        if lib.aero_load_rom(self._m, image, len(image)) != 0:
            raise MemoryError("cannot map the ROM image")
        self.reset()

    def attach_disk(self, image: bytes, writable: bool = False) -> None:
        """Attach a raw disk image as the primary IDE master. Configuration, like the ROM:
        attach the same image before running on every machine that replays it. The image is
        copied and never changed: a ``writable`` disk takes the guest's writes into a
        copy-on-write overlay, which is machine state (snapshots and fingerprints include
        it; :meth:`disk_overlay`, :meth:`disk_bytes`)."""
        if not image or len(image) % 512:
            raise ValueError(f"a disk image must be a non-empty multiple of 512 bytes, "
                             f"not {len(image)}")
        if not self.config.devices:
            raise ValueError("a disk needs the PC devices")
        if lib.aero_disk_attach(self._m, image, len(image)) != 0:
            raise MemoryError("cannot attach the disk image")
        self._disk_size = len(image)
        if writable and lib.aero_disk_set_writable(self._m, 1) != 0:
            raise MemoryError("cannot make the disk writable")

    DISK_BLOCK = 4096  # bytes per overlay block (8 sectors)
    DISK_HASH_SEED = 0x4449534B00000000  # overlay block b hashes with seed DISK_HASH_SEED | b

    def disk_overlay(self) -> tuple[np.ndarray, np.ndarray]:
        """The writable disk's overlay: (block numbers ascending, uint32; their content hashes,
        uint64, :func:`hash64` with seed ``DISK_HASH_SEED | block``). Empty without one."""
        n = int(lib.aero_disk_overlay_list(self._m, ffi.NULL, ffi.NULL, 0))
        blocks = np.zeros(n, dtype=np.uint32)
        hashes = np.zeros(n, dtype=np.uint64)
        if n:
            lib.aero_disk_overlay_list(self._m, ffi.cast("uint32_t *", blocks.ctypes.data),
                                       ffi.cast("uint64_t *", hashes.ctypes.data), n)
        return blocks, hashes

    def disk_bytes(self, offset: int = 0, length: int | None = None) -> bytes:
        """The disk as the guest sees it now (the overlay over the image), or a range of it."""
        size = self._disk_size
        if length is None:
            length = size - offset
        out = bytearray(length)
        if length and lib.aero_disk_read(self._m, offset, ffi.from_buffer(out), length) != 0:
            raise ValueError(f"disk range {offset}+{length} is outside the disk ({size} bytes)")
        return bytes(out)

    def add_firmware_file(self, name: str, data: bytes) -> None:
        """Give the firmware a file through QEMU's fw_cfg (configuration, like the ROM)."""
        raw = name.encode("ascii")
        if not 0 < len(raw) <= 55:
            raise ValueError(f"fw_cfg file names are 1 to 55 characters, not {name!r}")
        if lib.aero_fwcfg_add_file(self._m, raw, data, len(data)) != 0:
            raise ValueError(f"cannot add fw_cfg file {name!r} (no PC devices, or 16 files)")

    def screen(self, cols: int = 80, rows: int = 25) -> list[str]:
        """The VGA text screen: ``rows`` lines of ``cols`` characters (code page 437, NUL as
        a space, trailing spaces removed), read from the frame buffer in RAM (B8000h, or
        B0000h when the miscellaneous output selects monochrome addressing) from the CRTC's
        start address. Empty lines without the PC devices or RAM there."""
        return text_screen(self.devices_state_bytes(), self.read, cols, rows)

    # ---- execution ----------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on CPU state (CS:IP = F000:FFF0); RAM is kept."""
        lib.aero_reset(self._m)

    @property
    def ticks(self) -> int:
        """The guest clock: instructions retired (and interrupts delivered) so far."""
        return int(lib.aero_ticks(self._m))

    def run(self, until_tick: int) -> StopReason:
        """Run until the guest clock reaches ``until_tick`` or the guest stops."""
        return StopReason(lib.aero_run(self._m, until_tick))

    def step(self) -> StopReason:
        """Execute one instruction (one tick)."""
        return self.run(self.ticks + 1)

    # ---- external interrupts ----------------------------------------------------------
    def raise_interrupt(self, vector: int) -> None:
        """Raise an external interrupt with this vector (0-255).

        It waits (oldest first, at most ``INTR_QUEUE`` at a time) until the CPU can take it:
        between instructions with EFLAGS.IF set and no interrupt shadow (after STI, MOV SS,
        POP SS). It wakes the CPU from HLT. Its delivery takes the tick of the instruction it
        interrupts. Raised between runs, it is taken at the start of the next run.
        """
        if not 0 <= vector <= 0xFF:
            raise ValueError(f"interrupt vector must be 0-255, not {vector}")
        if lib.aero_raise_interrupt(self._m, vector) != 0:
            raise RuntimeError(f"{INTR_QUEUE} raised interrupts are already waiting")

    @property
    def pending_interrupts(self) -> int:
        """Raised interrupts the CPU has not taken yet."""
        return int(lib.aero_pending_interrupts(self._m))

    def raise_nmi(self) -> None:
        """Latch a non-maskable interrupt (vector 2): taken at the next instruction boundary
        whatever IF says, except in an interrupt shadow or while an NMI handler runs (until
        its IRET). It wakes the CPU from HLT."""
        lib.aero_raise_nmi(self._m)

    # ---- inputs and the event log -----------------------------------------------------
    def inject(self, kind: int, a: int = 0, b: int = 0) -> None:
        """Apply an input event now, at :attr:`ticks`, and log it (kinds: aero.events).

        This is the one entry point for nondeterministic input: a run is a pure function of
        the configuration, the guest images and the injected events with their ticks."""
        if lib.aero_inject(self._m, kind, a & 0xFFFFFFFF, b & 0xFFFFFFFFFFFFFFFF) != 0:
            raise ValueError(f"invalid input event: kind {kind:#x}, a={a:#x}, b={b:#x}")

    def take_events(self) -> np.ndarray:
        """The events logged since the last call (inputs and device events, oldest first),
        as a structured array of dtype :data:`aero.events.EVENT_DTYPE`."""
        n = ffi.new("uint32_t *")
        p = lib.aero_event_log(self._m, n)
        if lib.aero_event_log_lost(self._m):
            raise RuntimeError("the core's event log overflowed: events were lost")
        raw = bytes(ffi.buffer(p, n[0] * ffi.sizeof("aero_event")))
        lib.aero_event_log_clear(self._m)
        return np.frombuffer(raw, dtype=EVENT_DTYPE).copy()

    @property
    def next_deadline(self) -> int | None:
        """The tick of the earliest armed device timer, or None."""
        d = int(lib.aero_next_deadline(self._m))
        return None if d == (1 << 64) - 1 else d

    def port_read(self, port: int, size: int = 1) -> int:
        """Read an I/O port as the CPU would (no permission check)."""
        if size not in (1, 2, 4) or not 0 <= port <= 0xFFFF:
            raise ValueError(f"bad port access: port {port:#x}, size {size}")
        return int(lib.aero_port_read(self._m, port, size))

    def port_write(self, port: int, value: int, size: int = 1) -> None:
        """Write an I/O port as the CPU would (no permission check)."""
        if size not in (1, 2, 4) or not 0 <= port <= 0xFFFF:
            raise ValueError(f"bad port access: port {port:#x}, size {size}")
        lib.aero_port_write(self._m, port, size, value & ((1 << (8 * size)) - 1))

    def enable_port_log(self, enable: bool = True) -> None:
        """Start (cleared) or stop the port log: per port, reads, writes, the first tick and
        the last value. Observation only: it is not machine state and changes no result."""
        if lib.aero_port_log_enable(self._m, 1 if enable else 0) != 0:
            raise MemoryError("cannot allocate the port log")

    def port_log(self) -> dict[int, PortStat]:
        """The ports accessed since :meth:`enable_port_log`, by port number (ascending)."""
        p = lib.aero_port_log(self._m)
        if p == ffi.NULL:
            raise RuntimeError("the port log is off (enable_port_log)")
        raw = np.frombuffer(ffi.buffer(p, 0x10000 * ffi.sizeof("aero_port_stat")),
                            dtype=PORT_STAT_DTYPE)
        return {int(port): PortStat(int(raw["reads"][port]), int(raw["writes"][port]),
                                    int(raw["first_tick"][port]), int(raw["last_value"][port]),
                                    int(raw["last_size"][port]))
                for port in np.flatnonzero(raw["last_size"])}

    def devices_state_bytes(self) -> bytes:
        """Canonical serialized device state (part of fingerprints and snapshots)."""
        out = ffi.new("uint8_t[]", lib.AERO_DEV_STATE_BYTES)
        lib.aero_devices_save(self._m, out)
        return bytes(ffi.buffer(out, lib.AERO_DEV_STATE_BYTES))

    def page_hashes(self) -> np.ndarray:
        """Per-page RAM hashes as of the last :meth:`fingerprint` (uint64, one per 4 KB)."""
        out = np.empty(self.config.ram_size // 4096, dtype=np.uint64)
        lib.aero_page_hashes(self._m, ffi.cast("uint64_t *", ffi.from_buffer(out)))
        return out

    def written_pages(self) -> np.ndarray:
        """The RAM pages written since the last :meth:`fingerprint` (bool, one per 4 KB): by
        the guest, a device or the host, whatever the value written (a restore marks them
        all). A superset of the pages whose contents changed."""
        out = np.empty(self.config.ram_size // 4096, dtype=np.uint8)
        lib.aero_written_pages(self._m, ffi.cast("uint8_t *", ffi.from_buffer(out)))
        return out.astype(bool)

    # ---- host watches (debuggers, history queries; not guest state) -------------------
    def set_watch(self, slot: int, addr: int, length: int, flags: int) -> None:
        """Arm watch ``slot`` (0 to WATCH_MAX-1) on [addr, addr+length) for the accesses in
        ``flags`` (WATCH_READ, WATCH_WRITE, WATCH_EXEC, with WATCH_PHYS for physical data
        addresses, or WATCH_IO with READ/WRITE for the I/O ports [addr, addr+length));
        flags 0 disarms it. A hit stops :meth:`run` with StopReason.WATCH: after
        the accessing instruction for data, before it for WATCH_EXEC. Unarmed, a machine
        runs exactly as fast as without this feature (watched pages stay off the TLB)."""
        if lib.aero_watch_set(self._m, slot, addr & 0xFFFFFFFF, length, flags) != 0:
            raise ValueError(f"bad watch: slot {slot}, {addr:#x}+{length}, flags {flags:#x}")

    def take_watch_hit(self) -> WatchHit | None:
        """The first watch hit since the last call, or None."""
        out = ffi.new("uint32_t[6]")
        if not lib.aero_watch_take(self._m, out):
            return None
        return WatchHit(*(int(out[i]) for i in range(6)))

    def take_watch_log(self) -> tuple[list[Access], int]:
        """The accesses WATCH_LOG watches logged since the last call, in order, and the
        number that did not fit (the core holds WATCH_LOG_MAX between two calls). A logging
        watch never stops :meth:`run`."""
        out = ffi.new("uint32_t[]", 5 * lib.AERO_WATCH_LOG_MAX)
        lost = ffi.new("uint32_t *")
        n = lib.aero_watch_log(self._m, out, lost)
        vals = ffi.unpack(out, 5 * n)
        return [Access(*vals[5 * i:5 * i + 5]) for i in range(n)], int(lost[0])

    def watch_resume(self) -> None:
        """Instruction watches do not trigger at the current tick (resume after a stop)."""
        lib.aero_watch_resume(self._m)

    def set_stop_on_exception(self, enable: bool) -> None:
        lib.aero_set_stop_on_exception(self._m, 1 if enable else 0)

    def last_exception(self) -> tuple[int, int] | None:
        """(vector, error code) of the last exception raised, or None."""
        code = ffi.new("uint32_t *")
        vec = lib.aero_last_exception(self._m, code)
        return None if vec < 0 else (int(vec), int(code[0]))

    def clear_exception(self) -> None:
        lib.aero_clear_exception(self._m)

    # ---- guest output -------------------------------------------------------------------
    def take_output(self) -> bytes:
        """Debug-console bytes produced since the last call."""
        n = ffi.new("uint32_t *")
        p = lib.aero_output(self._m, n)
        data = bytes(ffi.buffer(p, n[0]))
        lib.aero_output_clear(self._m)
        return data

    @property
    def exit_status(self) -> int | None:
        """``(value << 1) | 1`` written to the debug-exit port, or None."""
        v = int(lib.aero_exit_status(self._m))
        return None if v < 0 else v

    # ---- state --------------------------------------------------------------------------
    def get_regs(self) -> Regs:
        r = ffi.new("aero_regs *")
        lib.aero_get_regs(self._m, r)
        out = Regs(*[int(r.gpr[i]) for i in range(8)], eip=r.eip, eflags=r.eflags)
        for i, name in enumerate(SEGMENT_NAMES):
            setattr(out, name, _seg_from_c(r.seg[i]))
        out.ldtr, out.tr = _seg_from_c(r.ldtr), _seg_from_c(r.tr)
        out.gdtr_base, out.gdtr_limit = r.gdtr.base, r.gdtr.limit
        out.idtr_base, out.idtr_limit = r.idtr.base, r.idtr.limit
        out.cr0, out.cr2, out.cr3, out.cr4 = r.cr0, r.cr2, r.cr3, r.cr4
        out.dr = [int(r.dr[i]) for i in range(8)]
        out.cpl, out.halted = int(r.cpl), bool(r.halted)
        return out

    def set_regs(self, regs: Regs) -> None:
        r = ffi.new("aero_regs *")
        for i, name in enumerate(GPR_NAMES):
            r.gpr[i] = getattr(regs, name) & 0xFFFFFFFF
        r.eip, r.eflags = regs.eip & 0xFFFFFFFF, regs.eflags & 0xFFFFFFFF
        for i, name in enumerate(SEGMENT_NAMES):
            _seg_to_c(r.seg[i], getattr(regs, name))
        _seg_to_c(r.ldtr, regs.ldtr)
        _seg_to_c(r.tr, regs.tr)
        r.gdtr.base, r.gdtr.limit = regs.gdtr_base, regs.gdtr_limit
        r.idtr.base, r.idtr.limit = regs.idtr_base, regs.idtr_limit
        r.cr0, r.cr2, r.cr3, r.cr4 = regs.cr0, regs.cr2, regs.cr3, regs.cr4
        for i in range(8):
            r.dr[i] = regs.dr[i]
        r.cpl, r.halted = regs.cpl, 1 if regs.halted else 0
        lib.aero_set_regs(self._m, r)

    def get_fpu(self) -> FpuRegs:
        """The x87 registers (see :class:`FpuRegs`)."""
        r = ffi.new("aero_fpu_regs *")
        lib.aero_get_fpu(self._m, r)
        st = [(int(r.st_se[i]) << 64) | int(r.st_sig[i]) for i in range(8)]
        return FpuRegs(st, int(r.fcw), int(r.fsw), int(r.ftw), int(r.fop), int(r.fcs), int(r.fip),
                       int(r.fds), int(r.fdp), bool(r.ferr))

    def set_fpu(self, regs: FpuRegs) -> None:
        """Load the x87 registers; TOP comes from ``fsw``, ``st`` is in stack order."""
        r = ffi.new("aero_fpu_regs *")
        for i in range(8):
            r.st_sig[i] = regs.st[i] & ((1 << 64) - 1)
            r.st_se[i] = (regs.st[i] >> 64) & 0xFFFF
        r.fcw, r.fsw, r.ftw = regs.fcw & 0xFFFF, regs.fsw & 0xFFFF, regs.ftw & 0xFFFF
        r.fop, r.fcs, r.fds = regs.fop & 0x7FF, regs.fcs & 0xFFFF, regs.fds & 0xFFFF
        r.fip, r.fdp = regs.fip & 0xFFFFFFFF, regs.fdp & 0xFFFFFFFF
        lib.aero_set_fpu(self._m, r)

    def cpu_state_bytes(self) -> bytes:
        """Canonical serialized CPU state (what fingerprints and snapshots contain)."""
        out = ffi.new("uint8_t[]", lib.AERO_CPU_STATE_BYTES)
        lib.aero_cpu_serialize(self._m, out)
        return bytes(ffi.buffer(out, lib.AERO_CPU_STATE_BYTES))

    def fingerprint(self) -> int:
        """64-bit hash of CPU state, device state, the clock and RAM."""
        return int(lib.aero_fingerprint(self._m))

    @property
    def snapshot_size(self) -> int:
        """Bytes of a snapshot of this machine."""
        return int(lib.aero_snapshot_size(self._m))

    def snapshot(self) -> bytes:
        """The whole machine state as bytes; :meth:`restore` brings it back bit-exactly."""
        out = bytearray(self.snapshot_size)
        self.snapshot_into(out)
        return bytes(out)

    def snapshot_into(self, buf: bytearray) -> None:
        """:meth:`snapshot` into a buffer of :attr:`snapshot_size` bytes, which callers that
        save often reuse (a fresh allocation per save costs more than the copy)."""
        if len(buf) != self.snapshot_size or \
                lib.aero_snapshot_save(self._m, ffi.from_buffer(buf), len(buf)) != 0:
            raise ValueError(f"a snapshot needs a buffer of {self.snapshot_size} bytes")

    def restore(self, snapshot: bytes | bytearray) -> None:
        if lib.aero_snapshot_load(self._m, ffi.from_buffer(snapshot), len(snapshot)) != 0:
            raise ValueError("snapshot does not match this machine (size, RAM or version)")


def text_screen(devices: bytes, read: Callable[[int, int], bytes], cols: int = 80,
                rows: int = 25) -> list[str]:
    """The VGA text screen of a machine state: ``devices`` is its serialized device state
    (for the VGA's miscellaneous output and CRTC start address), ``read(addr, n)`` reads its
    physical memory. :meth:`Machine.screen`; trace exports call it on keyframes."""
    from aero import devstate

    vga = devstate.decode(devices).get("vga")
    if not vga:
        return [""] * rows
    crtc, misc = vga["crtc"], vga["misc"]
    assert isinstance(crtc, list) and isinstance(misc, int)
    base = (0xB8000 if misc & 1 else 0xB0000) + 2 * ((crtc[0x0C] << 8 | crtc[0x0D]) & 0x3FFF)
    raw = read(base, 2 * cols * rows)[0::2].replace(b"\0", b" ")
    return [raw[r * cols:(r + 1) * cols].decode("cp437").rstrip() for r in range(rows)]


def hash64(data: bytes, seed: int = 0) -> int:
    """XXH64 as computed by the core."""
    return int(lib.aero_hash64(data, len(data), seed))
