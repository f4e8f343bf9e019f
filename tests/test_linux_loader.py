"""The Linux boot protocol loader, on synthetic bzImages built here byte by byte: the zero
page, the E820 map, the initrd placement, the entry state, and a one-line LinuxBootError for
every input the protocol cannot take (no download needed)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from aero import loader
from aero.loader import GuestError, LinuxBootError, load_guest, load_linux
from aero.machine import Machine, MachineConfig, StopReason

MB = 1 << 20
RAM = 32 * MB
ZP = loader.ZERO_PAGE

# A protected-mode kernel: DS from the loader's GDT (0x18), type_of_loader from the zero
# page at ESI to the debug console, then exit status 1 through port F4h.
PM_CODE = bytes.fromhex(
    "66b81800"      # mov ax, 0x18
    "8ed8"          # mov ds, ax
    "8a8610020000"  # mov al, [esi+0x210]
    "e6e9"          # out 0xE9, al
    "31c0"          # xor eax, eax
    "e6f4")         # out 0xF4, al


def bzimage(*, version: int = 0x020F, setup_sects: int = 4, pm: bytes = PM_CODE,
            loadflags: int = 0x01, initrd_addr_max: int = 0x7FFFFFFF,
            cmdline_size: int = 255, pref_address: int = 0x1000000,
            init_size: int = 0x200000, magic: bytes = b"HdrS",
            boot_flag: int = 0xAA55) -> bytes:
    """A bzImage: setup sectors with a setup header (ending at 0x26C), then the
    protected-mode kernel padded to 16 bytes."""
    pm = pm + bytes(-len(pm) % 16)
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<I", setup, 0x1F4, len(pm) // 16)
    struct.pack_into("<H", setup, 0x1FA, 0xFFFF)  # vid_mode
    struct.pack_into("<H", setup, 0x1FE, boot_flag)
    setup[0x200:0x202] = bytes([0xEB, 0x6A])  # jmp: the header ends at 0x202 + 0x6A
    setup[0x202:0x206] = magic
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = loadflags | 0x80  # CAN_USE_HEAP as a kernel's own image might carry
    struct.pack_into("<I", setup, 0x214, 0x100000)  # code32_start
    struct.pack_into("<I", setup, 0x22C, initrd_addr_max)
    struct.pack_into("<I", setup, 0x230, 0x1000000)  # kernel_alignment
    setup[0x234] = 1  # relocatable_kernel
    struct.pack_into("<I", setup, 0x238, cmdline_size)
    struct.pack_into("<Q", setup, 0x258, pref_address)
    struct.pack_into("<I", setup, 0x260, init_size)
    setup[0x26C:0x270] = b"\xAA\xBB\xCC\xDD"  # past the header: must not be copied
    return bytes(setup) + pm


def machine(ram: int = RAM) -> Machine:
    return Machine(MachineConfig(ram_size=ram))


def zero_page(m: Machine) -> bytes:
    return m.read(ZP, 4096)


def e820(bp: bytes) -> list[tuple[int, int, int]]:
    n = bp[0x1E8]
    return [struct.unpack_from("<QQI", bp, 0x2D0 + 20 * i) for i in range(n)]


def u32(b: bytes, off: int) -> int:
    return struct.unpack_from("<I", b, off)[0]


# ---- the zero page ----

def test_zero_page_setup_header_and_loader_fields() -> None:
    img = bzimage()
    m = machine()
    info = load_linux(m, img, b"\x11" * 5000, "console=ttyS0 quiet")
    assert (info.fmt, info.entry) == ("linux", 0x100000)
    bp = zero_page(m)
    assert bp[0x210] == 0xFF  # type_of_loader
    assert bp[0x211] == 0x01  # loadflags: LOADED_HIGH only (no heap, not quiet)
    assert struct.unpack_from("<H", bp, 0x224)[0] == 0  # heap_end_ptr
    assert bp[0x202:0x206] == b"HdrS" and struct.unpack_from("<H", bp, 0x206)[0] == 0x020F
    # Everything else of the setup header is the image's, and nothing past its end.
    changed = set(range(0x210, 0x212)) | set(range(0x218, 0x220)) | set(range(0x224, 0x226)) \
        | set(range(0x228, 0x22C))
    assert all(bp[i] == img[i] for i in range(0x1F1, 0x26C) if i not in changed)
    assert bp[0x26C:0x270] == bytes(4)
    assert bp[:0x1E0] == bytes(0x1E0)  # screen_info etc. zero: no VGA text console
    assert bp[0x1EF] == 0  # sentinel
    ptr = u32(bp, 0x228)
    assert m.read(ptr, 20) == b"console=ttyS0 quiet\0"


def test_e820_map_matches_ram() -> None:
    for ram in (32 * MB, 128 * MB):
        m = machine(ram)
        load_linux(m, bzimage())
        assert e820(zero_page(m)) == [(0, 0x9FC00, 1), (0x9FC00, 0x100000 - 0x9FC00, 2),
                                      (0x100000, ram - 0x100000, 1)]
        assert u32(zero_page(m), 0x1E0) == (ram - MB) // 1024  # alt_mem_k


def test_protected_mode_kernel_at_1mb() -> None:
    img = bzimage(setup_sects=7)
    m = machine()
    load_linux(m, img)
    pm = img[(7 + 1) * 512:]
    assert m.read(0x100000, len(pm)) == pm


def test_setup_sects_zero_means_four() -> None:
    img = bytearray(bzimage(setup_sects=4))
    img[0x1F1] = 0
    m = machine()
    load_linux(m, bytes(img))
    assert m.read(0x100000, len(PM_CODE)) == PM_CODE


def test_initrd_placed_high_below_ram() -> None:
    rd = bytes(range(256)) * 40  # 10240 bytes
    m = machine()
    load_linux(m, bzimage(), rd)
    bp = zero_page(m)
    addr, size = u32(bp, 0x218), u32(bp, 0x21C)
    assert size == len(rd) and addr % 4096 == 0
    assert addr + size <= RAM and addr + size + 4096 > RAM  # as high as it goes
    assert m.read(addr, size) == rd


def test_initrd_respects_initrd_addr_max() -> None:
    rd = b"\x5a" * 3000
    m = machine()
    load_linux(m, bzimage(initrd_addr_max=0x1BFFFFF), rd)
    addr = u32(zero_page(m), 0x218)
    assert addr == 0x1C00000 - 4096
    assert m.read(addr, len(rd)) == rd


def test_no_initrd_leaves_ramdisk_fields_zero() -> None:
    m = machine()
    load_linux(m, bzimage())
    bp = zero_page(m)
    assert (u32(bp, 0x218), u32(bp, 0x21C)) == (0, 0)
    assert m.read(u32(bp, 0x228), 1) == b"\0"


# ---- entry state ----

def gdt_entry(m: Machine, base: int, sel: int) -> tuple[int, int, int, int]:
    lo, hi = struct.unpack("<II", m.read(base + sel, 8))
    seg_base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    return seg_base, limit, (hi >> 8) & 0xFF, (hi >> 20) & 0xF


def test_entry_state_is_the_32bit_boot_protocol() -> None:
    m = machine()
    load_linux(m, bzimage())
    r = m.get_regs()
    assert r.eip == 0x100000
    assert r.cr0 & 1 and not r.cr0 & 0x80000000  # protected mode, paging off
    assert r.eflags & 0x200 == 0 and r.eflags & 0x20000 == 0  # interrupts off, not V86
    assert r.esi == ZP and (r.ebp, r.edi, r.ebx) == (0, 0, 0)
    assert (r.cs.selector, r.cs.base, r.cs.limit) == (0x10, 0, 0xFFFFFFFF)
    for s in ("ds", "es", "ss"):
        seg = getattr(r, s)
        assert (seg.selector, seg.base, seg.limit) == (0x18, 0, 0xFFFFFFFF)
    assert r.gdtr_limit >= 0x1F
    # The GDT in memory holds the same flat 4 GB segments: a reload gets them back.
    base, limit, access, flags = gdt_entry(m, r.gdtr_base, 0x10)
    assert (base, limit, flags & 0x8) == (0, 0xFFFFF, 0x8) and access & 0x9A == 0x9A
    base, limit, access, flags = gdt_entry(m, r.gdtr_base, 0x18)
    assert (base, limit, flags & 0x8) == (0, 0xFFFFF, 0x8) and access & 0x92 == 0x92
    assert access & 0x08 == 0  # data, not code


def test_kernel_runs_with_the_zero_page_at_esi() -> None:
    m = machine()
    load_linux(m, bzimage())
    assert m.run(10_000) == StopReason.EXIT
    assert m.take_output() == b"\xff" and m.exit_status == 1


def test_auto_detects_bzimage(tmp_path: Path) -> None:
    p = tmp_path / "vmlinuz"
    p.write_bytes(bzimage())
    rd = tmp_path / "initrd"
    rd.write_bytes(b"abc")
    assert loader.detect_format(p, p.read_bytes()) == "linux"
    m = machine()
    info = load_guest(m, p, initrd=rd, cmdline="x=1")
    assert info.fmt == "linux"
    bp = zero_page(m)
    assert m.read(u32(bp, 0x218), 3) == b"abc" and m.read(u32(bp, 0x228), 4) == b"x=1\0"


def test_initrd_and_cmdline_rejected_for_other_formats(tmp_path: Path) -> None:
    p = tmp_path / "boot.bin"
    p.write_bytes(b"\xf4")
    with pytest.raises(GuestError, match="for Linux kernels"):
        load_guest(machine(), p, cmdline="console=ttyS0")


# ---- bad input ----

@pytest.mark.parametrize("img, initrd, cmdline, ram, match", [
    (b"\x90" * 4096, None, "", RAM, "not a Linux bzImage"),
    (bzimage(magic=b"HdrX"), None, "", RAM, "not a Linux bzImage"),
    (bzimage(boot_flag=0x1234), None, "", RAM, "boot flag"),
    (bzimage(version=0x0205), None, "", RAM, r"protocol 2\.05 is too old"),
    (bzimage(loadflags=0), None, "", RAM, "zImage"),
    (bzimage()[:-16], None, "", RAM, "truncated bzImage"),
    (bzimage(init_size=64 * MB), None, "", RAM, "needs memory up to"),
    (bzimage(cmdline_size=10), None, "console=ttyS0", RAM, "at most 10"),
    (bzimage(), None, "caf\u00e9", RAM, "ASCII"),
    (bzimage(), b"", "", RAM, "initrd is empty"),
    (bzimage(), bytes(RAM - 0x1000000 - 0x200000 + 1), "", RAM, "initrd .* does not fit"),
    (bzimage(), bytes(RAM + 1), "", RAM, "initrd .* does not fit"),
    (bzimage(initrd_addr_max=0x1200FFF), bytes(0x2000), "", RAM, "initrd_addr_max"),
])
def test_bad_input(img: bytes, initrd: bytes | None, cmdline: str, ram: int,
                   match: str) -> None:
    m = machine(ram)
    before = m.fingerprint()
    with pytest.raises(LinuxBootError, match=match) as exc:
        load_linux(m, img, initrd, cmdline, "vmlinuz")
    assert "\n" not in str(exc.value)
    assert isinstance(exc.value, GuestError)
    assert m.fingerprint() == before  # nothing was written


def test_initrd_exactly_filling_the_space_fits() -> None:
    # Kernel up to 16 MB + 2 MB (pref_address + init_size); the rest of RAM takes the initrd.
    room = RAM - 0x1200000
    m = machine()
    load_linux(m, bzimage(), b"\x01" * room)
    assert u32(zero_page(m), 0x218) == 0x1200000


def test_cmdline_of_exactly_cmdline_size() -> None:
    m = machine()
    load_linux(m, bzimage(cmdline_size=12), None, "a" * 12)
    assert m.read(u32(zero_page(m), 0x228), 13) == b"a" * 12 + b"\0"


# ---- identity: the kernel, the initrd and the command line ----

def test_resolve_names_kernel_and_initrd_by_hash(tmp_path: Path) -> None:
    import hashlib

    from aero.launch import GuestRef, resolve

    k, rd = tmp_path / "vmlinuz", tmp_path / "initrd.cpio"
    k.write_bytes(bzimage())
    rd.write_bytes(b"initrd bytes")
    r = resolve(str(k), initrd=str(rd))
    assert r.ref.fmt == "linux"
    assert r.ref.sha256 == hashlib.sha256(k.read_bytes()).hexdigest()
    assert r.ref.initrd_sha256 == hashlib.sha256(b"initrd bytes").hexdigest()
    assert r.ref.initrd_size == 12
    assert r.images == {r.ref.sha256: k.read_bytes(), r.ref.initrd_sha256: b"initrd bytes"}
    assert r.ref.image_hashes() == [r.ref.sha256, r.ref.initrd_sha256]
    assert GuestRef.from_dict(r.ref.to_dict()) == r.ref
    assert "initrd_sha256" in r.ref.identity() and "name" not in r.ref.identity()
    # Without an initrd the metadata has exactly the fields it always had.
    plain = resolve(str(k)).ref
    assert set(plain.to_dict()) == {"name", "fmt", "load_addr", "sha256", "size"}


def test_start_machine_loads_initrd_and_cmdline(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from aero.launch import LaunchError, resolve, start_machine, store_image

    k, rd = tmp_path / "vmlinuz", tmp_path / "initrd.cpio"
    k.write_bytes(bzimage())
    rd.write_bytes(b"\x42" * 100)
    r = resolve(str(k), initrd=str(rd))
    config = MachineConfig(ram_size=RAM, cmdline="console=ttyS0,115200")
    m = start_machine(config, r.ref, r.data, r.images)
    bp = zero_page(m)
    assert m.read(u32(bp, 0x228), 21) == b"console=ttyS0,115200\0"
    assert m.read(u32(bp, 0x218), 100) == b"\x42" * 100
    # The initrd from the image store, when the caller has only the kernel.
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "store"))
    with pytest.raises(LaunchError, match="initrd of vmlinuz .* `aero pack`"):
        start_machine(config, r.ref, r.data)
    store_image(b"\x42" * 100)
    m2 = start_machine(config, r.ref, r.data)
    assert m2.fingerprint() == m.fingerprint()


def test_cmdline_in_config_round_trip_and_only_for_linux(tmp_path: Path) -> None:
    from aero.launch import LaunchError, resolve, start_machine

    c = MachineConfig(ram_size=RAM, cmdline="console=ttyS0")
    assert MachineConfig.from_dict(c.to_dict()) == c
    assert "cmdline" not in MachineConfig().to_dict()  # old metadata and digests unchanged
    p = tmp_path / "boot.bin"
    p.write_bytes(b"\xf4")
    r = resolve(str(p))
    with pytest.raises(LaunchError, match="command line is for Linux"):
        start_machine(c, r.ref, r.data)
    with pytest.raises(LaunchError, match="initrd is for Linux"):
        resolve(str(p), initrd=str(p))


# struct setup_header (arch/x86/include/uapi/asm/bootparam.h), field by field, packed, from
# offset 0x1F1 of the image and of struct boot_params.
SETUP_HEADER = [("setup_sects", "B"), ("root_flags", "H"), ("syssize", "I"), ("ram_size", "H"),
                ("vid_mode", "H"), ("root_dev", "H"), ("boot_flag", "H"), ("jump", "H"),
                ("header", "I"), ("version", "H"), ("realmode_swtch", "I"),
                ("start_sys_seg", "H"), ("kernel_version", "H"), ("type_of_loader", "B"),
                ("loadflags", "B"), ("setup_move_size", "H"), ("code32_start", "I"),
                ("ramdisk_image", "I"), ("ramdisk_size", "I"), ("bootsect_kludge", "I"),
                ("heap_end_ptr", "H"), ("ext_loader_ver", "B"), ("ext_loader_type", "B"),
                ("cmd_line_ptr", "I"), ("initrd_addr_max", "I"), ("kernel_alignment", "I"),
                ("relocatable_kernel", "B"), ("min_alignment", "B"), ("xloadflags", "H"),
                ("cmdline_size", "I"), ("hardware_subarch", "I"),
                ("hardware_subarch_data", "Q"), ("payload_offset", "I"),
                ("payload_length", "I"), ("setup_data", "Q"), ("pref_address", "Q"),
                ("init_size", "I"), ("handover_offset", "I"), ("kernel_info_offset", "I")]


def test_header_offsets_match_the_struct() -> None:
    off, offsets = 0x1F1, {}
    for name, fmt in SETUP_HEADER:
        offsets[name] = off
        off += struct.calcsize("<" + fmt)
    assert off == 0x26C
    assert offsets["boot_flag"] == loader.HDR_BOOT_FLAG
    assert offsets["header"] == loader.HDR_MAGIC_OFF
    assert offsets["version"] == loader.HDR_VERSION
    assert offsets["type_of_loader"] == loader.HDR_TYPE_OF_LOADER
    assert offsets["loadflags"] == loader.HDR_LOADFLAGS
    assert offsets["ramdisk_image"] == loader.HDR_RAMDISK_IMAGE
    assert offsets["ramdisk_size"] == loader.HDR_RAMDISK_SIZE
    assert offsets["heap_end_ptr"] == loader.HDR_HEAP_END_PTR
    assert offsets["cmd_line_ptr"] == loader.HDR_CMD_LINE_PTR
    assert offsets["initrd_addr_max"] == loader.HDR_INITRD_ADDR_MAX
    assert offsets["cmdline_size"] == loader.HDR_CMDLINE_SIZE
    assert offsets["pref_address"] == loader.HDR_PREF_ADDRESS
    assert offsets["init_size"] == loader.HDR_INIT_SIZE
