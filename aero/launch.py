"""Where a run starts: a machine configuration and a guest image, loaded into a Machine.

A recording names its guest by content (SHA-256), never by path: the recorder copies the
image into a local content-addressed store (as rr keeps the binaries a trace needs), replay
finds it there or inside the trace (``aero pack``), and a mismatch is an error, never a
silent substitution. A Linux guest has two images, the kernel and its initrd, and both are
named that way; its command line is part of the machine configuration
(``MachineConfig.cmdline``). A disk image (``--disk``, the primary IDE master, read-only) is
named the same way: its hash is part of the guest's identity, the recorder stores it, ``aero
pack`` embeds it, and replay uses that copy, so a disk file changed after the recording does
not change the replay (and one that cannot be found by its hash is a clear error). A
writable disk (``--disk FILE,rw``, ``GuestRef.disk_writable``) is the same image under a
copy-on-write overlay that is machine state: the file is only ever read.

Invariants:

* :func:`start_machine` is a pure function of (config, guest reference, image bytes).
* Nothing here takes a path from a trace file: images are looked up by their hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from aero import guests
from aero.loader import (
    FORMATS,
    MAX_IMAGE_BYTES,
    GuestError,
    detect_format,
    image_limit,
    load_flat,
    load_linux,
    load_multiboot,
    load_rom,
    read_image,
)
from aero.machine import Machine, MachineConfig

LOAD_FORMATS = ("flat", "rom", "multiboot", "linux")
LINUX_GUEST = "linux"  # the bundled Linux guest (aero.linuxguest), fetched on first use
PC_GUEST = "pc"  # the PC firmware: Debian's SeaBIOS (package seabios), booting from --disk
SEABIOS_IMAGE = Path("/usr/share/seabios/bios.bin")
VGA_BIOS_IMAGE = Path("/usr/share/seabios/vgabios-isavga.bin")  # SeaVGABIOS, ISA VGA build
VGA_BIOS_FILE = "vgaroms/vgabios-isavga.bin"  # the fw_cfg name SeaBIOS runs it from, as QEMU's
LINUX_DISK = "linux"  # --disk linux: the project-built boot disk (aero.linuxdisk)

__all__ = ["GuestRef", "LINUX_GUEST", "LaunchError", "ResolvedGuest", "find_image",
           "find_image_by_hash", "image_store", "read_input", "resolve", "resolve_guest",
           "start_machine", "store_image"]


class LaunchError(Exception):
    """A guest that cannot be found, built or loaded; one line for the user."""


@dataclass(frozen=True)
class GuestRef:
    """What a trace records about its guest: enough to find and load the same bytes."""

    name: str  # bundled guest name or the image's file name (informational)
    fmt: str  # flat, rom, multiboot or linux
    load_addr: int  # flat binaries: the load address
    sha256: str  # of the image bytes
    size: int
    # Linux: the initial ramdisk ("" and 0 without one). Written to metadata only when set,
    # so the metadata (and digest) of every other guest is what it always was.
    initrd_sha256: str = ""
    initrd_size: int = 0
    # The disk image on the primary IDE channel ("" and 0 without one), likewise optional.
    disk_sha256: str = ""
    disk_size: int = 0
    # The VGA option ROM given to the firmware through fw_cfg ("" and 0 without one).
    vgarom_sha256: str = ""
    vgarom_size: int = 0
    # The disk takes the guest's writes into a copy-on-write overlay (``--disk FILE,rw``):
    # the overlay is machine state, so it is in the keyframes and the image stays as hashed.
    disk_writable: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.initrd_sha256:
            del d["initrd_sha256"], d["initrd_size"]
        if not self.disk_sha256:
            del d["disk_sha256"], d["disk_size"]
        if not self.disk_writable:
            del d["disk_writable"]
        if not self.vgarom_sha256:
            del d["vgarom_sha256"], d["vgarom_size"]
        return d

    def identity(self) -> dict:
        """What determines the loaded machine (the name is informational only)."""
        d = self.to_dict()
        del d["name"]
        return d

    def image_hashes(self) -> list[str]:
        """SHA-256 of every image the guest needs: the guest image, the initrd, the disk,
        the VGA ROM."""
        return [self.sha256] + [h for h in (self.initrd_sha256, self.disk_sha256,
                                             self.vgarom_sha256) if h]

    @classmethod
    def from_dict(cls, d: object) -> GuestRef:
        if not isinstance(d, dict):
            raise LaunchError("trace metadata: 'guest' is not an object")
        try:
            ref = cls(str(d["name"]), str(d["fmt"]), int(d["load_addr"]), str(d["sha256"]),
                      int(d["size"]), str(d.get("initrd_sha256", "")),
                      int(d.get("initrd_size", 0)), str(d.get("disk_sha256", "")),
                      int(d.get("disk_size", 0)), str(d.get("vgarom_sha256", "")),
                      int(d.get("vgarom_size", 0)), d.get("disk_writable", False))
        except (KeyError, TypeError, ValueError) as exc:
            raise LaunchError(f"trace metadata: bad guest entry ({exc})") from None
        initrd_bad = ref.initrd_sha256 and (
            ref.fmt != "linux" or not _HEX64.fullmatch(ref.initrd_sha256)
            or not 0 < ref.initrd_size <= MAX_IMAGE_BYTES)
        disk_bad = ref.disk_sha256 and (
            not _HEX64.fullmatch(ref.disk_sha256)
            or not 0 < ref.disk_size <= MAX_IMAGE_BYTES or ref.disk_size % 512)
        disk_bad = disk_bad or not isinstance(ref.disk_writable, bool) or (
            ref.disk_writable and not ref.disk_sha256)
        disk_bad = disk_bad or (ref.vgarom_sha256 and (
            ref.fmt != "rom" or not _HEX64.fullmatch(ref.vgarom_sha256)
            or not 0 < ref.vgarom_size <= 1 << 20))
        if ref.fmt not in LOAD_FORMATS or not _HEX64.fullmatch(ref.sha256) \
                or not 0 < ref.size <= MAX_IMAGE_BYTES or initrd_bad or disk_bad:
            raise LaunchError(f"trace metadata: bad guest entry ({ref.fmt[:16]!r}, "
                              f"{ref.sha256[:16]!r}, {ref.size})")
        return ref


_HEX64 = re.compile(r"[0-9a-f]{64}")


def image_store() -> Path:
    """The content-addressed image store ($AERO_IMAGE_STORE, else the user cache)."""
    env = os.environ.get("AERO_IMAGE_STORE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aero" / "images"


def store_image(data: bytes) -> str:
    """Keep ``data`` in the image store (a private 0700 directory of 0600 files named by
    their SHA-256); returns the digest. Call it only for an image that loaded."""
    digest = hashlib.sha256(data).hexdigest()
    root = image_store()
    target = root / digest
    if not target.exists():
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".img-")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest


def find_image(ref: GuestRef) -> bytes | None:
    """The image with ``ref``'s hash from the store, or None."""
    return find_image_by_hash(ref.sha256, ref.size)


def find_image_by_hash(sha256: str, size: int) -> bytes | None:
    """The image with this SHA-256 and size from the store, or None.

    The file name is the validated lowercase hex digest and nothing else; the file is
    opened without following a symlink and must be a regular file of the recorded size
    (checked before it is read), whose content hashes to the digest."""
    if not _HEX64.fullmatch(sha256) or not 0 < size <= MAX_IMAGE_BYTES:
        return None
    try:
        fd = os.open(image_store() / sha256,
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None
        parts = []
        left = size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            left -= len(chunk)
        data = b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


@dataclass(frozen=True)
class ResolvedGuest:
    """A guest ready to start: its reference, its image and every image it needs by hash
    (the guest image and, for Linux, the initrd); a bundled guest may suggest a kernel
    command line and a RAM size."""

    ref: GuestRef
    data: bytes
    images: dict[str, bytes]
    cmdline: str | None = None
    ram_size: int | None = None


def read_input(spec: str, what: str, limit: int) -> bytes:
    """A file's bytes, bounded by ``limit`` before anything is read (aero.loader.read_image);
    a missing, unreadable, oversized or empty file is a one-line LaunchError naming it."""
    try:
        data = read_image(spec, limit)
    except FileNotFoundError:
        raise LaunchError(f"{spec}: no such file") from None
    except OSError as exc:
        raise LaunchError(f"{spec}: {exc.strerror}") from None
    except GuestError as exc:
        raise LaunchError(str(exc)) from None
    if not data:
        raise LaunchError(f"{spec}: empty {what}")
    return data


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bundled_linux() -> ResolvedGuest:
    from aero import linuxguest

    try:
        g = linuxguest.fetch()
    except linuxguest.LinuxGuestError as exc:
        raise LaunchError(str(exc)) from exc
    data, rd = g.kernel.read_bytes(), g.initrd.read_bytes()
    ref = GuestRef(LINUX_GUEST, "linux", 0, _digest(data), len(data), _digest(rd), len(rd))
    return ResolvedGuest(ref, data, {ref.sha256: data, ref.initrd_sha256: rd}, g.cmdline,
                         linuxguest.RAM_SIZE)


def with_disk(r: ResolvedGuest, disk: str, writable: bool = False) -> ResolvedGuest:
    """``r`` with a raw disk image file (a non-empty multiple of 512 bytes, at most
    MAX_IMAGE_BYTES) attached as the primary IDE master; ``writable``: the guest's writes go
    to a copy-on-write overlay (the file is only ever read). ``linux``, when no such file
    exists, is the project-built boot disk (:mod:`aero.linuxdisk`), built on first use."""
    if disk == LINUX_DISK and not Path(disk).exists():
        from aero import linuxdisk, linuxguest

        try:
            disk = str(linuxdisk.disk_path())
        except (linuxdisk.LinuxDiskError, linuxguest.LinuxGuestError) as exc:
            raise LaunchError(f"the Linux boot disk: {exc}") from None
        ram = r.ram_size or linuxguest.RAM_SIZE
        r = ResolvedGuest(r.ref, r.data, r.images, r.cmdline, ram)
    if Path(disk).is_dir():
        raise LaunchError(f"{disk}: is a directory, not a disk image")
    data = read_input(disk, "disk image", MAX_IMAGE_BYTES)
    if len(data) % 512:
        raise LaunchError(f"{disk}: a disk image must be a multiple of 512 bytes "
                          f"({len(data)} is not)")
    ref = r.ref
    ref = GuestRef(ref.name, ref.fmt, ref.load_addr, ref.sha256, ref.size, ref.initrd_sha256,
                   ref.initrd_size, _digest(data), len(data), ref.vgarom_sha256,
                   ref.vgarom_size, writable)
    return ResolvedGuest(ref, r.data, {**r.images, ref.disk_sha256: data}, r.cmdline,
                         r.ram_size)


def resolve(spec: str, fmt: str = "auto", load_addr: int = 0x7C00,
            initrd: str | None = None, *, ram_size: int | None = None,
            disk: str | None = None, disk_writable: bool = False) -> ResolvedGuest:
    """A bundled guest name (built or fetched on demand) or an image file, with an initrd
    file for a Linux kernel and a disk image file (``disk_writable``: behind a copy-on-write
    overlay). ram_size: the machine's RAM; an image file larger than it can use is refused
    before it is read (:func:`aero.loader.image_limit`)."""
    r = _resolve(spec, fmt, load_addr, initrd, ram_size=ram_size)
    return with_disk(r, disk, disk_writable) if disk is not None else r


def _resolve(spec: str, fmt: str, load_addr: int, initrd: str | None, *,
             ram_size: int | None) -> ResolvedGuest:
    path = Path(spec)
    if not path.exists() and spec == PC_GUEST:
        if initrd is not None:
            raise LaunchError(f"{spec}: an initrd is for Linux kernels")
        if not SEABIOS_IMAGE.exists():
            raise LaunchError(f"{spec}: the PC firmware {SEABIOS_IMAGE} is missing "
                              f"(apt-get install seabios)")
        data = read_input(str(SEABIOS_IMAGE), "firmware", MAX_IMAGE_BYTES)
        if not VGA_BIOS_IMAGE.exists():
            raise LaunchError(f"{spec}: the VGA BIOS {VGA_BIOS_IMAGE} is missing "
                              f"(apt-get install seabios)")
        vga = read_input(str(VGA_BIOS_IMAGE), "VGA BIOS", 1 << 20)
        ref = GuestRef(PC_GUEST, "rom", 0, _digest(data), len(data),
                       vgarom_sha256=_digest(vga), vgarom_size=len(vga))
        return ResolvedGuest(ref, data, {ref.sha256: data, ref.vgarom_sha256: vga})
    if not path.exists() and (spec in guests.GUESTS or spec in guests.BENCH_GUESTS
                              or spec in guests.SUPPORT_GUESTS):
        if initrd is not None:
            raise LaunchError(f"{spec}: an initrd is for Linux kernels")
        try:
            image = guests.build(spec)
        except guests.ToolchainError as exc:
            raise LaunchError(str(exc)) from exc
        data = image.path.read_bytes()
        ref = GuestRef(spec, image.fmt, image.load_addr, _digest(data), len(data))
        return ResolvedGuest(ref, data, {ref.sha256: data})
    if not path.exists() and spec == LINUX_GUEST and initrd is None:
        return _bundled_linux()
    if fmt not in FORMATS:
        raise LaunchError(f"unknown guest format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not path.exists():
        names = ", ".join([*guests.GUESTS, LINUX_GUEST])
        raise LaunchError(f"{spec}: no such file, and not a bundled guest ({names})")
    data = read_input(spec, "file", image_limit(ram_size))
    if fmt == "auto":
        fmt = detect_format(path, data)
    if initrd is not None and fmt != "linux":
        raise LaunchError(f"{spec}: an initrd is for Linux kernels, and this is a {fmt} image")
    ref = GuestRef(path.name, fmt, load_addr if fmt == "flat" else 0, _digest(data), len(data))
    images = {ref.sha256: data}
    if initrd is not None:
        rd = read_input(initrd, "initrd", image_limit(ram_size))
        ref = GuestRef(ref.name, fmt, 0, ref.sha256, ref.size, _digest(rd), len(rd))
        images[ref.initrd_sha256] = rd
    return ResolvedGuest(ref, data, images)


def resolve_guest(spec: str, fmt: str = "auto", load_addr: int = 0x7C00, *,
                  ram_size: int | None = None) -> tuple[GuestRef, bytes]:
    """A bundled guest name (built on demand) or an image file, as (reference, bytes)."""
    r = resolve(spec, fmt, load_addr, ram_size=ram_size)
    return r.ref, r.data


def _stored_image(images: dict[str, bytes] | None, sha256: str | None, size: int | None,
                  what: str, name: str) -> bytes | None:
    """The bytes of an image a guest names by hash (None if it names none), from the trace's
    embedded images or the image store; the content is verified against the hash."""
    if not sha256:
        return None
    data = (images or {}).get(sha256) or find_image_by_hash(sha256, size)
    if data is None or _digest(data) != sha256:
        hint = " (or give the disk image with --disk FILE)" if what == "the disk image" else ""
        raise LaunchError(f"{what} of {name} (sha256 {sha256[:16]}..., {size} bytes) is "
                          f"neither in the trace nor in the image store; run `aero pack` on "
                          f"the machine that recorded it{hint}")
    return data


def start_machine(config: MachineConfig, ref: GuestRef, data: bytes,
                  images: dict[str, bytes] | None = None) -> Machine:
    """A new machine with the guest loaded, at tick 0. A Linux guest's initrd is taken from
    ``images`` (by hash), else from the image store."""
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise LaunchError(f"guest image {ref.name}: content does not match its hash")
    if config.cmdline and ref.fmt != "linux":
        raise LaunchError(f"guest {ref.name}: a kernel command line is for Linux kernels, and "
                          f"this is a {ref.fmt} image")
    initrd = _stored_image(images, ref.initrd_sha256, ref.initrd_size, "the initrd", ref.name)
    disk = _stored_image(images, ref.disk_sha256, ref.disk_size, "the disk image", ref.name)
    vgarom = _stored_image(images, ref.vgarom_sha256, ref.vgarom_size, "the VGA BIOS",
                           ref.name)
    m = Machine(config)
    if vgarom is not None:
        m.add_firmware_file(VGA_BIOS_FILE, vgarom)
    if disk is not None:
        try:
            m.attach_disk(disk, writable=ref.disk_writable)
        except ValueError as exc:
            raise LaunchError(f"the disk image of {ref.name}: {exc}") from None
    try:
        if ref.fmt == "flat":
            load_flat(m, data, ref.load_addr, ref.name)
        elif ref.fmt == "rom":
            load_rom(m, data, ref.name)
        elif ref.fmt == "linux":
            load_linux(m, data, initrd, config.cmdline, ref.name)
        else:
            load_multiboot(m, data, ref.name)
    except GuestError as exc:
        raise LaunchError(str(exc)) from exc
    return m
