"""`aero run` and `aero record` with a Linux kernel: --initrd, --append, --format linux, the
one-line errors (exit 2), and a trace's identity: the kernel and the initrd by hash in the
metadata and the digest, the command line in the configuration, both images packed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aero.traces.container import FrameKind, open_trace
from aero.traces.replay import load_contents
from test_linux_loader import bzimage

from aero.cli import main

# Print the initrd's first byte and the command line's first byte, then exit status 1.
PM_ECHO = bytes.fromhex(
    "8b8618020000"  # mov eax, [esi+0x218]   ramdisk_image
    "8a00"          # mov al, [eax]
    "e6e9"          # out 0xE9, al
    "8b8628020000"  # mov eax, [esi+0x228]   cmd_line_ptr
    "8a00"          # mov al, [eax]
    "e6e9"          # out 0xE9, al
    "31c0"          # xor eax, eax
    "e6f4")         # out 0xF4, al


@pytest.fixture()
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path / "traces"))
    k, rd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    k.write_bytes(bzimage(pm=PM_ECHO))
    rd.write_bytes(b"R" + bytes(999))
    return k, rd


def test_run_kernel_with_initrd_and_append(files: tuple[Path, Path], capsys) -> None:
    k, rd = files
    code = main(["run", str(k), "--initrd", str(rd), "--append", "Zconsole=ttyS0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["stop"] == "exit" and out["output"] == "RZ"


def test_run_default_command_line(files: tuple[Path, Path], capsys) -> None:
    from aero.linuxguest import DEFAULT_CMDLINE

    k, rd = files
    assert main(["run", str(k), "--initrd", str(rd), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["output"] == "R" + DEFAULT_CMDLINE[0]


@pytest.mark.parametrize("argv, match", [
    (["--format", "linux", "{rd}"], "not a Linux bzImage"),
    (["{old}"], "too old"),
    (["{k}", "--initrd", "{rd}", "--ram", str(17 << 20)], "needs memory up to"),
    (["{k}", "--initrd", "{big}"], "does not fit"),
    (["{k}", "--initrd", "{huge}"], "must fit in RAM"),
    (["{k}", "--append", "x" * 300], "at most 255"),
    (["{rd}", "--format", "flat", "--append", "quiet"], "for Linux kernels"),
    (["{rd}", "--format", "flat", "--initrd", "{rd}"], "for Linux kernels"),
    (["{k}", "--initrd", "/nonexistent/initrd"], "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(files: tuple[Path, Path], tmp_path: Path, capsys,
                                          argv: list[str], match: str) -> None:
    k, rd = files
    old = tmp_path / "old"
    old.write_bytes(bzimage(version=0x0204))
    # Within the 32 MB of RAM as a file, too big beside the kernel below initrd_addr_max and
    # the top of RAM: the boot protocol's check. Larger than RAM: refused before reading.
    big = tmp_path / "big"
    big.write_bytes(bytes(31 << 20))
    huge = tmp_path / "huge"
    huge.write_bytes(bytes(40 << 20))
    subst = {"{k}": str(k), "{rd}": str(rd), "{old}": str(old), "{big}": str(big),
             "{huge}": str(huge)}
    for cmd in ("run", "record"):
        assert main([cmd, *[subst.get(a, a) for a in argv]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("aero: error:") and err.count("\n") == 1, err
        assert match.lower() in err.lower(), err


def test_record_names_both_images_and_packs_them(files: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys) -> None:
    import hashlib

    k, rd = files
    trace = tmp_path / "k.aerotrace"
    assert main(["record", str(k), "--initrd", str(rd), "--append", "Zq", "-o", str(trace),
                 "--quiet", "--json"]) == 1
    capsys.readouterr()
    t = open_trace(trace)
    guest, machine = t.metadata["guest"], t.metadata["machine"]
    assert guest["fmt"] == "linux" and guest["sha256"] == hashlib.sha256(k.read_bytes()).hexdigest()
    assert guest["initrd_sha256"] == hashlib.sha256(rd.read_bytes()).hexdigest()
    assert guest["initrd_size"] == 1000 and machine["cmdline"] == "Zq"
    # The digest covers the initrd: another initrd, another digest.
    c = load_contents(t)
    other = c.guest.__class__(**{**c.guest.to_dict(), "initrd_sha256": "0" * 64})
    from aero.traces.record import replay_digest

    assert replay_digest(c.config.to_dict(), other).hexdigest() != \
        replay_digest(c.config.to_dict(), c.guest).hexdigest()
    assert main(["replay", str(trace), "--json"]) == 0
    capsys.readouterr()
    # Pack: both images in the trace; then it replays with an empty image store.
    assert main(["pack", str(trace), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 2 and info["image_bytes"] == k.stat().st_size + 1000
    frames = [f for f in open_trace(trace).frames if f.kind == FrameKind.IMAGE]
    assert len(frames) == 2
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "empty-store"))
    assert main(["replay", str(trace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["diverged"] is False


def test_replay_without_the_initrd_says_so(files: tuple[Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    k, rd = files
    trace = tmp_path / "k.aerotrace"
    assert main(["record", str(k), "--initrd", str(rd), "-o", str(trace), "--quiet"]) == 1
    store = tmp_path / "store"
    initrd_hash = open_trace(trace).metadata["guest"]["initrd_sha256"]
    (store / initrd_hash).unlink()
    capsys.readouterr()
    assert main(["replay", str(trace)]) == 2
    err = capsys.readouterr().err
    assert "initrd" in err and "aero pack" in err and err.count("\n") == 1



def test_bundled_linux_without_apt_says_what_to_do(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, apt-cache or dpkg-deb
    monkeypatch.setenv("AERO_LINUX_CACHE", str(tmp_path / "cache"))
    for cmd in ("run", "record"):
        assert main([cmd, "linux"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--initrd" in err and "apt" in err, err


def test_list_names_the_linux_guest(capsys) -> None:
    assert main(["run", "--list"]) == 0
    assert any(line.split()[:2] == ["linux", "linux"]
               for line in capsys.readouterr().out.splitlines())
