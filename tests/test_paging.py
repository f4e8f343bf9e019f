"""Paging: 4 KB and 4 MB pages, accessed/dirty bits, U/S and R/W with and without CR0.WP,
#PF error codes and CR2, global pages, INVLPG, and what the TLB may and may not keep.

Expected values follow the Intel SDM Vol. 3, "Paging" (32-bit paging) and "Invalidation of
TLBs and Paging-Structure Caches". Where the architecture allows a stale translation, the
test states aero's documented choice (docs/cpu.md): an entry stays until it is invalidated.
"""

from __future__ import annotations

import shutil

import pytest
from sysenv import (
    CODE,
    CR0_PG,
    CR0_WP,
    CR4_PGE,
    CR4_PSE,
    EBX,
    ECX,
    GP,
    HLT,
    IDT,
    IRET,
    PD,
    PF,
    PS,
    PT0,
    STACK3,
    A,
    D,
    G,
    P,
    U,
    W,
    enter_pm,
    expect,
    failed_checks,
    gate,
    guest_lines_aero,
    guest_lines_qemu,
    identity_tables,
    invlpg,
    load_eax,
    mov_mem_imm,
    mov_r_imm,
    new_machine,
    pde,
    pte,
    rd32,
    run,
    set_pde,
    set_pte,
    store_eax,
    taken,
    u32,
)

from aero.machine import Machine, StopReason

# Linear pages the tests remap. The TLB is direct-mapped (aero_tlb_slot: the low 10 bits of
# the page number folded with the next 10): these avoid the slots of the code, stack,
# page-table and result pages.
X, Y = 0x3A0000, 0x3A1000
PA, PB, PC = 0x150000, 0x160000, 0x170000  # physical pages with known contents
VA, VB, VC = 0x11111111, 0x22222222, 0x33333333
OUT = 0x610                        # results stored by the programs

MOV_EAX_CR3 = b"\x0F\x20\xD8"
MOV_CR3_EAX = b"\x0F\x22\xD8"
MOV_EAX_CR4 = b"\x0F\x20\xE0"
MOV_CR4_EAX = b"\x0F\x22\xE0"
MOV_EAX_CR0 = b"\x0F\x20\xC0"
MOV_CR0_EAX = b"\x0F\x22\xC0"


def or_eax(v: int) -> bytes:
    return b"\x0D" + u32(v)


def and_eax(v: int) -> bytes:
    return b"\x25" + u32(v)


def pte_addr(lin: int) -> int:
    return PT0 + 4 * (lin >> 12)


def copy(src: int, slot: int) -> bytes:
    """mov eax, [src] ; mov [OUT + 4*slot], eax"""
    return load_eax(src) + store_eax(OUT + 4 * slot)


def out(m: Machine, slot: int) -> int:
    return rd32(m, OUT + 4 * slot)


def paging_machine(*, cr4: int = 0, cr0: int = 0, cpl: int = 0, code: bytes = HLT,
                   **gprs: int) -> Machine:
    m = new_machine()
    identity_tables(m)
    m.write(PA, u32(VA))
    m.write(PB, u32(VB))
    m.write(PC, u32(VC))
    set_pte(m, X, PA | P | W | U)
    set_pte(m, Y, PB | P | W | U)
    enter_pm(m, code, cpl=cpl, cr0=CR0_PG | cr0, cr3=PD, cr4=cr4, **gprs)
    return m


# ---- translation and the accessed/dirty bits ---------------------------------------------

def test_4k_page_translates_and_sets_accessed_then_dirty() -> None:
    m = paging_machine(code=copy(X, 0) + HLT)
    assert run(m) == StopReason.HALT
    assert out(m, 0) == VA
    assert pte(m, X) == PA | P | W | U | A  # read: accessed, not dirty
    assert pde(m, X) & A and not pde(m, X) & D
    m = paging_machine(code=mov_mem_imm(X + 8, 0xCAFE) + HLT)
    assert run(m) == StopReason.HALT
    assert rd32(m, PA + 8) == 0xCAFE
    assert pte(m, X) == PA | P | W | U | A | D
    assert not pde(m, X) & D  # the directory entry of a 4 KB page never gets D


def test_4m_page_with_pse() -> None:
    m = paging_machine(cr4=CR4_PSE, code=copy(0x800000 + PA, 0) + mov_mem_imm(0x800000 + PB + 4, 7)
                       + HLT)
    set_pde(m, 0x800000, 0x000000 | P | W | PS)  # 8 MB -> physical 0 (4 MB page)
    assert run(m) == StopReason.HALT
    assert out(m, 0) == VA and rd32(m, PB + 4) == 7
    assert pde(m, 0x800000) == P | W | PS | A | D


def test_ps_bit_ignored_without_pse() -> None:
    """Without CR4.PSE the PS bit means nothing: the entry points at a page table."""
    m = paging_machine(code=copy(0x800000, 0) + HLT)
    set_pde(m, 0x800000, PT0 | P | W | U | PS)  # "page table" = the first identity table
    assert run(m) == StopReason.HALT
    assert out(m, 0) == rd32(m, 0)  # 8 MB + 0 -> page 0 through PT0


def test_4m_page_reserved_bits() -> None:
    m = paging_machine(cr4=CR4_PSE, code=load_eax(0x800000) + HLT)
    set_pde(m, 0x800000, 0x2000 | P | W | PS)  # bit 13 is reserved (no PSE-36)
    expect(m, PF, 0x9, CODE)  # P | RSVD, read, supervisor
    assert m.get_regs().cr2 == 0x800000
    assert not pde(m, 0x800000) & A


# ---- #PF error codes and CR2 -------------------------------------------------------------

@pytest.mark.parametrize(("cpl", "write", "code"), [
    (0, False, 0), (0, True, 2), (3, False, 4), (3, True, 6),
])
def test_not_present_error_codes(cpl: int, write: bool, code: int) -> None:
    prog = (b"\x89\x03" if write else b"\x8B\x03") + b"\xEB\xFE"  # mov [ebx],eax / mov eax,[ebx]
    m = paging_machine(cpl=cpl, code=prog, ebx=X + 0x123)
    set_pte(m, X, PA | W | U)  # not present
    expect(m, PF, code, CODE)
    assert m.get_regs().cr2 == X + 0x123


def test_page_crossing_access_faults_on_the_second_page() -> None:
    m = paging_machine(code=b"\x89\x03" + HLT, ebx=X - 2, eax=0xAABBCCDD)
    set_pte(m, X, PA | W | U)  # X not present; the page below it is
    m.write(X - 4, u32(0x12345678))
    expect(m, PF, 2, CODE)
    assert m.get_regs().cr2 == X
    assert rd32(m, X - 4) == 0x12345678  # nothing written to the first page


Z = 0x4B0000  # a page of the second 4 MB region, with its own page table
PT1 = 0x23000


def map_z(m: Machine, pde_bits: int, pte_bits: int) -> None:
    m.write(PT1, bytes(4096))
    m.write(PT1 + 4 * ((Z >> 12) & 0x3FF), u32(PA | pte_bits))
    set_pde(m, Z, PT1 | pde_bits)


@pytest.mark.parametrize(("pde_bits", "pte_bits", "write", "code"), [
    (P | W | U, P | W, False, 5),     # user read of a supervisor page
    (P | W, P | W | U, False, 5),     # the directory entry says supervisor
    (P | W | U, P | U, True, 7),      # user write to a read-only page
    (P | U, P | W | U, True, 7),      # read-only through the directory entry
])
def test_user_rights(pde_bits: int, pte_bits: int, write: bool, code: int) -> None:
    prog = (b"\x89\x03" if write else b"\x8B\x03") + b"\xEB\xFE"
    m = paging_machine(cpl=3, code=prog, ebx=Z)
    map_z(m, pde_bits, pte_bits)
    expect(m, PF, code, CODE)
    assert m.get_regs().cr2 == Z


@pytest.mark.parametrize(("pde_bits", "pte_bits"), [(P | W, P | W | U), (P | U, P | W | U)])
def test_supervisor_ignores_user_bits_and_wp_clear_allows_writes(pde_bits: int,
                                                                 pte_bits: int) -> None:
    m = paging_machine(code=load_eax(Z) + mov_mem_imm(Z + 4, 3) + HLT)
    map_z(m, pde_bits, pte_bits)
    assert run(m) == StopReason.HALT and taken(m) == (0, 0)
    assert rd32(m, PA + 4) == 3


def test_user_read_of_user_read_only_page_is_allowed() -> None:
    m = paging_machine(cpl=3, code=b"\x8B\x03" + store_eax(OUT) + b"\xEB\xFE", ebx=X)
    set_pte(m, X, PA | P | U)
    run(m, 10)
    assert out(m, 0) == VA and taken(m) == (0, 0)


def test_supervisor_write_to_read_only_page_depends_on_wp() -> None:
    m = paging_machine(code=mov_mem_imm(X, 5) + HLT)
    set_pte(m, X, PA | P | U)
    assert run(m) == StopReason.HALT and taken(m) == (0, 0)
    assert rd32(m, PA) == 5 and pte(m, X) & D
    m = paging_machine(cr0=CR0_WP, code=mov_mem_imm(X, 5) + HLT)
    set_pte(m, X, PA | P | U)
    expect(m, PF, 3, CODE)
    assert rd32(m, PA) == VA


def test_setting_wp_revokes_a_mapped_write() -> None:
    """The TLB holds a supervisor write mapping of a read-only page made with WP = 0; setting
    WP must take it away (a CR0.WP change invalidates)."""
    code = (mov_mem_imm(X, 5) + MOV_EAX_CR0 + or_eax(CR0_WP) + MOV_CR0_EAX
            + mov_mem_imm(X, 6) + HLT)
    m = paging_machine(code=code)
    set_pte(m, X, PA | P | U)
    expect(m, PF, 3, CODE + 10 + 3 + 5 + 3)
    assert rd32(m, PA) == 5


def test_privilege_change_does_not_leak_supervisor_translations() -> None:
    """Ring 0 reads a supervisor page (its translation is cached), then IRETs to ring 3, which
    reads the same page: #PF(P|U), no flush needed for that."""
    user = 0x5800
    code = (load_eax(X)
            + b"\x6A\x23" + b"\x68" + u32(STACK3) + b"\x6A\x02" + b"\x6A\x1B" + b"\x68" + u32(user)
            + IRET)
    m = paging_machine(code=code)
    set_pte(m, X, PA | P | W)
    # mov ax, 0x23 ; mov ds, ax (IRET to ring 3 nulled DS) ; mov eax, [X]
    m.write(user, b"\x66\xB8\x23\x00\x8E\xD8" + load_eax(X) + b"\xEB\xFE")
    f = expect(m, PF, 5, user + 6)
    assert f.cs == 0x1B and m.get_regs().cr2 == X


def test_user_translation_serves_supervisor_too() -> None:
    """Ring 0 reads, and with WP clear writes, a read-only user page that ring 3 has just
    read (a user translation grants nothing beyond it, and takes nothing from ring 0)."""
    m = paging_machine(cpl=3, code=load_eax(X) + b"\xCD\x40", eax=0)
    set_pte(m, X, PA | P | U)
    m.write(IDT + 0x40 * 8, gate(0x5800, kind=0xEE))
    m.write(0x5800, copy(X, 0) + mov_mem_imm(X, 9) + HLT)
    assert run(m) == StopReason.HALT
    assert out(m, 0) == VA and rd32(m, PA) == 9 and taken(m) == (0, 0)


# ---- the TLB -----------------------------------------------------------------------------

def remap(lin: int, phys: int, bits: int = P | W | U) -> bytes:
    """The guest rewrites a PTE (no invalidation)."""
    return mov_mem_imm(pte_addr(lin), phys | bits)


def test_stale_translation_is_kept_until_invalidated() -> None:
    """Allowed by the architecture: after a PTE changes, the old translation may still be
    used until INVLPG or MOV CR3. aero keeps it (deterministically) until then."""
    code = (copy(X, 0) + remap(X, PC) + copy(X, 1) + invlpg(X) + copy(X, 2) + HLT)
    m = paging_machine(code=code)
    assert run(m) == StopReason.HALT
    assert (out(m, 0), out(m, 1), out(m, 2)) == (VA, VA, VC)


def test_not_present_translations_are_never_cached() -> None:
    """Required by the architecture: a translation is cached only for a present page, so
    marking a page present takes effect without any invalidation."""
    m = paging_machine(code=copy(X, 0) + HLT)
    set_pte(m, X, PA | W | U)  # not present
    # #PF handler: make X present, IRET to retry (error code popped first).
    m.write(0x5800, remap(X, PA) + b"\x83\xC4\x04" + IRET)  # add esp, 4 ; iretd
    m.write(IDT + PF * 8, gate(0x5800))
    assert run(m) == StopReason.HALT
    assert out(m, 0) == VA
    assert m.get_regs().cr2 == X


def test_invlpg_drops_one_page_only() -> None:
    code = (copy(X, 0) + copy(Y, 1) + remap(X, PC) + remap(Y, PC) + invlpg(X)
            + copy(X, 2) + copy(Y, 3) + HLT)
    m = paging_machine(code=code)
    assert run(m) == StopReason.HALT
    assert [out(m, i) for i in range(4)] == [VA, VB, VC, VB]


def test_code_follows_the_translation_until_and_after_invlpg() -> None:
    """Blocks are found by linear address (the jump cache): a remapped code page runs the
    old code while the old translation stands, and the new code once INVLPG drops it, also
    when every block involved is already decoded (the last pass decodes nothing)."""
    table = 0x680  # the PTE each pass installs for X, indexed by ECX
    body = (b"\xFF\xD3"                                 # L: call ebx
            + b"\x89\x04\x8D" + u32(OUT)                 # mov [OUT + ecx*4], eax
            + b"\x8B\x34\x8D" + u32(table)               # mov esi, [table + ecx*4]
            + b"\x89\x35" + u32(pte_addr(X))              # mov [pte(X)], esi
            + invlpg(X) + b"\x49")                       # dec ecx
    code = (mov_r_imm(EBX, X + 0x100) + mov_r_imm(ECX, 3) + body
            + b"\x75" + bytes([(-(len(body) + 2)) & 0xFF]) + HLT)  # jnz L
    m = paging_machine(code=code)
    m.write(table + 4, u32(PC | P | W | U) + u32(PC | P | W | U) + u32(PA | P | W | U))
    m.write(PA + 0x100, b"\xB8" + u32(1) + b"\xC3")  # mov eax, 1 ; ret
    m.write(PC + 0x100, b"\xB8" + u32(3) + b"\xC3")  # mov eax, 3 ; ret
    assert run(m) == StopReason.HALT
    # Pass ECX=3 runs PA's code and keeps X -> PA; pass 2 runs it again and maps X -> PC;
    # pass 1 must see PC's code.
    assert [out(m, i) for i in (3, 2, 1)] == [1, 1, 3]


def test_invlpg_is_privileged() -> None:
    m = paging_machine(cpl=3, code=invlpg(X))
    expect(m, GP, 0, CODE)


def test_mov_cr3_drops_all_but_global_pages() -> None:
    code = (copy(X, 0) + copy(Y, 1) + remap(X, PC, P | W | U | G) + remap(Y, PC)
            + MOV_EAX_CR3 + MOV_CR3_EAX + copy(X, 2) + copy(Y, 3)
            + invlpg(X) + copy(X, 4) + HLT)
    m = paging_machine(cr4=CR4_PGE, code=code)
    set_pte(m, X, PA | P | W | U | G)
    assert run(m) == StopReason.HALT
    # X is global: it survives MOV CR3 (still PA) but not INVLPG; Y is re-walked.
    assert [out(m, i) for i in range(5)] == [VA, VB, VA, VC, VC]


def test_global_bit_ignored_without_pge() -> None:
    code = (copy(X, 0) + remap(X, PC, P | W | U | G) + MOV_EAX_CR3 + MOV_CR3_EAX + copy(X, 1)
            + HLT)
    m = paging_machine(code=code)
    set_pte(m, X, PA | P | W | U | G)
    assert run(m) == StopReason.HALT
    assert (out(m, 0), out(m, 1)) == (VA, VC)


@pytest.mark.parametrize("toggle", [
    MOV_EAX_CR4 + and_eax(~CR4_PGE) + MOV_CR4_EAX,                       # clear CR4.PGE
    MOV_EAX_CR4 + or_eax(CR4_PSE) + MOV_CR4_EAX,                         # set CR4.PSE
    MOV_EAX_CR0 + and_eax(~CR0_PG) + MOV_CR0_EAX + or_eax(CR0_PG) + MOV_CR0_EAX,  # PG off, on
])
def test_paging_control_changes_drop_global_pages(toggle: bytes) -> None:
    code = copy(X, 0) + remap(X, PC, P | W | U | G) + toggle + copy(X, 1) + HLT
    m = paging_machine(cr4=CR4_PGE, code=code)
    set_pte(m, X, PA | P | W | U | G)
    assert run(m) == StopReason.HALT
    assert (out(m, 0), out(m, 1)) == (VA, VC)


def test_invlpg_in_a_4m_page_drops_the_whole_page() -> None:
    big = 0x800000
    code = (copy(big + PA, 0) + copy(big + PB, 1)
            + mov_mem_imm(PD + 4 * (big >> 22), 0x400000 | P | W | PS)  # now -> 4 MB phys
            + invlpg(big + 0x1000) + copy(big + PA, 2) + copy(big + PB, 3) + HLT)
    m = paging_machine(cr4=CR4_PSE, code=code)
    set_pde(m, big, 0 | P | W | PS)
    m.write(0x400000 + PA, u32(0xA0A0A0A0))
    m.write(0x400000 + PB, u32(0xB0B0B0B0))
    assert run(m) == StopReason.HALT
    assert [out(m, i) for i in range(4)] == [VA, VB, 0xA0A0A0A0, 0xB0B0B0B0]


def test_accessed_bit_write_is_tracked_for_fingerprints() -> None:
    """Page-walk A/D updates go through the dirty-page bookkeeping: the fingerprint of the
    running machine equals that of a copy whose page hashes are all fresh."""
    m = paging_machine(code=copy(X, 0) + mov_mem_imm(Y, 1) + HLT)
    m.fingerprint()  # every page clean
    assert run(m) == StopReason.HALT
    snap = m.snapshot()
    fresh = new_machine()
    fresh.restore(snap)
    assert m.fingerprint() == fresh.fingerprint()
    assert pte(m, X) & A and pte(m, Y) & D


def test_dirty_bit_set_by_the_first_write_after_a_read() -> None:
    """A read maps the page for reads only; the first write walks again and sets D."""
    m = paging_machine(code=copy(X, 0) + mov_mem_imm(X, 1) + HLT)
    assert run(m) == StopReason.HALT
    assert pte(m, X) & D and rd32(m, PA) == 1


def test_instruction_fetch_from_a_supervisor_page_at_cpl3() -> None:
    m = paging_machine(cpl=3, code=b"\x90\xEB\xFE")
    set_pte(m, CODE, CODE | P | W)
    expect(m, PF, 5, CODE)
    assert m.get_regs().cr2 == CODE


def test_registers_untouched_by_a_faulting_access() -> None:
    m = paging_machine(code=mov_r_imm(EBX, 7) + b"\x8B\x1D" + u32(X) + HLT)  # mov ebx, [X]
    set_pte(m, X, 0)
    expect(m, PF, 0, CODE + 5)
    assert m.get_regs().ebx == 7


# ---- the sys_paging guest ----------------------------------------------------------------

@pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None,
                    reason="GNU binutils (as, ld) are not installed")
def test_sys_paging_guest_in_aero_and_qemu() -> None:
    lines, status = guest_lines_aero("sys_paging")
    assert failed_checks(lines) == set() and status == 1
    assert lines[-2:] == ["checks=0000003C failed=00000000", "RESULT PASS"]
    if shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 is not installed")
    q, qstatus = guest_lines_qemu("sys_paging")
    assert q == lines and qstatus == status
