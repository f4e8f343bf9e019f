"""The cpio "newc" writer and the initramfs of the bundled Linux guest: exact bytes of a tiny
archive (derived from the format, not from another tool), round trips through the reader,
byte-determinism, the initramfs layout, and the fetch errors on a machine without apt."""

from __future__ import annotations

import random
import shutil
import stat
from pathlib import Path

import pytest

from aero import linuxguest as lg
from aero.linuxguest import CpioEntry, build_initramfs, read_cpio, write_cpio


def test_tiny_archive_exact_bytes() -> None:
    # newc: "070701", then 13 fields of 8 hex digits (ino mode uid gid nlink mtime filesize
    # devmajor devminor rdevmajor rdevminor namesize check); the name with its NUL padded so
    # that header + name is a multiple of 4; the data padded to 4; a TRAILER!!! member.
    data = write_cpio([CpioEntry("a", stat.S_IFREG | 0o644, b"x")])
    head = "070701" + "".join(f"{v:08X}" for v in (1, 0o100644, 0, 0, 1, 0, 1, 0, 0, 0, 0, 2, 0))
    trailer = "070701" + "".join(f"{v:08X}" for v in (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0))
    want = (head.encode() + b"a\0" + b"x\0\0\0"            # 110 + 2 = 112: no name padding
            + trailer.encode() + b"TRAILER!!!\0" + b"\0" * 3)  # 110 + 11 = 121 -> 124
    assert data == want


def sample_entries() -> list[CpioEntry]:
    return [
        CpioEntry("bin", stat.S_IFDIR | 0o755),
        CpioEntry("bin/tool", stat.S_IFREG | 0o755, bytes(range(256)) * 3 + b"odd"),
        CpioEntry("bin/link", stat.S_IFLNK | 0o777, b"tool"),
        CpioEntry("dev", stat.S_IFDIR | 0o755),
        CpioEntry("dev/ttyS0", stat.S_IFCHR | 0o600, rdev=(4, 64)),
        CpioEntry("empty", stat.S_IFREG | 0o644),
        CpioEntry("a-long-name-" + "n" * 77, stat.S_IFREG | 0o644, b"12345"),
    ]


def test_round_trip_sorted_with_alignment() -> None:
    entries = sample_entries()
    data = write_cpio(entries)
    back = read_cpio(data)
    assert back == sorted(entries, key=lambda e: e.path.split("/"))
    assert len(data) % 4 == 0
    # Every member header starts on a 4-byte boundary.
    pos = 0
    while (pos := data.find(b"070701", pos)) >= 0:
        assert pos % 4 == 0
        pos += 6
    inos = [int(data[m + 6:m + 14], 16) for m in range(len(data)) if data[m:m + 6] == b"070701"]
    assert inos[:-1] == list(range(1, len(entries) + 1))  # then the trailer's 0


def test_directories_precede_their_contents() -> None:
    entries = [CpioEntry("a/b", stat.S_IFREG | 0o644, b""), CpioEntry("a", stat.S_IFDIR | 0o755),
               CpioEntry("a-b", stat.S_IFREG | 0o644, b"")]
    assert [e.path for e in read_cpio(write_cpio(entries))] == ["a", "a/b", "a-b"]


def test_byte_deterministic_whatever_the_input_order() -> None:
    entries = sample_entries()
    first = write_cpio(entries)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = entries[:]
        rng.shuffle(shuffled)
        assert write_cpio(shuffled) == first


@pytest.mark.parametrize("entries, match", [
    ([CpioEntry("/abs", stat.S_IFREG)], "bad archive path"),
    ([CpioEntry("", stat.S_IFREG)], "bad archive path"),
    ([CpioEntry("x", stat.S_IFREG), CpioEntry("x", stat.S_IFREG)], "duplicate"),
])
def test_writer_rejects_bad_paths(entries: list[CpioEntry], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_cpio(entries)


def test_reader_rejects_damage() -> None:
    data = write_cpio(sample_entries())
    with pytest.raises(ValueError, match="no newc header"):
        read_cpio(b"070707" + data[6:])
    with pytest.raises(ValueError):
        read_cpio(data[:200])
    with pytest.raises(ValueError, match="no newc header"):
        read_cpio(data[:-124])  # the trailer is missing


def test_initramfs_layout() -> None:
    busybox = b"\x7fELF fake busybox" * 10
    members = {e.path: e for e in read_cpio(build_initramfs(busybox))}
    assert members["bin/busybox"].data == busybox
    assert stat.S_ISREG(members["bin/busybox"].mode) and members["bin/busybox"].mode & 0o111
    init = members["init"]
    assert stat.S_ISREG(init.mode) and init.mode & 0o111
    assert init.data.startswith(b"#!/bin/sh\n") and lg.READY_MARKER in init.data
    assert b"poweroff -f" in init.data
    for applet in ("sh", "mount", "echo", "setsid", "cttyhack", "poweroff"):
        link = members[f"bin/{applet}"]
        assert stat.S_ISLNK(link.mode) and link.data == b"busybox"
    assert stat.S_ISCHR(members["dev/console"].mode) and members["dev/console"].rdev == (5, 1)
    assert stat.S_ISCHR(members["dev/ttyS0"].mode) and members["dev/ttyS0"].rdev == (4, 64)
    for d in ("proc", "sys", "dev", "bin"):
        assert stat.S_ISDIR(members[d].mode)
    # Every command /init runs is an applet linked in /bin.
    for line in init.data.decode().splitlines()[1:]:
        for word in line.split():
            if word in ("mount", "echo", "setsid", "cttyhack", "sh", "poweroff"):
                assert word in lg.APPLETS


def test_initramfs_is_deterministic() -> None:
    assert build_initramfs(b"busybox-bytes") == build_initramfs(b"busybox-bytes")
    assert build_initramfs(b"a") != build_initramfs(b"b")
    assert lg.layout_id() == lg.layout_id()


def test_fetch_without_apt_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, apt-cache or dpkg-deb
    with pytest.raises(lg.AptUnavailable, match="pass your own kernel and initramfs"):
        lg.fetch(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_fetch_with_unknown_package_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    # Stand-ins for apt that know no package: the message names the i386 set-up.
    for tool in ("apt-cache", "apt-get", "dpkg-deb"):
        p = tmp_path / tool
        p.write_text("#!/bin/sh\nexit 100\n")
        p.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lg.AptUnavailable, match="dpkg --add-architecture i386"):
        lg.fetch(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def _fake_apt(tmp_path: Path) -> Path:
    """Stand-ins for apt-cache and apt-get whose download is corrupt (not a .deb), beside
    the real dpkg-deb, which must refuse it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-cache").write_text(
        '#!/bin/sh\ncase "$3" in\n'
        '  linux-image-686:i386) printf "Package: linux-image-686\\nVersion: 6.1.99-1\\n'
        'Depends: linux-image-6.1.0-99-686 (= 6.1.99-1)\\n" ;;\n'
        '  linux-image-6.1.0-99-686:i386) printf "Version: 6.1.99-1\\n" ;;\n'
        '  busybox-static:i386) printf "Version: 1:1.35.0-4\\n" ;;\n'
        '  *) exit 100 ;;\nesac\n')
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\nprintf 'truncated' > linux-image.deb\nprintf 'junk' > busybox.deb\n")
    for tool in ("apt-cache", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "dpkg-deb").symlink_to(shutil.which("dpkg-deb"))
    return bin_dir


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_corrupt_package_download_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys) -> None:
    from aero.cli import main

    monkeypatch.setenv("PATH", f"{_fake_apt(tmp_path)}:/usr/bin:/bin")
    cache = tmp_path / "cache"
    with pytest.raises(lg.LinuxGuestError, match="dpkg-deb -x failed"):
        lg.fetch(cache)
    assert list(cache.iterdir()) == []  # no final directory, no temporary left behind
    monkeypatch.setenv("AERO_LINUX_CACHE", str(cache))
    for cmd in ("run", "record"):
        assert main([cmd, "linux", "--ticks", "1000"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("aero: error: dpkg-deb -x failed") and err.count("\n") == 1, err
    assert list(cache.iterdir()) == []
