"""Process checks for tests that start QEMU: nothing may be left running."""

from __future__ import annotations

from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def assert_gone(pid: int) -> None:
    assert not Path(f"/proc/{pid}").exists(), f"QEMU process {pid} is still there"
    assert group_members(pid) == []
