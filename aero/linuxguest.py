"""The bundled Linux guest: Debian 12's i386 kernel and a busybox initramfs built here.

``fetch()`` downloads two Debian packages with ``apt-get download`` (apt checks their
signatures and hashes against the archive's signed lists): the kernel (``linux-image-686``,
whose dependency ``linux-image-6.1.0-NN-686`` holds ``/boot/vmlinuz-*``) and
``busybox-static``, both for i386. They are unpacked with ``dpkg-deb -x`` and the kernel and
the busybox binary are kept in a cache directory named after the two package versions.
The initramfs is built from busybox by :func:`build_initramfs`, with the cpio writer below.

Invariants:

* :func:`build_initramfs` and :func:`write_cpio` are pure: the same busybox bytes give the
  same archive bytes (entries sorted by path, inode numbers in that order, every mtime,
  uid and gid zero).
* Nothing appears under a final cache name until it is complete: a package directory is
  built under a temporary name and renamed, and the initramfs is written to a temporary
  file and renamed.
* Subprocesses (apt-cache, apt-get, dpkg-deb) run with a timeout in their own process
  group, which is killed (SIGTERM, then SIGKILL) when the time is up.

The cache is ``$AERO_LINUX_CACHE`` when set, else ``$XDG_CACHE_HOME/aero/linux``
(``~/.cache/aero/linux``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

KERNEL_PACKAGE = "linux-image-686:i386"
BUSYBOX_PACKAGE = "busybox-static:i386"
APT_TIMEOUT = 600.0  # seconds for one apt-get download (52 MB for the kernel package)
TOOL_TIMEOUT = 120.0

# The kernel command line the bundled guest boots with (docs/linux.md says why each):
# the console on COM1 at 115200 baud (the 8250 console's default is 9600, and aero models
# character time while the kernel busy-waits on every byte); no KASLR (kernel addresses do
# not move when the initrd or the command line changes, so runs compare instruction by
# instruction); the TSC trusted (it is the guest clock itself, and the only watchdog, the
# PIT, loses ticks while the console holds interrupts off); no crypto self-tests (three
# billion instructions of Diffie-Hellman exponentiation nothing here uses).
DEFAULT_CMDLINE = "console=ttyS0,115200 nokaslr tsc=reliable cryptomgr.notests"
READY_MARKER = b"aero-init: ready"
RAM_SIZE = 128 << 20

# /init: mount the virtual file systems, say the guest is up, run a shell on the serial
# console (cttyhack opens the console's real tty, so the shell gets job control), and power
# off when it exits.
INIT_SCRIPT = b"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "aero-init: ready"
setsid cttyhack sh
echo "aero-init: shell exited, powering off"
poweroff -f
"""

# Busybox applets linked in /bin: what /init uses and a small interactive tool set.
APPLETS = (
    "cat", "cttyhack", "date", "dmesg", "echo", "env", "free", "grep", "head", "ls",
    "mkdir", "mknod", "mount", "poweroff", "ps", "reboot", "setsid", "sh", "sleep", "sync",
    "tail", "true", "umount", "uname", "wc",
)

# Device nodes the kernel and /init need before devtmpfs is mounted:
# (path, major, minor). /dev/console is where the kernel opens init's standard streams.
DEVICE_NODES = (("dev/console", 5, 1), ("dev/null", 1, 3), ("dev/ttyS0", 4, 64))


class LinuxGuestError(RuntimeError):
    """The Linux guest cannot be fetched or built; the message says what to do."""


class AptUnavailable(LinuxGuestError):
    """This machine has no apt (or no i386 package lists): the guest cannot be fetched."""


# ---- cpio "newc" ------------------------------------------------------------------------

CPIO_MAGIC = b"070701"
CPIO_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member: ``mode`` holds the file type bits (stat.S_IFDIR, S_IFREG,
    S_IFLNK, S_IFCHR) and the permissions; ``data`` is a file's contents or a symlink's
    target; ``rdev`` is (major, minor) of a device node."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _cpio_header(ino: int, mode: int, nlink: int, size: int, rdev: tuple[int, int],
                 namesize: int) -> bytes:
    # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize
    # check, each eight hex digits.
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    return CPIO_MAGIC + b"".join(b"%08X" % f for f in fields)


def write_cpio(entries: Iterable[CpioEntry]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks into its initramfs.

    Deterministic: entries are written sorted by path (so a directory precedes what it
    holds), inode numbers count from 1 in that order, mtimes, uids and gids are zero.
    Paths are relative, without a leading slash; duplicate paths are an error."""
    items = sorted(entries, key=lambda e: e.path.split("/"))
    paths = [e.path for e in items]
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate paths in the archive")
    out = bytearray()
    for ino, e in enumerate(items, 1):
        if not e.path or e.path.startswith("/") or e.path == CPIO_TRAILER:
            raise ValueError(f"bad archive path {e.path!r}")
        name = e.path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        head = _cpio_header(ino, e.mode, nlink, len(e.data), e.rdev, len(name))
        out += head + name + _pad4(len(head) + len(name))
        out += e.data + _pad4(len(e.data))
    name = CPIO_TRAILER.encode() + b"\0"
    head = _cpio_header(0, 0, 1, 0, (0, 0), len(name))
    out += head + name + _pad4(len(head) + len(name))
    return bytes(out)


def read_cpio(data: bytes) -> list[CpioEntry]:
    """The entries of a "newc" archive (up to its trailer), in archive order.

    Raises ValueError on a bad magic, a truncated member or a missing trailer."""
    entries = []
    pos = 0
    while True:
        if pos + 110 > len(data) or data[pos:pos + 6] != CPIO_MAGIC:
            raise ValueError(f"no newc header at offset {pos}")
        try:
            f = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise ValueError(f"bad newc header at offset {pos}") from None
        mode, size, rdev, namesize = f[1], f[6], (f[9], f[10]), f[11]
        name_end = pos + 110 + namesize
        if namesize < 1 or name_end > len(data) or data[name_end - 1] != 0:
            raise ValueError(f"bad name in the member at offset {pos}")
        name = data[pos + 110:name_end - 1].decode()
        start = name_end + (-(110 + namesize) % 4)
        if name == CPIO_TRAILER:
            return entries
        if start + size > len(data):
            raise ValueError(f"member {name!r} is truncated")
        entries.append(CpioEntry(name, mode, bytes(data[start:start + size]), rdev))
        pos = start + size + (-size % 4)


def initramfs_entries(busybox: bytes) -> list[CpioEntry]:
    """The initramfs members: busybox, its applet links, device nodes, /init."""
    d = stat.S_IFDIR | 0o755
    entries = [CpioEntry(p, d) for p in ("bin", "dev", "proc", "sys", "tmp")]
    entries.append(CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox))
    entries += [CpioEntry(f"bin/{a}", stat.S_IFLNK | 0o777, b"busybox") for a in APPLETS]
    entries += [CpioEntry(p, stat.S_IFCHR | 0o600, rdev=(ma, mi)) for p, ma, mi in DEVICE_NODES]
    entries.append(CpioEntry("init", stat.S_IFREG | 0o755, INIT_SCRIPT))
    return entries


def build_initramfs(busybox: bytes) -> bytes:
    """The initramfs archive (uncompressed newc) for ``busybox``; deterministic."""
    return write_cpio(initramfs_entries(busybox))


def layout_id() -> str:
    """A short hash of everything in the initramfs besides busybox (the init script, the
    applet links, the device nodes, the archive writer's conventions)."""
    return hashlib.sha256(build_initramfs(b"")).hexdigest()[:12]


# ---- fetching -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LinuxGuest:
    """The fetched guest: kernel and initramfs files and the package versions they are from."""

    kernel: Path
    initrd: Path
    kernel_package: str  # the versioned package, e.g. linux-image-6.1.0-57-686:i386
    kernel_version: str  # its Debian version
    busybox_version: str
    cmdline: str = DEFAULT_CMDLINE


def cache_root() -> Path:
    """Where fetched guests are kept (see the module docstring)."""
    env = os.environ.get("AERO_LINUX_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aero" / "linux"


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> str:
    """Run ``cmd`` in its own process group with a timeout; its stdout, or LinuxGuestError
    with the end of its stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd,
                                start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            raise LinuxGuestError(f"{cmd[0]} {cmd[1]} timed out after {timeout:.0f} s") from None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # helpers it left behind
            except (ProcessLookupError, PermissionError):
                pass
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = " ".join(stderr.strip().splitlines()[-2:]) or f"exit status {proc.returncode}"
        raise LinuxGuestError(f"{' '.join(cmd[:2])} failed: {tail}")
    return stdout


def _need_tools() -> None:
    missing = [t for t in ("apt-cache", "apt-get", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        raise AptUnavailable(
            f"the bundled Linux guest is fetched with apt, and {', '.join(missing)} is not "
            f"installed here: pass your own kernel and initramfs instead "
            f"(aero run KERNEL --initrd FILE)")


def _show(package: str) -> dict[str, str]:
    """The candidate version's fields from ``apt-cache show``."""
    try:
        text = _run(["apt-cache", "show", "--no-all-versions", package], TOOL_TIMEOUT)
    except LinuxGuestError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        m = re.match(r"([A-Za-z-]+):\s*(.*)", line)
        if m:
            fields[m.group(1)] = m.group(2)
    if "Version" not in fields:
        raise AptUnavailable(
            f"apt knows no package {package}: run `dpkg --add-architecture i386 && "
            f"apt-get update` as root once, or pass your own kernel and initramfs "
            f"(aero run KERNEL --initrd FILE)")
    return fields


def resolve_packages() -> tuple[str, str, str]:
    """(versioned kernel package, its version, busybox-static version), from apt's lists."""
    _need_tools()
    meta = _show(KERNEL_PACKAGE)
    deps = [d.strip().split()[0] for d in meta.get("Depends", "").split(",") if d.strip()]
    images = [d for d in deps if re.fullmatch(r"linux-image-\d[\w.+-]*", d)]
    if not images:
        raise LinuxGuestError(f"{KERNEL_PACKAGE} {meta['Version']} depends on no versioned "
                              f"kernel package (Depends: {meta.get('Depends', '')})")
    kernel_pkg = f"{images[0]}:i386"
    kernel_version = _show(kernel_pkg)["Version"]
    return kernel_pkg, kernel_version, _show(BUSYBOX_PACKAGE)["Version"]


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", version)


def _download(tmp: Path, kernel_pkg: str, kernel_version: str, bb_version: str) -> None:
    """Download and unpack both packages into ``tmp``; keep vmlinuz and busybox there."""
    debs = tmp / "debs"
    debs.mkdir()
    _run(["apt-get", "download", "-q", f"{kernel_pkg}={kernel_version}",
          f"{BUSYBOX_PACKAGE}={bb_version}"], APT_TIMEOUT, cwd=debs)
    root = tmp / "root"
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], TOOL_TIMEOUT)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    busybox = root / "bin" / "busybox"
    if len(kernels) != 1 or not busybox.is_file():
        raise LinuxGuestError(f"the packages hold {len(kernels)} kernels and "
                              f"{'a' if busybox.is_file() else 'no'} /bin/busybox; expected "
                              f"one /boot/vmlinuz-* and /bin/busybox")
    os.replace(kernels[0], tmp / "vmlinuz")
    os.replace(busybox, tmp / "busybox")
    shutil.rmtree(debs)
    shutil.rmtree(root)


def fetch(cache: Path | None = None) -> LinuxGuest:
    """The bundled Linux guest, downloaded and built unless already in the cache.

    Raises AptUnavailable when apt (or its i386 lists) is missing, LinuxGuestError when a
    download or unpacking fails."""
    kernel_pkg, kernel_version, bb_version = resolve_packages()
    root = cache or cache_root()
    target = root / f"{_safe(kernel_version)}_busybox-{_safe(bb_version)}"
    if not (target / "vmlinuz").is_file() or not (target / "busybox").is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".fetch-"))
        try:
            _download(tmp, kernel_pkg, kernel_version, bb_version)
            manifest = {"kernel_package": kernel_pkg, "kernel_version": kernel_version,
                        "busybox_package": BUSYBOX_PACKAGE, "busybox_version": bb_version}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            tmp.chmod(0o755)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / "vmlinuz").is_file():  # not another fetch that won the race
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    initrd = target / f"initrd-{layout_id()}.cpio"
    if not initrd.is_file():
        data = build_initramfs((target / "busybox").read_bytes())
        fd, name = tempfile.mkstemp(dir=target, prefix=".initrd-")
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(name, initrd)
    return LinuxGuest(target / "vmlinuz", initrd, kernel_pkg, kernel_version, bb_version)
