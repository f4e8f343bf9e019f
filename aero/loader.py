"""Loading guest images into a machine: flat binaries, ROM images, Multiboot v1 ELF kernels
and Linux bzImage kernels (with an initial ramdisk and a command line).

Invariants:

* Loading is deterministic: the machine state after :func:`load_guest` depends only on the
  image bytes, the format, the load address and the machine configuration.
* Every malformed input raises :class:`GuestError` with a one-line message, before the
  machine is modified (all checks come first, then all writes).

Formats (``fmt``):

* ``flat``: the file is copied to ``load_addr`` and entered in real mode with all general
  registers and segment registers zero, EFLAGS=2, CS:IP = 0:load_addr and SS:SP =
  0:load_addr (the stack grows down below the image). A load address of 64 KB or more must
  be a multiple of 16 and is entered at CS:IP = (load_addr >> 4):0, SS:SP = 0:0.
* ``rom``: the file (a multiple of 4 KB, at most 16 MB) is mapped so that it ends at 4 GB,
  its last 128 KB also below 1 MB, and the CPU is reset: it starts at F000:FFF0.
* ``multiboot``: an ELF32 i386 executable with a Multiboot v1 header in its first 8192
  bytes. Its PT_LOAD segments are copied to their physical addresses (p_paddr) and the
  rest of each segment (p_memsz beyond p_filesz) is zeroed. The machine is entered as the
  Multiboot specification says: EAX=0x2BADB002, EBX=address of the multiboot information,
  CS a flat 32-bit code segment (selector 0x08), DS/ES/FS/GS/SS flat data (0x10), CR0.PE=1,
  paging off, EFLAGS=2 (IF=0, VM=0). The GDT those selectors come from is in memory, so a
  reload works. ESP is set to 0x7000 (the specification leaves it undefined).
* ``linux``: a bzImage kernel (``HdrS`` at offset 0x202, boot protocol 2.06 or later), loaded
  and entered by the 32-bit boot protocol of the kernel's Documentation/arch/x86/boot.rst:
  the protected-mode kernel at 1 MB, a zero page (struct boot_params) holding the image's
  setup header and an E820 map, the command line and the initial ramdisk. See
  :func:`load_linux`.
* ``auto``: ``HdrS`` at 0x202 -> linux; ELF magic -> multiboot; a ``.rom`` extension or a
  size that is a multiple of 64 KB -> rom; anything else -> flat.

Low memory used by the Multiboot loader (kernels may not load segments there):
0x0800 GDT, 0x0900 multiboot information, 0x0A00 memory map, 0x0B00 boot loader name.
Low memory used by the Linux loader: 0x0800 GDT, 0x1000 zero page, 0x2000 command line,
0x9000 initial stack top (the kernel copies the zero page and the command line before it
reuses low memory).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from aero.machine import Machine, Segment

__all__ = ["BOOT_CS", "BOOT_DS", "BOOT_LOADER_NAME", "CMDLINE_ADDR", "CODE32_ATTR", "DATA32_ATTR",
           "EM_386", "ET_EXEC", "ElfSegment", "FLAT_CS", "FLAT_DS", "FORMATS", "GDT_ADDR",
           "GuestError", "INFO_ADDR", "LINUX_KERNEL_ADDR", "LINUX_MIN_VERSION", "LOADER_AREA",
           "LinuxBootError", "LinuxHeader", "LinuxLayout", "LoadedGuest", "MAX_IMAGE_BYTES",
           "MB_BOOT_MAGIC", "MB_HEADER_MAGIC", "MB_SEARCH", "MB_STACK", "MB_SUPPORTED_REQUIRED",
           "MMAP_ADDR", "NAME_ADDR", "PT_LOAD", "REAL_CODE_ATTR", "REAL_DATA_ATTR",
           "ROM_MAX_BYTES", "ZERO_PAGE", "detect_format", "find_multiboot_header", "image_limit",
           "linux_e820", "linux_layout", "load_flat", "load_guest", "load_linux", "load_multiboot",
           "load_rom", "multiboot_info", "parse_elf", "parse_linux_header", "read_image"]

FORMATS = ("auto", "flat", "rom", "multiboot", "linux")

MB_HEADER_MAGIC = 0x1BADB002
MB_BOOT_MAGIC = 0x2BADB002
MB_SEARCH = 8192
# Header flags bits 0-15 are requirements: 0 (page-align modules) and 1 (memory
# information) are met; 2 (video mode) is not. Bits 16-31 are optional.
MB_SUPPORTED_REQUIRED = 0x0003

GDT_ADDR = 0x0800
INFO_ADDR = 0x0900
MMAP_ADDR = 0x0A00
NAME_ADDR = 0x0B00
LOADER_AREA = (GDT_ADDR, 0x1000)
MB_STACK = 0x7000
BOOT_LOADER_NAME = b"aero\0"

FLAT_CS, FLAT_DS = 0x08, 0x10
CODE32_ATTR = 0xC09B  # present, DPL 0, code read/accessed; D=1, G=1
DATA32_ATTR = 0xC093  # present, DPL 0, data write/accessed; B=1, G=1
REAL_CODE_ATTR, REAL_DATA_ATTR = 0x9B, 0x93

PT_LOAD = 1
EM_386 = 3
ET_EXEC = 2

# ---- the Linux/x86 boot protocol (Documentation/arch/x86/boot.rst) ----
HDR_MAGIC_OFF = 0x202  # "HdrS"
LINUX_MAGIC = b"HdrS"
SETUP_HDR_OFF = 0x1F1  # the setup header: in the image and in struct boot_params alike
LINUX_MIN_VERSION = 0x0206  # cmdline_size (and a 32-bit entry) exist from 2.06 on
LINUX_KERNEL_ADDR = 0x100000  # the protected-mode kernel of a bzImage loads at 1 MB
LINUX_GDT_ADDR = 0x0800
ZERO_PAGE = 0x1000  # struct boot_params (4 KB)
CMDLINE_ADDR = 0x2000
CMDLINE_AREA_END = 0x8000
LINUX_STACK = 0x9000
BOOT_CS, BOOT_DS = 0x10, 0x18  # __BOOT_CS, __BOOT_DS
LOADED_HIGH = 0x01  # loadflags bit 0: the protected-mode kernel is loaded at 1 MB
TYPE_OF_LOADER = 0xFF  # "undefined": a boot loader without an assigned id
E820_RAM, E820_RESERVED = 1, 2
E820_MAX = 128  # entries that fit in the zero page
EBDA_START = 0x9FC00  # the top 1 KB of conventional memory: the EBDA a BIOS would keep
# Offsets in struct boot_params (arch/x86/include/uapi/asm/bootparam.h).
BP_ALT_MEM_K = 0x1E0
BP_E820_ENTRIES = 0x1E8
BP_E820_TABLE = 0x2D0
# Offsets of setup header fields (the same in the image and in the zero page).
HDR_SETUP_SECTS = 0x1F1
HDR_BOOT_FLAG = 0x1FE
HDR_JUMP = 0x200
HDR_VERSION = 0x206
HDR_TYPE_OF_LOADER = 0x210
HDR_LOADFLAGS = 0x211
HDR_RAMDISK_IMAGE = 0x218
HDR_RAMDISK_SIZE = 0x21C
HDR_HEAP_END_PTR = 0x224
HDR_CMD_LINE_PTR = 0x228
HDR_INITRD_ADDR_MAX = 0x22C
HDR_CMDLINE_SIZE = 0x238
HDR_PREF_ADDRESS = 0x258
HDR_INIT_SIZE = 0x260


class GuestError(Exception):
    """A guest image that cannot be loaded; the message is one line naming the problem."""


class LinuxBootError(GuestError):
    """A Linux kernel, initrd or command line the boot protocol cannot take (one line)."""


@dataclass(frozen=True)
class LoadedGuest:
    """What was loaded: the format actually used and where execution starts."""

    fmt: str
    entry: int
    size: int


def _descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    """An 8-byte segment descriptor (limit in units of 4 KB when flags has G)."""
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF,
                       access, ((flags & 0xF) << 4) | ((limit >> 16) & 0xF), base >> 24)


def detect_format(path: str | os.PathLike[str], data: bytes) -> str:
    """The format ``auto`` resolves to for this file."""
    if data[HDR_MAGIC_OFF:HDR_MAGIC_OFF + 4] == LINUX_MAGIC:
        return "linux"
    if data[:4] == b"\x7fELF":
        return "multiboot"
    if Path(path).suffix.lower() == ".rom" or (data and len(data) % 0x10000 == 0):
        return "rom"
    return "flat"


MAX_IMAGE_BYTES = 48 << 20  # the largest guest image aero reads (a trace embeds it in a frame)
ROM_MAX_BYTES = 16 << 20


def image_limit(ram_size: int | None) -> int:
    """The largest image worth reading for a machine with ``ram_size`` bytes of RAM: a flat
    image or ELF must fit in RAM (a ROM is at most 16 MB), and no image exceeds
    :data:`MAX_IMAGE_BYTES`."""
    if ram_size is None:
        return MAX_IMAGE_BYTES
    return min(MAX_IMAGE_BYTES, max(ram_size, ROM_MAX_BYTES))


def read_image(path: str | os.PathLike[str], limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image file, which must be a regular file of at most ``limit`` bytes:
    the size is checked before anything is read (``/dev/zero`` or a FIFO is refused at once,
    never read until memory runs out). Raises GuestError, or OSError when it cannot be
    opened."""
    name = Path(path).name
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GuestError(f"{name}: not a regular file")
        if st.st_size > limit:
            raise GuestError(f"{name}: {st.st_size} bytes is more than the {limit} an image may "
                             f"have here (it must fit in RAM)")
        chunks = []
        left = st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if os.read(fd, 1):
            raise GuestError(f"{name}: the file grew while it was read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_guest(machine: Machine, path: str | os.PathLike[str], fmt: str = "auto",
               load_addr: int = 0x7C00, initrd: str | os.PathLike[str] | None = None,
               cmdline: str = "") -> LoadedGuest:
    """Load the guest image at ``path`` into ``machine`` and set up its entry state.

    ``initrd`` (a file) and ``cmdline`` are for Linux kernels only. Raises GuestError for a
    malformed or unloadable image (a file larger than the machine's RAM allows is refused
    before it is read) and OSError when a file cannot be read.
    """
    if fmt not in FORMATS:
        raise GuestError(f"unknown guest format {fmt!r} (expected one of {', '.join(FORMATS)})")
    data = read_image(path, image_limit(machine.config.ram_size))
    name = Path(path).name
    if not data:
        raise GuestError(f"{name}: empty file")
    if fmt == "auto":
        fmt = detect_format(path, data)
    if fmt != "linux" and (initrd is not None or cmdline):
        raise GuestError(f"{name}: an initrd and a command line are for Linux kernels, and "
                         f"this is a {fmt} image")
    if fmt == "linux":
        rd = read_image(initrd, image_limit(machine.config.ram_size)) if initrd is not None \
            else None
        return load_linux(machine, data, rd, cmdline, name)
    if fmt == "flat":
        return load_flat(machine, data, load_addr, name)
    if fmt == "rom":
        return load_rom(machine, data, name)
    return load_multiboot(machine, data, name)


def load_flat(machine: Machine, data: bytes, load_addr: int = 0x7C00,
              name: str = "image") -> LoadedGuest:
    """A flat binary at ``load_addr``, entered in real mode (see the module docstring)."""
    if not data:
        raise GuestError(f"{name}: empty file")
    end = load_addr + len(data)
    if load_addr < 0 or end > machine.config.ram_size:
        raise GuestError(f"{name}: {len(data)} bytes at {load_addr:#x} do not fit in "
                         f"{machine.config.ram_size:#x} bytes of RAM")
    if load_addr < 0x10000:
        cs, ip, sp = 0, load_addr, load_addr
    elif load_addr % 16 == 0 and end <= 0x100000:
        cs, ip, sp = load_addr >> 4, 0, 0
    else:
        raise GuestError(f"{name}: load address {load_addr:#x} cannot be entered in real mode "
                         f"(below 0x10000, or a multiple of 16 below 1 MB)")
    machine.reset()
    machine.write(load_addr, data)
    r = machine.get_regs()
    for reg in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi"):
        setattr(r, reg, 0)
    r.esp, r.eip, r.eflags = sp, ip, 0x2
    r.cs = Segment(cs, cs << 4, 0xFFFF, REAL_CODE_ATTR)
    for seg in ("ds", "es", "fs", "gs", "ss"):
        setattr(r, seg, Segment(0, 0, 0xFFFF, REAL_DATA_ATTR))
    machine.set_regs(r)
    return LoadedGuest("flat", load_addr, len(data))


def load_rom(machine: Machine, data: bytes, name: str = "image") -> LoadedGuest:
    """A ROM image mapped below 4 GB; the CPU is reset to F000:FFF0."""
    if not data:
        raise GuestError(f"{name}: empty file")
    if len(data) % 4096 or len(data) > 16 << 20:
        raise GuestError(f"{name}: a ROM image must be a multiple of 4096 bytes up to 16 MB, "
                         f"not {len(data)} bytes")
    try:
        machine.load_rom(data)
    except (ValueError, MemoryError) as exc:
        raise GuestError(f"{name}: {exc}") from exc
    return LoadedGuest("rom", 0xFFFFFFF0, len(data))


@dataclass(frozen=True)
class ElfSegment:
    """A PT_LOAD segment: physical address, file offset, file size, memory size."""

    paddr: int
    offset: int
    filesz: int
    memsz: int


def parse_elf(data: bytes, name: str) -> tuple[int, list[ElfSegment]]:
    """Entry point and PT_LOAD segments of an ELF32 i386 executable; checks every bound."""
    if len(data) < 52:
        raise GuestError(f"{name}: truncated ELF header ({len(data)} bytes, need 52)")
    if data[:4] != b"\x7fELF":
        raise GuestError(f"{name}: not an ELF file")
    if data[4] != 1 or data[5] != 1:
        raise GuestError(f"{name}: not a 32-bit little-endian ELF file")
    (e_type, e_machine, _version, entry, phoff, _shoff, _flags, _ehsize, phentsize,
     phnum) = struct.unpack_from("<HHIIIIIHHH", data, 16)
    if e_machine != EM_386:
        raise GuestError(f"{name}: ELF machine {e_machine} is not i386 ({EM_386})")
    if e_type != ET_EXEC:
        raise GuestError(f"{name}: ELF type {e_type} is not an executable ({ET_EXEC})")
    if phnum == 0:
        raise GuestError(f"{name}: ELF file has no program headers")
    if phentsize < 32:
        raise GuestError(f"{name}: ELF program header size {phentsize} is below 32")
    if phoff + phnum * phentsize > len(data):
        raise GuestError(f"{name}: truncated ELF: program headers end at "
                         f"{phoff + phnum * phentsize:#x}, file is {len(data):#x} bytes")
    segs = []
    for i in range(phnum):
        (p_type, p_offset, _vaddr, p_paddr, p_filesz,
         p_memsz) = struct.unpack_from("<IIIIII", data, phoff + i * phentsize)
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz:
            raise GuestError(f"{name}: segment {i} has a file size above its memory size")
        if p_offset + p_filesz > len(data):
            raise GuestError(f"{name}: truncated ELF: segment {i} ends at "
                             f"{p_offset + p_filesz:#x}, file is {len(data):#x} bytes")
        segs.append(ElfSegment(p_paddr, p_offset, p_filesz, p_memsz))
    if not segs:
        raise GuestError(f"{name}: ELF file has no loadable segment")
    return entry, segs


def find_multiboot_header(data: bytes, name: str = "image") -> tuple[int, int]:
    """(offset, flags) of the Multiboot v1 header in the first 8192 bytes of ``data``."""
    bad_checksum = None
    for off in range(0, min(len(data), MB_SEARCH) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, off)
        if magic != MB_HEADER_MAGIC:
            continue
        if (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return off, flags
        bad_checksum = off if bad_checksum is None else bad_checksum
    if bad_checksum is not None:
        raise GuestError(f"{name}: multiboot header at offset {bad_checksum:#x} has a bad "
                         f"checksum")
    raise GuestError(f"{name}: no multiboot header (magic {MB_HEADER_MAGIC:#x}) in the first "
                     f"{MB_SEARCH} bytes")


def multiboot_info(ram_size: int) -> tuple[bytes, bytes]:
    """The multiboot information structure and its memory map for ``ram_size`` bytes of RAM.

    The map: RAM below 640 KB (available), the 640 KB-1 MB hole (reserved), RAM from 1 MB to
    the end of RAM (available). mem_lower/mem_upper are the two available sizes in KB.
    """
    low = min(ram_size, 0xA0000)
    entries = [(0, low, 1)]
    if ram_size > 0xA0000:
        entries.append((0xA0000, 0x60000, 2))
    if ram_size > 0x100000:
        entries.append((0x100000, ram_size - 0x100000, 1))
    mmap = b"".join(struct.pack("<IQQI", 20, base, length, kind)
                    for base, length, kind in entries)
    mem_upper = max(0, ram_size - 0x100000) // 1024
    flags = (1 << 0) | (1 << 6) | (1 << 9)
    info = bytearray(88)
    struct.pack_into("<III", info, 0, flags, low // 1024, mem_upper)
    struct.pack_into("<II", info, 44, len(mmap), MMAP_ADDR)
    struct.pack_into("<I", info, 64, NAME_ADDR)
    return bytes(info), mmap


def load_multiboot(machine: Machine, data: bytes, name: str = "image") -> LoadedGuest:
    """A Multiboot v1 ELF kernel, entered in flat protected mode (see the module docstring)."""
    if not data:
        raise GuestError(f"{name}: empty file")
    entry, segs = parse_elf(data, name)
    _off, flags = find_multiboot_header(data, name)
    unsupported = flags & 0xFFFF & ~MB_SUPPORTED_REQUIRED
    if unsupported:
        raise GuestError(f"{name}: multiboot header requires features aero does not provide "
                         f"(flags {unsupported:#x}: bit 2 is a video mode)")
    ram = machine.config.ram_size
    for i, s in enumerate(segs):
        if s.paddr + s.memsz > ram:
            raise GuestError(f"{name}: segment {i} at {s.paddr:#x}+{s.memsz:#x} lies outside "
                             f"RAM ({ram:#x} bytes)")
        if s.paddr < LOADER_AREA[1] and s.paddr + s.memsz > LOADER_AREA[0]:
            raise GuestError(f"{name}: segment {i} at {s.paddr:#x}+{s.memsz:#x} overlaps the "
                             f"boot information area {LOADER_AREA[0]:#x}-{LOADER_AREA[1]:#x}")
    if not any(s.paddr <= entry < s.paddr + s.memsz for s in segs):
        raise GuestError(f"{name}: entry point {entry:#x} is outside every loaded segment")
    if ram < LOADER_AREA[1]:
        raise GuestError(f"{name}: {ram:#x} bytes of RAM cannot hold the boot information")

    machine.reset()
    for s in segs:
        machine.write(s.paddr, data[s.offset:s.offset + s.filesz] + bytes(s.memsz - s.filesz))
    gdt = (bytes(8) + _descriptor(0, 0xFFFFF, 0x9B, 0xC) + _descriptor(0, 0xFFFFF, 0x93, 0xC))
    info, mmap = multiboot_info(ram)
    machine.write(GDT_ADDR, gdt)
    machine.write(INFO_ADDR, info)
    machine.write(MMAP_ADDR, mmap)
    machine.write(NAME_ADDR, BOOT_LOADER_NAME)

    r = machine.get_regs()
    for reg in ("ecx", "edx", "ebp", "esi", "edi"):
        setattr(r, reg, 0)
    r.eax, r.ebx, r.esp = MB_BOOT_MAGIC, INFO_ADDR, MB_STACK
    r.eip, r.eflags = entry, 0x2
    r.cr0 = (r.cr0 | 0x1) & ~0x80000000
    r.gdtr_base, r.gdtr_limit = GDT_ADDR, len(gdt) - 1
    r.cs = Segment(FLAT_CS, 0, 0xFFFFFFFF, CODE32_ATTR)
    for seg in ("ds", "es", "fs", "gs", "ss"):
        setattr(r, seg, Segment(FLAT_DS, 0, 0xFFFFFFFF, DATA32_ATTR))
    r.cpl = 0
    machine.set_regs(r)
    return LoadedGuest("multiboot", entry, len(data))


# ---- Linux bzImage ------------------------------------------------------------------------

@dataclass(frozen=True)
class LinuxHeader:
    """The parts of a bzImage's setup header the loader uses.

    ``kernel_end`` is the first byte above everything the kernel occupies while it boots:
    the protected-mode image at 1 MB and, from protocol 2.10 on, ``init_size`` bytes from
    ``pref_address`` (where a relocatable kernel decompresses itself).
    """

    version: int
    setup_sects: int
    pm_offset: int  # file offset of the protected-mode kernel
    pm_size: int  # bytes of it (syssize * 16)
    header_end: int  # one past the setup header's last byte (file and zero page offset)
    loadflags: int
    initrd_addr_max: int
    cmdline_size: int
    kernel_end: int


def parse_linux_header(data: bytes, name: str = "image") -> LinuxHeader:
    """Check a bzImage's setup header and return what loading it needs."""
    if len(data) < 0x264 or data[HDR_MAGIC_OFF:HDR_MAGIC_OFF + 4] != LINUX_MAGIC:
        raise LinuxBootError(f"{name}: not a Linux bzImage (no 'HdrS' signature at offset "
                             f"{HDR_MAGIC_OFF:#x})")
    (boot_flag,) = struct.unpack_from("<H", data, HDR_BOOT_FLAG)
    if boot_flag != 0xAA55:
        raise LinuxBootError(f"{name}: not a Linux bzImage (boot flag {boot_flag:#06x}, "
                             f"expected 0xaa55)")
    (version,) = struct.unpack_from("<H", data, HDR_VERSION)
    if version < LINUX_MIN_VERSION:
        raise LinuxBootError(f"{name}: Linux boot protocol {version >> 8}.{version & 0xFF:02d} "
                             f"is too old: aero needs 2.06 or later")
    loadflags = data[HDR_LOADFLAGS]
    if not loadflags & LOADED_HIGH:
        raise LinuxBootError(f"{name}: a zImage (kernel loaded below 1 MB) is not supported; "
                             f"use a bzImage")
    setup_sects = data[HDR_SETUP_SECTS] or 4
    pm_offset = (setup_sects + 1) * 512
    (syssize,) = struct.unpack_from("<I", data, 0x1F4)
    pm_size = syssize * 16
    if pm_size == 0 or pm_offset + pm_size > len(data):
        raise LinuxBootError(f"{name}: truncated bzImage: the protected-mode kernel ends at "
                             f"{pm_offset + pm_size:#x}, the file is {len(data):#x} bytes")
    header_end = HDR_JUMP + 2 + data[HDR_JUMP + 1]
    (initrd_addr_max,) = struct.unpack_from("<I", data, HDR_INITRD_ADDR_MAX)
    (cmdline_size,) = struct.unpack_from("<I", data, HDR_CMDLINE_SIZE)
    kernel_end = LINUX_KERNEL_ADDR + pm_size
    if version >= 0x020A:
        (pref_address,) = struct.unpack_from("<Q", data, HDR_PREF_ADDRESS)
        (init_size,) = struct.unpack_from("<I", data, HDR_INIT_SIZE)
        kernel_end = max(kernel_end, max(pref_address, LINUX_KERNEL_ADDR) + init_size)
    return LinuxHeader(version, setup_sects, pm_offset, pm_size, min(header_end, 0x290, len(data)),
                       loadflags, initrd_addr_max, cmdline_size, kernel_end)


def linux_e820(ram_size: int) -> list[tuple[int, int, int]]:
    """The E820 map handed to Linux, as (base, length, type): conventional memory below the
    EBDA usable, the EBDA, VGA, option-ROM and BIOS area (9FC00h-100000h) reserved, RAM from
    1 MB up usable."""
    entries = [(0, min(ram_size, EBDA_START), E820_RAM),
               (EBDA_START, 0x100000 - EBDA_START, E820_RESERVED)]
    if ram_size > 0x100000:
        entries.append((0x100000, ram_size - 0x100000, E820_RAM))
    return entries


@dataclass(frozen=True)
class LinuxLayout:
    """Where the loader puts things: the zero page, the command line and the initrd."""

    boot_params: bytes  # the 4 KB zero page
    cmdline: bytes  # NUL-terminated
    initrd_addr: int  # 0 without an initrd
    initrd_size: int


def linux_layout(data: bytes, hdr: LinuxHeader, ram_size: int, initrd: bytes | None,
                 cmdline: str, name: str = "image") -> LinuxLayout:
    """Check the initrd and command line against the kernel's limits and the RAM, and build
    the zero page. Pure: nothing is written to a machine."""
    if hdr.kernel_end > ram_size:
        raise LinuxBootError(f"{name}: the kernel needs memory up to {hdr.kernel_end:#x} while "
                             f"it boots; the machine has {ram_size:#x} bytes of RAM")
    try:
        cmd = cmdline.encode("ascii")
    except UnicodeEncodeError:
        raise LinuxBootError("the kernel command line must be ASCII") from None
    if b"\0" in cmd:
        raise LinuxBootError("the kernel command line contains a NUL byte")
    limit = min(hdr.cmdline_size, CMDLINE_AREA_END - CMDLINE_ADDR - 1)
    if len(cmd) > limit:
        raise LinuxBootError(f"the kernel command line is {len(cmd)} bytes; {name} takes at "
                             f"most {limit} (cmdline_size)")
    initrd_addr = initrd_size = 0
    if initrd is not None:
        if not initrd:
            raise LinuxBootError("the initrd is empty")
        top = min(ram_size, hdr.initrd_addr_max + 1) & ~0xFFF
        initrd_addr = (top - len(initrd)) & ~0xFFF
        if top - len(initrd) < 0 or initrd_addr < hdr.kernel_end:
            raise LinuxBootError(
                f"the initrd ({len(initrd)} bytes) does not fit between the kernel (up to "
                f"{hdr.kernel_end:#x}) and {top:#x} (the lower of RAM, {ram_size:#x} bytes, "
                f"and the kernel's initrd_addr_max, {hdr.initrd_addr_max:#x})")
        initrd_size = len(initrd)
    bp = bytearray(4096)
    bp[SETUP_HDR_OFF:hdr.header_end] = data[SETUP_HDR_OFF:hdr.header_end]
    bp[HDR_TYPE_OF_LOADER] = TYPE_OF_LOADER
    bp[HDR_LOADFLAGS] = LOADED_HIGH  # no QUIET_FLAG, no heap (the setup code does not run)
    struct.pack_into("<H", bp, HDR_HEAP_END_PTR, 0)
    struct.pack_into("<II", bp, HDR_RAMDISK_IMAGE, initrd_addr, initrd_size)
    struct.pack_into("<I", bp, HDR_CMD_LINE_PTR, CMDLINE_ADDR)
    e820 = linux_e820(ram_size)
    bp[BP_E820_ENTRIES] = len(e820)
    for i, (base, length, kind) in enumerate(e820):
        struct.pack_into("<QQI", bp, BP_E820_TABLE + 20 * i, base, length, kind)
    struct.pack_into("<I", bp, BP_ALT_MEM_K, max(0, ram_size - 0x100000) // 1024)
    return LinuxLayout(bytes(bp), cmd + b"\0", initrd_addr, initrd_size)


def load_linux(machine: Machine, data: bytes, initrd: bytes | None = None, cmdline: str = "",
               name: str = "image") -> LoadedGuest:
    """A bzImage kernel, entered by the 32-bit boot protocol (boot.rst, "32-bit Boot
    Protocol"): the protected-mode kernel at 1 MB, the zero page at :data:`ZERO_PAGE` with
    the image's setup header (type_of_loader=0xFF, loadflags=LOADED_HIGH, cmd_line_ptr,
    ramdisk_image/ramdisk_size) and the E820 map of :func:`linux_e820`; the initrd as high
    as initrd_addr_max and the RAM allow, 4 KB aligned. Entry: CR0.PE=1 with paging off,
    interrupts off (EFLAGS=2), a GDT at :data:`LINUX_GDT_ADDR` with flat 4 GB __BOOT_CS
    (0x10, execute/read) and __BOOT_DS (0x18, read/write); CS=0x10, DS=ES=SS=FS=GS=0x18;
    ESI=the zero page; EBP=EDI=EBX=0 (and EAX=ECX=EDX=0); ESP=:data:`LINUX_STACK`;
    EIP=1 MB."""
    hdr = parse_linux_header(data, name)
    lay = linux_layout(data, hdr, machine.config.ram_size, initrd, cmdline, name)
    machine.reset()
    machine.write(LINUX_KERNEL_ADDR, data[hdr.pm_offset:hdr.pm_offset + hdr.pm_size])
    gdt = (bytes(16) + _descriptor(0, 0xFFFFF, 0x9B, 0xC) + _descriptor(0, 0xFFFFF, 0x93, 0xC))
    machine.write(LINUX_GDT_ADDR, gdt)
    machine.write(ZERO_PAGE, lay.boot_params)
    machine.write(CMDLINE_ADDR, lay.cmdline)
    if initrd is not None:
        machine.write(lay.initrd_addr, initrd)

    r = machine.get_regs()
    for reg in ("eax", "ecx", "edx", "ebx", "ebp", "edi"):
        setattr(r, reg, 0)
    r.esi, r.esp = ZERO_PAGE, LINUX_STACK
    r.eip, r.eflags = LINUX_KERNEL_ADDR, 0x2
    r.cr0 = 0x00000011  # PE and ET: caches on, as firmware leaves them; paging off
    r.gdtr_base, r.gdtr_limit = LINUX_GDT_ADDR, len(gdt) - 1
    r.cs = Segment(BOOT_CS, 0, 0xFFFFFFFF, CODE32_ATTR)
    for seg in ("ds", "es", "fs", "gs", "ss"):
        setattr(r, seg, Segment(BOOT_DS, 0, 0xFFFFFFFF, DATA32_ATTR))
    r.cpl = 0
    machine.set_regs(r)
    return LoadedGuest("linux", LINUX_KERNEL_ADDR, len(data))
