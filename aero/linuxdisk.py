"""The project-built boot disk: a raw image that boots the bundled Linux guest the way a PC
boots, BIOS -> SYSLINUX -> Linux, on the serial console.

Layout (16 MiB, 16 heads x 63 sectors, the IDE model's default geometry): an MBR with
SYSLINUX's boot code (``/usr/lib/syslinux/mbr/mbr.bin``) and one active FAT16 partition
(type 06h) from sector 2048 to the end, formatted by ``mformat`` and made bootable by
``syslinux --install`` (Debian's ``syslinux``, ``syslinux-common``, ``mtools``). The
partition holds ``VMLINUZ`` and ``INITRD`` (the Linux guest's kernel and initramfs,
:mod:`aero.linuxguest`) and ``SYSLINUX.CFG``, which boots them at once with the Linux guest's
command line and ``SERIAL 0 115200``, so the boot loader's own messages reach COM1 too.

Invariants:

* The image is a pure function of its inputs: the kernel and initramfs bytes, the
  configuration text, ``mbr.bin`` and the versions of syslinux and mtools. Every time-based
  or random value the tools write is fixed: the volume serial (``mformat -N``), the MBR disk
  signature, and every directory entry's timestamps, which are rewritten to 2000-01-01 after
  the tools ran. The cache key hashes all the inputs, so a stale image is never returned.
* Images appear in the cache atomically (a temporary file renamed into place).
* Tools run with a timeout in their own process group (:func:`aero.linuxguest._run`).

The cache is ``$AERO_LINUX_CACHE`` (as for the Linux guest) under ``disks/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path

from aero import linuxguest

__all__ = ["DISK_BYTES", "LinuxDiskError", "build_image", "disk_path", "syslinux_cfg"]

DISK_BYTES = 16 << 20
PART_START = 2048  # sectors: the first partition starts at 1 MiB
HEADS, SPT = 16, 63
MBR_CODE = Path("/usr/lib/syslinux/mbr/mbr.bin")
TOOL_TIMEOUT = 120.0
DISK_SIGNATURE = 0xAE50_0001
VOLUME_SERIAL = "AE500001"
FAT_DATE = (2000 - 1980) << 9 | 1 << 5 | 1  # 2000-01-01 in a FAT directory entry
LAYOUT_VERSION = 1  # bump when anything about the layout above changes


class LinuxDiskError(RuntimeError):
    """The tools are missing or failed; one line for the user."""


def syslinux_cfg(cmdline: str) -> str:
    """SYSLINUX.CFG: boot the kernel at once, talking on COM1 as well."""
    return ("SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\n"
            f"LABEL linux\n  KERNEL vmlinuz\n  INITRD initrd\n  APPEND {cmdline}\n")


def _chs(lba: int) -> bytes:
    """A partition-table CHS address (cylinders above 1023 saturate)."""
    cyl, rem = divmod(lba, HEADS * SPT)
    head, sec = divmod(rem, SPT)
    if cyl > 1023:
        cyl, head, sec = 1023, HEADS - 1, SPT - 1
    return bytes([head, (sec + 1) | (cyl >> 8) << 6, cyl & 0xFF])


def _mbr(code: bytes, sectors: int) -> bytes:
    mbr = bytearray(512)
    mbr[:len(code)] = code[:440]
    struct.pack_into("<I", mbr, 440, DISK_SIGNATURE)
    size = sectors - PART_START
    entry = bytes([0x80]) + _chs(PART_START) + bytes([0x06]) + _chs(sectors - 1) + \
        struct.pack("<II", PART_START, size)
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def _fix_timestamps(part: bytearray) -> None:
    """Rewrite the creation, access and write times of every entry in the FAT16 root
    directory to 2000-01-01 00:00:00 (the tools stamp them with the host's clock)."""
    bps, spc, reserved, nfats, root_entries = struct.unpack_from("<HBHBH", part, 11)
    (fat_sectors,) = struct.unpack_from("<H", part, 22)
    root = (reserved + nfats * fat_sectors) * bps
    del spc
    for i in range(root_entries):
        off = root + 32 * i
        first = part[off]
        if first == 0:
            break
        if first == 0xE5:
            continue
        part[off + 13] = 0  # creation time, tenths of a second
        struct.pack_into("<HHH", part, off + 14, 0, FAT_DATE, FAT_DATE)  # ctime, cdate, adate
        struct.pack_into("<HH", part, off + 22, 0, FAT_DATE)  # mtime, mdate


def _tool_versions() -> str:
    out = []
    for cmd in (["syslinux", "--version"], ["mformat", "--version"]):
        try:
            out.append(linuxguest._run(cmd, TOOL_TIMEOUT).strip() or "?")
        except linuxguest.LinuxGuestError:
            # syslinux --version prints on stderr and exits 0 or 1 depending on the build
            out.append(cmd[0])
    return "\n".join(out)


def build_image(kernel: bytes, initrd: bytes, cmdline: str) -> bytes:
    """The disk image's bytes (see the module docstring). Raises LinuxDiskError."""
    missing = [t for t in ("syslinux", "mformat", "mcopy") if shutil.which(t) is None]
    if missing or not MBR_CODE.is_file():
        raise LinuxDiskError(f"building the Linux boot disk needs {', '.join(missing) or MBR_CODE}"
                             f" (apt-get install syslinux syslinux-common mtools)")
    sectors = DISK_BYTES // 512
    with tempfile.TemporaryDirectory(prefix="aero-disk-") as tmp:
        d = Path(tmp)
        part = d / "part.img"
        with open(part, "wb") as f:
            f.truncate((sectors - PART_START) * 512)
        files = {"vmlinuz": kernel, "initrd": initrd,
                 "syslinux.cfg": syslinux_cfg(cmdline).encode()}
        for name, data in files.items():
            (d / name).write_bytes(data)
            os.utime(d / name, (946684800, 946684800))
        env_cmds = [
            ["mformat", "-i", str(part), "-N", VOLUME_SERIAL, "-h", str(HEADS), "-s", str(SPT),
             "-H", str(PART_START), "-T", str(sectors - PART_START), "::"],
            ["syslinux", "--install", str(part)],
            ["mcopy", "-m", "-i", str(part), *(str(d / n) for n in files), "::"],
        ]
        try:
            for cmd in env_cmds:
                linuxguest._run(cmd, TOOL_TIMEOUT, cwd=d)
        except linuxguest.LinuxGuestError as exc:
            raise LinuxDiskError(str(exc)) from None
        data = bytearray(part.read_bytes())
    _fix_timestamps(data)
    return _mbr(MBR_CODE.read_bytes(), sectors) + bytes(512 * (PART_START - 1)) + bytes(data)


def disk_path(cache: Path | None = None) -> Path:
    """The Linux boot disk in the cache, built on first use from the fetched Linux guest.
    Raises LinuxDiskError, or the Linux guest's errors when it cannot be fetched."""
    g = linuxguest.fetch()
    kernel, initrd = g.kernel.read_bytes(), g.initrd.read_bytes()
    key = hashlib.sha256()
    for part in (str(LAYOUT_VERSION).encode(), kernel, initrd, g.cmdline.encode(),
                 MBR_CODE.read_bytes() if MBR_CODE.is_file() else b"", _tool_versions().encode()):
        key.update(hashlib.sha256(part).digest())
    root = (cache or linuxguest.cache_root()) / "disks"
    target = root / f"linux-{key.hexdigest()[:16]}.img"
    if target.is_file():
        return target
    image = build_image(kernel, initrd, g.cmdline)
    root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=root, prefix=".disk-")
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(image)
    os.replace(name, target)
    return target
