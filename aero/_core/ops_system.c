/* aero core: port I/O and system instructions.
 *
 * The model is a P6 (Pentium Pro class) processor: where the Intel SDM leaves behaviour
 * model specific, the P6 behaviour is chosen and the choice is stated next to the code.
 * CPUID, the MSRs and the CR4 bits follow the configured feature set (CPUID.1:EDX).
 */
#include "cpu.h"

/* CPUID.1:EDX feature bits the instructions here depend on. */
#define FEAT_VME (1u << 1)
#define FEAT_DE (1u << 2)
#define FEAT_PSE (1u << 3)
#define FEAT_TSC (1u << 4)
#define FEAT_MSR (1u << 5)
#define FEAT_MCE (1u << 7)
#define FEAT_SEP (1u << 11)
#define FEAT_PGE (1u << 13)

#define CR0_NW 0x20000000u
#define CR0_CD 0x40000000u
/* CR0 bits a P6 implements; the others read as 0 and ignore writes, ET reads as 1. */
#define CR0_IMPLEMENTED (CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG)

#define CR4_VME 0x001u
#define CR4_PVI 0x002u
#define CR4_TSD 0x004u
#define CR4_DE 0x008u
#define CR4_PSE 0x010u
#define CR4_PAE 0x020u
#define CR4_MCE 0x040u
#define CR4_PGE 0x080u

#define F_VIF 0x00080000u
#define F_VIP 0x00100000u

#define DR6_BD 0x2000u
#define DR7_GD 0x2000u

#define MSR_TSC 0x10u
#define MSR_BIOS_SIGN_ID 0x8Bu
#define MSR_SYSENTER_CS 0x174u
#define MSR_SYSENTER_ESP 0x175u
#define MSR_SYSENTER_EIP 0x176u

/* Highest basic CPUID leaf (a Pentium Pro reports 2). */
#define CPUID_MAX_LEAF 2u

AERO_INLINE int has_feature(const aero_machine *m, uint32_t bit) { return (m->cfg.cpuid_features_edx & bit) != 0; }

/* "CPL 0" instructions: allowed in real mode, #GP(0) at CPL > 0 and in virtual-8086 mode. */
static void need_cpl0(aero_machine *m) {
    if (!(m->cpu.cr0 & CR0_PE)) return;
    if ((m->cpu.eflags & F_VM) || m->cpu.cpl != 0) aero_fault(m, EXC_GP, 0, 1);
}

/* The current privilege is above 0 in the sense of CR4.TSD: protected mode at CPL > 0, or
 * virtual-8086 mode (which runs at CPL 3). */
AERO_INLINE int user_level(const aero_machine *m) {
    return (m->cpu.cr0 & CR0_PE) && ((m->cpu.eflags & F_VM) || m->cpu.cpl != 0);
}

/* Address-size mask for offsets computed from an effective address (6-byte operands). */
AERO_INLINE uint32_t amask(const aero_insn *in) { return in->asz ? 0xFFFFFFFFu : 0xFFFFu; }

/* ---- port I/O ---- */

/* Even opcodes (E4 E6 EC EE) move a byte, odd ones a word or doubleword. */
AERO_INLINE int io_size(const aero_insn *in) { return (in->op & 1) ? osize(in) : 1; }

static void do_in(aero_machine *m, const aero_insn *in, uint16_t port) {
    int size = io_size(in);
    aero_io_check(m, port, size);
    set_reg(m, R_EAX, size, aero_io_read(m, port, size));
    next(m, in);
}

static void do_out(aero_machine *m, const aero_insn *in, uint16_t port) {
    int size = io_size(in);
    aero_io_check(m, port, size);
    aero_io_write(m, port, size, get_reg(m, R_EAX, size));
    next(m, in);
}

void aero_op_in_Ib(aero_machine *m, const aero_insn *in) { do_in(m, in, (uint16_t)(in->imm & 0xFF)); }
void aero_op_in_DX(aero_machine *m, const aero_insn *in) { do_in(m, in, get_r16(m, R_EDX)); }
void aero_op_out_Ib(aero_machine *m, const aero_insn *in) { do_out(m, in, (uint16_t)(in->imm & 0xFF)); }
void aero_op_out_DX(aero_machine *m, const aero_insn *in) { do_out(m, in, get_r16(m, R_EDX)); }

/* HLT: privileged in protected mode and virtual-8086 mode (CPL 3); the run loop sleeps
 * until an interrupt. */
void aero_op_hlt(aero_machine *m, const aero_insn *in) {
    if ((m->cpu.cr0 & CR0_PE) && m->cpu.cpl != 0) aero_fault(m, EXC_GP, 0, 1);
    next(m, in);
    m->cpu.halted = 1;
    m->exit_block = 1;
}

/* ---- interrupt flag ---- */

/* CLI/STI (SDM pseudocode): real mode always; protected mode when CPL <= IOPL, else VIF at
 * CPL 3 with CR4.PVI; virtual-8086 mode when IOPL = 3, else VIF with CR4.VME; otherwise
 * #GP(0). Returns the flag to change (F_IF or F_VIF). */
static uint32_t if_target(aero_machine *m) {
    uint32_t f = m->cpu.eflags, iopl = (f & F_IOPL) >> 12;
    if (!(m->cpu.cr0 & CR0_PE)) return F_IF;
    if (f & F_VM) {
        if (iopl == 3) return F_IF;
        if (m->cpu.cr4 & CR4_VME) return F_VIF;
    } else {
        if (m->cpu.cpl <= iopl) return F_IF;
        if (m->cpu.cpl == 3 && (m->cpu.cr4 & CR4_PVI)) return F_VIF;
    }
    aero_fault(m, EXC_GP, 0, 1);
}

void aero_op_cli(aero_machine *m, const aero_insn *in) {
    m->cpu.eflags &= ~if_target(m);
    next(m, in);
}

/* STI: setting IF opens a one-instruction interrupt shadow. Setting VIF while VIP is
 * pending is #GP(0), so the monitor can deliver the pending interrupt. */
void aero_op_sti(aero_machine *m, const aero_insn *in) {
    uint32_t t = if_target(m);
    if (t == F_VIF && (m->cpu.eflags & F_VIP)) aero_fault(m, EXC_GP, 0, 1);
    if (t == F_IF && !(m->cpu.eflags & F_IF)) m->cpu.inhibit_irq = 1;
    m->cpu.eflags |= t;
    next(m, in);
}

/* ---- identification and time ---- */

/* Four vendor-string bytes as a little-endian register value. */
static uint32_t vendor_word(const aero_machine *m, int i) {
    const uint8_t *p = (const uint8_t *)m->cfg.cpuid_vendor + 4 * i;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* CPUID. Leaves above the maximum return the highest basic leaf, as Intel CPUs do (SDM:
 * "If a value entered for CPUID.EAX is higher than the maximum input value ... the data
 * for the highest basic information leaf is returned"); a P6 has no extended leaves, so
 * 80000000h and up land there too. */
void aero_op_cpuid(aero_machine *m, const aero_insn *in) {
    uint32_t leaf = m->cpu.r[R_EAX], a, b, c, d;
    if (leaf > CPUID_MAX_LEAF) leaf = CPUID_MAX_LEAF;
    if (leaf == 0) {
        /* Vendor string in EBX, EDX, ECX order ("Genu" "ineI" "ntel"). */
        a = CPUID_MAX_LEAF;
        b = vendor_word(m, 0);
        d = vendor_word(m, 1);
        c = vendor_word(m, 2);
    } else if (leaf == 1) {
        a = m->cfg.cpuid_signature;
        b = 0; /* no brand index, CLFLUSH size or APIC ID on a P6 */
        c = m->cfg.cpuid_features_ecx;
        d = m->cfg.cpuid_features_edx;
    } else {
        /* Leaf 2: the Pentium Pro's cache and TLB descriptors (SDM Vol. 2A, CPUID, Table
         * "Encoding of CPUID Leaf 2 Descriptors"; the values Bochs reports for its Pentium
         * Pro model). AL = 01: one call suffices. 01h ITLB 4 KB 4-way 32 entries, 02h ITLB
         * 4 MB 2 entries, 03h DTLB 4 KB 4-way 64 entries; 42h L2 256 KB 4-way 32-byte
         * lines, 0Ah L1 data 8 KB 2-way, 04h DTLB 4 MB 4-way 8 entries, 06h L1 code 8 KB
         * 4-way. */
        a = 0x03020101u;
        b = 0;
        c = 0;
        d = 0x06040A42u;
    }
    m->cpu.r[R_EAX] = a;
    m->cpu.r[R_EBX] = b;
    m->cpu.r[R_ECX] = c;
    m->cpu.r[R_EDX] = d;
    next(m, in);
}

/* The time-stamp counter at the current tick (the executing instruction's tick). */
static uint64_t tsc_now(const aero_machine *m) {
    return m->cpu.tsc_base + aero_now(m) * (uint64_t)m->cfg.tsc_per_tick;
}

/* RDTSC: #UD without the TSC feature; with CR4.TSD only CPL 0 (or real mode) may read. */
void aero_op_rdtsc(aero_machine *m, const aero_insn *in) {
    if (!has_feature(m, FEAT_TSC)) aero_fault_ud(m);
    if ((m->cpu.cr4 & CR4_TSD) && user_level(m)) aero_fault(m, EXC_GP, 0, 1);
    uint64_t t = tsc_now(m);
    m->cpu.r[R_EAX] = (uint32_t)t;
    m->cpu.r[R_EDX] = (uint32_t)(t >> 32);
    next(m, in);
}

/* ---- model-specific registers ----
 * Modeled: 10h TSC, 8Bh IA32_BIOS_SIGN_ID on family 6 and, with SEP, 174h-176h
 * SYSENTER_CS/ESP/EIP. Every other MSR (IA32_APIC_BASE, the MTRRs, the machine-check and
 * performance MSRs) is #GP(0).
 *
 * IA32_BIOS_SIGN_ID (SDM Vol. 4, "Architectural MSRs", from 06_01H): after a write of 0 and
 * a CPUID, EDX holds the signature of the microcode update loaded. No update is ever loaded
 * here, so it reads 0 and writes change nothing (Linux reads it at boot: early_init_intel,
 * intel_get_microcode_revision). */

static int has_bios_sign_id(const aero_machine *m) {
    return ((m->cfg.cpuid_signature >> 8) & 0xF) >= 6;
}

/* The SYSENTER MSR selected by idx, or NULL (also without the SEP feature). */
static uint32_t *sysenter_msr(aero_machine *m, uint32_t idx) {
    if (!has_feature(m, FEAT_SEP)) return NULL;
    switch (idx) {
    case MSR_SYSENTER_CS: return &m->cpu.sysenter_cs;
    case MSR_SYSENTER_ESP: return &m->cpu.sysenter_esp;
    case MSR_SYSENTER_EIP: return &m->cpu.sysenter_eip;
    default: return NULL;
    }
}

void aero_op_rdmsr(aero_machine *m, const aero_insn *in) {
    if (!has_feature(m, FEAT_MSR)) aero_fault_ud(m);
    need_cpl0(m);
    uint32_t idx = m->cpu.r[R_ECX];
    uint32_t *reg = sysenter_msr(m, idx);
    uint64_t v;
    if (idx == MSR_TSC) v = tsc_now(m);
    else if (idx == MSR_BIOS_SIGN_ID && has_bios_sign_id(m)) v = 0;
    else if (reg) v = *reg;
    else aero_fault(m, EXC_GP, 0, 1);
    m->cpu.r[R_EAX] = (uint32_t)v;
    m->cpu.r[R_EDX] = (uint32_t)(v >> 32);
    next(m, in);
}

/* WRMSR. The TSC: on the P6 only the low 32 bits are writable and a write clears the high
 * 32 bits (SDM Vol. 4, IA32_TIME_STAMP_COUNTER: "On earlier processors, only the lower 32
 * bits are writable. On any write to the lower 32 bits, the upper 32 bits are cleared");
 * the base moves so that the counter reads EAX at the current tick. The SYSENTER MSRs are
 * 32 bits wide on IA-32 processors: EDX is ignored. */
void aero_op_wrmsr(aero_machine *m, const aero_insn *in) {
    if (!has_feature(m, FEAT_MSR)) aero_fault_ud(m);
    need_cpl0(m);
    uint32_t idx = m->cpu.r[R_ECX], lo = m->cpu.r[R_EAX];
    uint32_t *reg = sysenter_msr(m, idx);
    if (idx == MSR_TSC) m->cpu.tsc_base = (uint64_t)lo - aero_now(m) * (uint64_t)m->cfg.tsc_per_tick;
    else if (idx == MSR_BIOS_SIGN_ID && has_bios_sign_id(m)) { /* no update to load */ }
    else if (reg) *reg = lo;
    else aero_fault(m, EXC_GP, 0, 1);
    next(m, in);
}

/* ---- control registers ---- */

/* CR4 bits this configuration may set: those of the advertised features. PAE and PCE are
 * not implemented, so they are reserved here (#GP(0) when set). */
static uint32_t cr4_writable(const aero_machine *m) {
    uint32_t ok = 0;
    if (has_feature(m, FEAT_VME)) ok |= CR4_VME | CR4_PVI;
    if (has_feature(m, FEAT_TSC)) ok |= CR4_TSD;
    if (has_feature(m, FEAT_DE)) ok |= CR4_DE;
    if (has_feature(m, FEAT_PSE)) ok |= CR4_PSE;
    if (has_feature(m, FEAT_MCE)) ok |= CR4_MCE;
    if (has_feature(m, FEAT_PGE)) ok |= CR4_PGE;
    return ok;
}

/* Load CR0, faulting on the invalid combinations before anything changes. Paging
 * translations depend on PG, PE (CPL use) and WP; decoding depends on PE. */
static void set_cr0(aero_machine *m, uint32_t v) {
    v = (v & CR0_IMPLEMENTED) | CR0_ET;
    if ((v & CR0_PG) && !(v & CR0_PE)) aero_fault(m, EXC_GP, 0, 1);
    if ((v & CR0_NW) && !(v & CR0_CD)) aero_fault(m, EXC_GP, 0, 1);
    uint32_t changed = v ^ m->cpu.cr0;
    m->cpu.cr0 = v;
    if (changed & (CR0_PG | CR0_PE | CR0_WP)) aero_tlb_flush(m);
    if (changed & CR0_PE) {
        aero_blocks_flush(m);
        aero_seg_refresh_all(m); /* segment type checks apply in protected mode only */
    }
}

static void set_cr4(aero_machine *m, uint32_t v) {
    if (v & ~cr4_writable(m)) aero_fault(m, EXC_GP, 0, 1);
    uint32_t changed = v ^ m->cpu.cr4;
    m->cpu.cr4 = v;
    if (changed & (CR4_PSE | CR4_PGE | CR4_PAE)) aero_tlb_flush(m);
}

/* CR1, CR5-CR7 do not exist: #UD, checked before privilege (it is an invalid encoding). */
static void check_cr(aero_machine *m, int cr) {
    if (cr != 0 && cr != 2 && cr != 3 && cr != 4) aero_fault_ud(m);
}

/* MOV CRn, r32 (0F 22): in->reg is the control register, in->rm the general register. */
void aero_op_mov_CdRd(aero_machine *m, const aero_insn *in) {
    check_cr(m, in->reg);
    need_cpl0(m);
    uint32_t v = m->cpu.r[in->rm];
    switch (in->reg) {
    case 0: set_cr0(m, v); break;
    case 2: m->cpu.cr2 = v; break;
    case 3: m->cpu.cr3 = v; aero_tlb_flush(m); break;
    default: set_cr4(m, v); break;
    }
    m->exit_block = 1;
    next(m, in);
}

/* MOV r32, CRn (0F 20). */
void aero_op_mov_RdCd(aero_machine *m, const aero_insn *in) {
    check_cr(m, in->reg);
    need_cpl0(m);
    uint32_t v;
    switch (in->reg) {
    case 0: v = m->cpu.cr0; break;
    case 2: v = m->cpu.cr2; break;
    case 3: v = m->cpu.cr3; break;
    default: v = m->cpu.cr4; break;
    }
    m->cpu.r[in->rm] = v;
    next(m, in);
}

/* ---- debug registers ---- */

/* DR4/DR5 alias DR6/DR7 unless CR4.DE is set, which makes them #UD. Then the privilege
 * check, then general detect: with DR7.GD set any access is a #DB fault with DR6.BD set
 * (GD is cleared so the handler itself can use the registers). */
static int dr_access(aero_machine *m, int r) {
    if (r == 4 || r == 5) {
        if (m->cpu.cr4 & CR4_DE) aero_fault_ud(m);
        r += 2;
    }
    need_cpl0(m);
    if (m->cpu.dr[7] & DR7_GD) {
        m->cpu.dr[6] |= DR6_BD;
        m->cpu.dr[7] &= ~DR7_GD;
        aero_fault(m, EXC_DB, 0, 0);
    }
    return r;
}

/* MOV DRn, r32 (0F 23). DR6: only B0-B3, BD, BS, BT are writable, the reserved bits read
 * as 1 (bit 12 as 0 on a P6). DR7: bit 10 reads as 1, bits 11, 12, 14, 15 as 0. */
void aero_op_mov_DdRd(aero_machine *m, const aero_insn *in) {
    int r = dr_access(m, in->reg);
    uint32_t v = m->cpu.r[in->rm];
    if (r == 6) v = (v & 0x0000E00Fu) | 0xFFFF0FF0u;
    else if (r == 7) v = (v & 0xFFFF27FFu) | 0x00000400u;
    m->cpu.dr[r] = v;
    m->exit_block = 1;
    next(m, in);
}

/* MOV r32, DRn (0F 21). */
void aero_op_mov_RdDd(aero_machine *m, const aero_insn *in) {
    int r = dr_access(m, in->reg);
    m->cpu.r[in->rm] = m->cpu.dr[r];
    next(m, in);
}

/* ---- descriptor-table registers ---- */

/* LGDT/LIDT: 16-bit limit, then the base; with a 16-bit operand size only 24 bits of the
 * base are loaded (the high byte becomes 0). The operand is one 6-byte memory location:
 * with 16-bit addressing only its effective address wraps at 64 KB, not its bytes. */
static void load_dtr(aero_machine *m, const aero_insn *in, aero_table_reg *t) {
    need_cpl0(m);
    uint32_t off = ea(m, in);
    uint32_t limit = rd16(m, in->seg, off);
    uint32_t base = rd32(m, in->seg, off + 2);
    if (!in->osz) base &= 0x00FFFFFFu;
    t->limit = limit;
    t->base = base;
    next(m, in);
}

/* SGDT/SIDT: limit, then base. With a 16-bit operand size the sixth byte is written as 0:
 * the P6-era SDM ("the 24-bit base address is stored in the third, fourth, and fifth byte,
 * with the sixth byte filled with 0s"), and the current SDM's compatibility note ("the
 * Intel 286 processor fills these bits with 1s; processor generations later than the Intel
 * 286 processor fill these bits with 0s"). QEMU does the same. Both destinations are
 * checked before either is written. SGDT/SIDT are not privileged (no UMIP on a P6). */
static void store_dtr(aero_machine *m, const aero_insn *in, const aero_table_reg *t) {
    uint32_t off = ea(m, in);
    uint32_t lin_limit = seg_lin_w(m, in->seg, off, 2);
    uint32_t lin_base = seg_lin_w(m, in->seg, off + 2, 4); /* one 6-byte operand, as LGDT */
    aero_probe_write(m, lin_limit, 2);
    aero_probe_write(m, lin_base, 4);
    lin_wr(m, lin_limit, 2, t->limit & 0xFFFF);
    lin_wr(m, lin_base, 4, in->osz ? t->base : (t->base & 0x00FFFFFFu));
    next(m, in);
}

void aero_op_lgdt(aero_machine *m, const aero_insn *in) { load_dtr(m, in, &m->cpu.gdtr); }
void aero_op_lidt(aero_machine *m, const aero_insn *in) { load_dtr(m, in, &m->cpu.idtr); }
void aero_op_sgdt(aero_machine *m, const aero_insn *in) { store_dtr(m, in, &m->cpu.gdtr); }
void aero_op_sidt(aero_machine *m, const aero_insn *in) { store_dtr(m, in, &m->cpu.idtr); }

/* ---- machine status word and caches ---- */

/* SMSW: memory gets the low 16 bits of CR0; a register with a 32-bit operand size gets all
 * of CR0 (the P6 behaviour; the SDM leaves the high half undefined before it). */
void aero_op_smsw(aero_machine *m, const aero_insn *in) {
    if (in->mod == 3) set_reg(m, in->rm, osize(in), m->cpu.cr0);
    else wr16(m, in->seg, ea(m, in), m->cpu.cr0 & 0xFFFF);
    next(m, in);
}

/* LMSW: loads PE, MP, EM, TS only; PE can be set but never cleared. */
void aero_op_lmsw(aero_machine *m, const aero_insn *in) {
    need_cpl0(m);
    uint32_t src = get_E(m, in, 2);
    uint32_t old = m->cpu.cr0;
    uint32_t v = (old & ~(CR0_MP | CR0_EM | CR0_TS)) | (src & (CR0_PE | CR0_MP | CR0_EM | CR0_TS));
    m->cpu.cr0 = v;
    if ((v ^ old) & CR0_PE) {
        aero_tlb_flush(m);
        aero_blocks_flush(m);
        aero_seg_refresh_all(m);
    }
    m->exit_block = 1;
    next(m, in);
}

void aero_op_clts(aero_machine *m, const aero_insn *in) {
    need_cpl0(m);
    m->cpu.cr0 &= ~CR0_TS;
    next(m, in);
}

/* INVD/WBINVD: privileged; caches are not modeled, so nothing else happens. */
void aero_op_invd(aero_machine *m, const aero_insn *in) {
    need_cpl0(m);
    next(m, in);
}

/* INVLPG: privileged; drops the translations of the page holding the operand's linear
 * address. The operand is an address only: no segment-limit check, no memory access. */
void aero_op_invlpg(aero_machine *m, const aero_insn *in) {
    need_cpl0(m);
    aero_tlb_flush_page(m, m->cpu.seg[in->seg].base + ea(m, in));
    m->exit_block = 1;
    next(m, in);
}

/* ---- LDTR and TR (protected mode only: the decoder makes these #UD elsewhere) ---- */

/* Fill a segment cache from a descriptor (byte-granular limit, attr as in aero_segment). */
static void desc_to_cache(aero_segment *s, uint16_t sel, uint32_t lo, uint32_t hi) {
    s->selector = sel;
    s->base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000u);
    uint32_t limit = (lo & 0xFFFF) | (hi & 0x000F0000u);
    if (hi & 0x00800000u) limit = (limit << 12) | 0xFFF;
    s->limit = limit;
    s->attr = (uint16_t)(((hi >> 8) & 0xFF) | ((hi >> 8) & 0xF000));
}

/* SLDT/STR: a register destination with a 32-bit operand size gets the zero-extended
 * selector (P6 and later); memory always gets 16 bits. */
static void store_selector(aero_machine *m, const aero_insn *in, uint16_t sel) {
    if (in->mod == 3) set_reg(m, in->rm, osize(in), sel);
    else wr16(m, in->seg, ea(m, in), sel);
    next(m, in);
}

void aero_op_sldt(aero_machine *m, const aero_insn *in) { store_selector(m, in, m->cpu.ldtr.selector); }
void aero_op_str(aero_machine *m, const aero_insn *in) { store_selector(m, in, m->cpu.tr.selector); }

/* Descriptor of a GDT selector for LLDT/LTR: #GP(sel) if it refers to the LDT or lies
 * outside the GDT. */
static void read_gdt_entry(aero_machine *m, uint16_t sel, uint32_t *lo, uint32_t *hi) {
    if ((sel & 4) || aero_read_descriptor(m, sel, lo, hi) < 0) aero_fault(m, EXC_GP, sel & ~3u, 1);
}

/* LLDT: an LDT descriptor (S = 0, type 2) from the GDT. A null selector leaves LDTR
 * unusable: every LDT reference then fails. */
void aero_op_lldt(aero_machine *m, const aero_insn *in) {
    need_cpl0(m);
    uint16_t sel = (uint16_t)get_E(m, in, 2);
    if ((sel & ~3u) == 0) {
        m->cpu.ldtr.selector = sel;
        m->cpu.ldtr.base = 0;
        m->cpu.ldtr.limit = 0;
        m->cpu.ldtr.attr = 0;
        next(m, in);
        return;
    }
    uint32_t lo, hi;
    read_gdt_entry(m, sel, &lo, &hi);
    if (((hi >> 8) & 0x1F) != 0x02) aero_fault(m, EXC_GP, sel & ~3u, 1);
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, sel & ~3u, 1);
    desc_to_cache(&m->cpu.ldtr, sel, lo, hi);
    next(m, in);
}

/* LTR: an available TSS (type 1: 16-bit, 9: 32-bit) from the GDT; it is marked busy in
 * the descriptor (the only write, made after every check) and in TR. */
void aero_op_ltr(aero_machine *m, const aero_insn *in) {
    need_cpl0(m);
    uint16_t sel = (uint16_t)get_E(m, in, 2);
    if ((sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    uint32_t lo, hi;
    read_gdt_entry(m, sel, &lo, &hi);
    uint32_t type = (hi >> 8) & 0x1F;
    if (type != 0x01 && type != 0x09) aero_fault(m, EXC_GP, sel & ~3u, 1);
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, sel & ~3u, 1);
    lin_wr(m, m->cpu.gdtr.base + (sel & ~7u) + 5, 1, ((hi >> 8) & 0xFF) | 2);
    desc_to_cache(&m->cpu.tr, sel, lo, hi | 0x200);
    next(m, in);
}

/* ---- descriptor queries: ZF reports the answer, bad selectors are not faults ---- */

/* System descriptor types LAR accepts (1-5 TSS16/LDT/gates16/task gate, 9 B TSS32, C call
 * gate32) and those LSL accepts (segments with a limit: TSS and LDT). */
#define LAR_SYS_TYPES ((1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 9) | (1u << 11) | (1u << 12))
#define LSL_SYS_TYPES ((1u << 1) | (1u << 2) | (1u << 3) | (1u << 9) | (1u << 11))

/* Is sel's descriptor visible to LAR/LSL at the current CPL and the selector's RPL?
 * Conforming code segments are visible at any privilege. */
static int query_desc(aero_machine *m, uint16_t sel, uint32_t sys_types, uint32_t *lo, uint32_t *hi) {
    if ((sel & ~3u) == 0 || aero_read_descriptor(m, sel, lo, hi) < 0) return 0;
    uint32_t type = (*hi >> 8) & 0xF, dpl = (*hi >> 13) & 3;
    if (*hi & 0x1000) {
        if ((type & 0xC) == 0xC) return 1;
    } else if (!((sys_types >> type) & 1)) {
        return 0;
    }
    return dpl >= m->cpu.cpl && dpl >= (sel & 3u);
}

/* VERR (/4) / VERW (/5): readable / writable from the current CPL and the RPL. The
 * present bit is not checked. */
void aero_op_verrw(aero_machine *m, const aero_insn *in) {
    uint16_t sel = (uint16_t)get_E(m, in, 2);
    uint32_t lo, hi;
    int ok = 0;
    if (query_desc(m, sel, 0, &lo, &hi)) {
        uint32_t type = (hi >> 8) & 0xF;
        int code = (type & 8) != 0;
        if (in->reg == 4) ok = !code || (type & 2);
        else ok = !code && (type & 2);
    }
    set_flags_masked(m, F_ZF, ok ? F_ZF : 0);
    next(m, in);
}

/* LAR: the access rights of the descriptor's second doubleword. With a 32-bit operand it
 * is masked by 00FFFF00h: bits 19:16 (the limit's high nibble) are undefined in the SDM
 * and are passed through, as Bochs does (QEMU clears them). 16-bit: byte 5 only. */
void aero_op_lar(aero_machine *m, const aero_insn *in) {
    uint16_t sel = (uint16_t)get_E(m, in, 2);
    uint32_t lo, hi;
    int ok = query_desc(m, sel, LAR_SYS_TYPES, &lo, &hi);
    if (ok) set_reg(m, in->reg, osize(in), hi & (in->osz ? 0x00FFFF00u : 0xFF00u));
    set_flags_masked(m, F_ZF, ok ? F_ZF : 0);
    next(m, in);
}

/* LSL: the byte-granular segment limit (granularity applied); 16-bit: its low word. */
void aero_op_lsl(aero_machine *m, const aero_insn *in) {
    uint16_t sel = (uint16_t)get_E(m, in, 2);
    uint32_t lo, hi;
    int ok = query_desc(m, sel, LSL_SYS_TYPES, &lo, &hi);
    if (ok) {
        uint32_t limit = (lo & 0xFFFF) | (hi & 0x000F0000u);
        if (hi & 0x00800000u) limit = (limit << 12) | 0xFFF;
        set_reg(m, in->reg, osize(in), limit);
    }
    set_flags_masked(m, F_ZF, ok ? F_ZF : 0);
    next(m, in);
}

/* ARPL Ew, Gw: raise the destination selector's RPL to the source's; ZF = 1 if it was
 * raised. A memory destination is written only when it changes. */
void aero_op_arpl(aero_machine *m, const aero_insn *in) {
    uint32_t src_rpl = get_r16(m, in->reg) & 3;
    int raised;
    if (in->mod == 3) {
        uint32_t dst = get_r16(m, in->rm);
        raised = (dst & 3) < src_rpl;
        if (raised) set_r16(m, in->rm, (uint16_t)((dst & ~3u) | src_rpl));
    } else {
        uint32_t lin = seg_lin_w(m, in->seg, ea(m, in), 2);
        uint32_t dst = lin_rd(m, lin, 2);
        raised = (dst & 3) < src_rpl;
        if (raised) lin_wr(m, lin, 2, (dst & ~3u) | src_rpl);
    }
    set_flags_masked(m, F_ZF, raised ? F_ZF : 0);
    next(m, in);
}

/* ---- fast system calls ---- */

/* A flat 4 GB segment (base 0, G = 1, D/B = 1) with the given access byte. */
static void flat_segment(aero_segment *s, uint16_t sel, uint16_t access) {
    s->selector = sel;
    s->base = 0;
    s->limit = 0xFFFFFFFFu;
    s->attr = (uint16_t)(access | SA_DB | SA_G);
}

/* SYSENTER (SDM pseudocode): #GP(0) in real mode or with a null SYSENTER_CS; otherwise
 * flat CPL 0 code at SYSENTER_CS and stack at SYSENTER_CS + 8, from virtual-8086 mode too.
 * The descriptors are not read. aero takes the SEP feature bit at its word: a real Pentium
 * Pro reports SEP without implementing SYSENTER (signatures below 633h). */
void aero_op_sysenter(aero_machine *m, const aero_insn *in) {
    (void)in;
    if (!has_feature(m, FEAT_SEP)) aero_fault_ud(m);
    uint16_t cs = (uint16_t)(m->cpu.sysenter_cs & 0xFFFC);
    if (!(m->cpu.cr0 & CR0_PE) || cs == 0) aero_fault(m, EXC_GP, 0, 1);
    m->cpu.eflags &= ~(F_VM | F_IF | F_RF);
    flat_segment(&m->cpu.seg[S_CS], cs, SA_P | SA_S | 0x0B);
    flat_segment(&m->cpu.seg[S_SS], (uint16_t)(cs + 8), SA_P | SA_S | 0x03);
    aero_seg_refresh_all(m); /* CS, SS and possibly the mode (VM) changed */
    m->cpu.cpl = 0;
    m->cpu.r[R_ESP] = m->cpu.sysenter_esp;
    m->cpu.eip = m->cpu.sysenter_eip;
    m->exit_block = 1;
}

/* SYSEXIT: from CPL 0 only; flat CPL 3 code at SYSENTER_CS + 16 and stack at + 24 (RPL 3),
 * ESP = ECX, EIP = EDX. */
void aero_op_sysexit(aero_machine *m, const aero_insn *in) {
    (void)in;
    if (!has_feature(m, FEAT_SEP)) aero_fault_ud(m);
    uint16_t cs = (uint16_t)m->cpu.sysenter_cs;
    if (!(m->cpu.cr0 & CR0_PE) || (cs & 0xFFFC) == 0) aero_fault(m, EXC_GP, 0, 1);
    need_cpl0(m);
    flat_segment(&m->cpu.seg[S_CS], (uint16_t)((cs + 16) | 3), SA_P | SA_S | SA_DPL | 0x0B);
    flat_segment(&m->cpu.seg[S_SS], (uint16_t)((cs + 24) | 3), SA_P | SA_S | SA_DPL | 0x03);
    aero_seg_refresh_all(m);
    m->cpu.cpl = 3;
    m->cpu.r[R_ESP] = m->cpu.r[R_ECX];
    m->cpu.eip = m->cpu.r[R_EDX];
    m->exit_block = 1;
}

/* ---- invalid opcode and the x87 escapes ---- */

void aero_op_ud2(aero_machine *m, const aero_insn *in) {
    (void)in;
    aero_fault_ud(m);
}

/* WAIT and the x87 escapes (D8-DF): fpu.c. */
