/* aero core: data movement — MOV, LEA, XCHG, conversions, flag transfers. */
#include "cpu.h"

AERO_INLINE int sz_v(const aero_insn *in) { return osize(in); }

void aero_op_mov_EbGb(aero_machine *m, const aero_insn *in) { set_E(m, in, 1, get_r8(m, in->reg)); next(m, in); }
void aero_op_mov_EvGv(aero_machine *m, const aero_insn *in) { int s = sz_v(in); set_E(m, in, s, get_reg(m, in->reg, s)); next(m, in); }
void aero_op_mov_GbEb(aero_machine *m, const aero_insn *in) { set_r8(m, in->reg, (uint8_t)get_E(m, in, 1)); next(m, in); }
void aero_op_mov_GvEv(aero_machine *m, const aero_insn *in) { int s = sz_v(in); set_reg(m, in->reg, s, get_E(m, in, s)); next(m, in); }
void aero_op_mov_EbIb(aero_machine *m, const aero_insn *in) { set_E(m, in, 1, in->imm & 0xFF); next(m, in); }
void aero_op_mov_EvIz(aero_machine *m, const aero_insn *in) { int s = sz_v(in); set_E(m, in, s, in->imm); next(m, in); }
void aero_op_mov_ZbIb(aero_machine *m, const aero_insn *in) { set_r8(m, in->reg, (uint8_t)in->imm); next(m, in); }
void aero_op_mov_ZvIv(aero_machine *m, const aero_insn *in) { set_reg(m, in->reg, sz_v(in), in->imm); next(m, in); }

/* A0-A3: moffs forms; the offset is in disp, the segment in seg. */
void aero_op_mov_ALOb(aero_machine *m, const aero_insn *in) { set_r8(m, R_EAX, (uint8_t)rd8(m, in->seg, in->disp)); next(m, in); }
void aero_op_mov_eAXOv(aero_machine *m, const aero_insn *in) { int s = sz_v(in); set_reg(m, R_EAX, s, rdn(m, in->seg, in->disp, s)); next(m, in); }
void aero_op_mov_ObAL(aero_machine *m, const aero_insn *in) { wr8(m, in->seg, in->disp, get_r8(m, R_EAX)); next(m, in); }
void aero_op_mov_OveAX(aero_machine *m, const aero_insn *in) { int s = sz_v(in); wrn(m, in->seg, in->disp, s, get_reg(m, R_EAX, s)); next(m, in); }

/* MOV Ew,Sw: a register destination takes the zero-extended selector with a 32-bit
 * operand size; memory always gets 16 bits. */
void aero_op_mov_EwSw(aero_machine *m, const aero_insn *in) {
    if (in->reg > 5) aero_fault_ud(m);
    uint32_t sel = m->cpu.seg[in->reg].selector;
    if (in->mod == 3) set_reg(m, in->rm, sz_v(in), sel);
    else wr16(m, in->seg, ea(m, in), sel);
    next(m, in);
}

/* MOV Sw,Ew: CS cannot be loaded this way; loading SS opens a one-instruction
 * interrupt shadow. */
void aero_op_mov_SwEw(aero_machine *m, const aero_insn *in) {
    if (in->reg > 5 || in->reg == S_CS) aero_fault_ud(m);
    uint16_t sel = (uint16_t)get_E(m, in, 2);
    aero_load_seg(m, in->reg, sel);
    if (in->reg == S_SS) m->cpu.inhibit_irq = 1;
    next(m, in);
}

void aero_op_lea(aero_machine *m, const aero_insn *in) {
    set_reg(m, in->reg, sz_v(in), ea(m, in));
    next(m, in);
}

AERO_INLINE void xchg(aero_machine *m, const aero_insn *in, int size) {
    uint32_t r = get_reg(m, in->reg, size);
    if (in->mod == 3) {
        uint32_t v = get_reg(m, in->rm, size);
        set_reg(m, in->rm, size, r);
        set_reg(m, in->reg, size, v);
    } else {
        uint32_t lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        uint32_t v = lin_rd_w(m, lin, size);
        lin_wr(m, lin, size, r);
        set_reg(m, in->reg, size, v);
    }
    next(m, in);
}
void aero_op_xchg_EbGb(aero_machine *m, const aero_insn *in) { xchg(m, in, 1); }
void aero_op_xchg_EvGv(aero_machine *m, const aero_insn *in) { xchg(m, in, sz_v(in)); }
void aero_op_xchg_ZveAX(aero_machine *m, const aero_insn *in) {
    int s = sz_v(in);
    uint32_t a = get_reg(m, R_EAX, s);
    set_reg(m, R_EAX, s, get_reg(m, in->reg, s));
    set_reg(m, in->reg, s, a);
    next(m, in);
}

void aero_op_xlat(aero_machine *m, const aero_insn *in) {
    uint32_t off = m->cpu.r[R_EBX] + get_r8(m, R_EAX);
    if (!in->asz) off &= 0xFFFF;
    set_r8(m, R_EAX, (uint8_t)rd8(m, in->seg, off));
    next(m, in);
}

void aero_op_nop(aero_machine *m, const aero_insn *in) { next(m, in); }
/* 0F 18-1F: hint NOPs (prefetch and reserved-NOP). The memory operand is not accessed. */
void aero_op_nop_Ev(aero_machine *m, const aero_insn *in) { next(m, in); }

/* LES/LDS/LSS/LFS/LGS: offset then selector from memory; the register is written only
 * after the segment load succeeded. */
void aero_op_lxs(aero_machine *m, const aero_insn *in) {
    static const int segs[4] = {S_SS, S_SS, S_FS, S_GS}; /* 0F B2, (B3 is BTR), B4, B5 */
    int seg = in->op == 0xC4 ? S_ES : in->op == 0xC5 ? S_DS : segs[(in->op - 0xB2) & 3];
    int s = sz_v(in);
    uint32_t off = ea(m, in);
    uint32_t v = rdn(m, in->seg, off, s);
    uint32_t noff = off + (uint32_t)s; /* one m16:16/32 operand: only its EA wraps */
    uint16_t sel = (uint16_t)rd16(m, in->seg, noff);
    aero_load_seg(m, seg, sel);
    if (seg == S_SS) m->cpu.inhibit_irq = 1;
    set_reg(m, in->reg, s, v);
    next(m, in);
}

void aero_op_cbw(aero_machine *m, const aero_insn *in) {
    if (in->osz) m->cpu.r[R_EAX] = (uint32_t)(int32_t)(int16_t)m->cpu.r[R_EAX];
    else set_r16(m, R_EAX, (uint16_t)(int16_t)(int8_t)m->cpu.r[R_EAX]);
    next(m, in);
}
void aero_op_cwd(aero_machine *m, const aero_insn *in) {
    if (in->osz) m->cpu.r[R_EDX] = (m->cpu.r[R_EAX] & 0x80000000u) ? 0xFFFFFFFFu : 0;
    else set_r16(m, R_EDX, (m->cpu.r[R_EAX] & 0x8000) ? 0xFFFF : 0);
    next(m, in);
}

void aero_op_movzx_GvEb(aero_machine *m, const aero_insn *in) { set_reg(m, in->reg, sz_v(in), get_E(m, in, 1)); next(m, in); }
void aero_op_movzx_GvEw(aero_machine *m, const aero_insn *in) { set_reg(m, in->reg, sz_v(in), get_E(m, in, 2)); next(m, in); }
void aero_op_movsx_GvEb(aero_machine *m, const aero_insn *in) { set_reg(m, in->reg, sz_v(in), (uint32_t)(int32_t)(int8_t)get_E(m, in, 1)); next(m, in); }
void aero_op_movsx_GvEw(aero_machine *m, const aero_insn *in) { set_reg(m, in->reg, sz_v(in), (uint32_t)(int32_t)(int16_t)get_E(m, in, 2)); next(m, in); }

/* BSWAP; with a 16-bit operand (undefined) the low word becomes zero, as on Intel CPUs. */
void aero_op_bswap(aero_machine *m, const aero_insn *in) {
    uint32_t v = m->cpu.r[in->reg];
    if (in->osz) m->cpu.r[in->reg] = __builtin_bswap32(v);
    else set_r16(m, in->reg, 0);
    next(m, in);
}

/* LAHF/SAHF: SF ZF AF PF CF <-> AH (bit 1 reads as 1). */
void aero_op_lahf(aero_machine *m, const aero_insn *in) {
    set_r8(m, R_EAX + 4, (uint8_t)((get_flags(m) & (F_SF | F_ZF | F_AF | F_PF | F_CF)) | F_BIT1));
    next(m, in);
}
void aero_op_sahf(aero_machine *m, const aero_insn *in) {
    uint32_t mask = F_SF | F_ZF | F_AF | F_PF | F_CF;
    set_flags_masked(m, mask, get_r8(m, R_EAX + 4));
    next(m, in);
}
/* SALC (D6, undocumented but present on every IA-32 CPU): AL = CF ? 0xFF : 0. */
void aero_op_salc(aero_machine *m, const aero_insn *in) { set_r8(m, R_EAX, get_cf(m) ? 0xFF : 0); next(m, in); }

void aero_op_clc(aero_machine *m, const aero_insn *in) { set_flags_masked(m, F_CF, 0); next(m, in); }
void aero_op_stc(aero_machine *m, const aero_insn *in) { set_flags_masked(m, F_CF, F_CF); next(m, in); }
void aero_op_cmc(aero_machine *m, const aero_insn *in) { set_flags_masked(m, F_CF, get_cf(m) ^ F_CF); next(m, in); }
void aero_op_cld(aero_machine *m, const aero_insn *in) { m->cpu.eflags &= ~F_DF; next(m, in); }
void aero_op_std(aero_machine *m, const aero_insn *in) { m->cpu.eflags |= F_DF; next(m, in); }

/* ---- forms specialised at decode time (fastpath.c): 32-bit operands in 32-bit code,
 * 32-bit addressing for the memory forms (_m32), mod = 3 for the register forms (_r32). ---- */
/* Bodies for DEF_FORMS: 1 when done, 0 when the generic handler must run it. The memory
 * forms hand a TLB miss or a segment slow path over before changing anything (see
 * fast_rd_ptr). The _b32 forms have no index register (base + displacement: the common
 * stack and structure accesses): one register read less. */
AERO_INLINE int mov_EvGv_r32_body(aero_machine *m, const aero_insn *in) { m->cpu.r[in->rm] = m->cpu.r[in->reg]; return 1; }
AERO_INLINE int mov_GvEv_r32_body(aero_machine *m, const aero_insn *in) { m->cpu.r[in->reg] = m->cpu.r[in->rm]; return 1; }
AERO_INLINE int mov_ZvIv_32_body(aero_machine *m, const aero_insn *in) { m->cpu.r[in->reg] = in->imm; return 1; }
AERO_INLINE int lea_32_body(aero_machine *m, const aero_insn *in) { m->cpu.r[in->reg] = ea32(m, in); return 1; }
AERO_INLINE int store32(aero_machine *m, const aero_insn *in, uint32_t off, uint32_t v) {
    uint8_t *p = fast_wr_ptr(m, in->seg, off, 4);
    if (AERO_UNLIKELY(!p)) return 0;
    store_le(p, 4, v);
    return 1;
}
AERO_INLINE int load32(aero_machine *m, const aero_insn *in, uint32_t off) {
    const uint8_t *p = fast_rd_ptr(m, in->seg, off, 4);
    if (AERO_UNLIKELY(!p)) return 0;
    m->cpu.r[in->reg] = load_le(p, 4);
    return 1;
}
AERO_INLINE int mov_EvGv_m32_body(aero_machine *m, const aero_insn *in) { return store32(m, in, ea32(m, in), m->cpu.r[in->reg]); }
AERO_INLINE int mov_GvEv_m32_body(aero_machine *m, const aero_insn *in) { return load32(m, in, ea32(m, in)); }
AERO_INLINE int mov_EvGv_b32_body(aero_machine *m, const aero_insn *in) { return store32(m, in, m->cpu.r[in->base] + in->disp, m->cpu.r[in->reg]); }
AERO_INLINE int mov_GvEv_b32_body(aero_machine *m, const aero_insn *in) { return load32(m, in, m->cpu.r[in->base] + in->disp); }
AERO_INLINE int mov_EvIz_m32_body(aero_machine *m, const aero_insn *in) { return store32(m, in, ea32(m, in), in->imm); }
AERO_INLINE int xchg_EvGv_m32_body(aero_machine *m, const aero_insn *in) {
    uint8_t *p = fast_rw_ptr(m, in->seg, ea32(m, in), 4);
    if (AERO_UNLIKELY(!p)) return 0;
    const uint32_t r = in->reg;
    uint32_t v = load_le(p, 4);
    store_le(p, 4, m->cpu.r[r]);
    m->cpu.r[r] = v;
    return 1;
}
DEF_FORMS(mov_EvGv_r32, aero_op_mov_EvGv, mov_EvGv_r32_body)
DEF_FORMS(mov_GvEv_r32, aero_op_mov_GvEv, mov_GvEv_r32_body)
DEF_FORMS(mov_ZvIv_32, aero_op_mov_ZvIv, mov_ZvIv_32_body)
DEF_FORMS(lea_32, aero_op_lea, lea_32_body)
DEF_FORMS(mov_EvGv_m32, aero_op_mov_EvGv, mov_EvGv_m32_body)
DEF_FORMS(mov_GvEv_m32, aero_op_mov_GvEv, mov_GvEv_m32_body)
DEF_FORMS(mov_EvGv_b32, aero_op_mov_EvGv, mov_EvGv_b32_body)
DEF_FORMS(mov_GvEv_b32, aero_op_mov_GvEv, mov_GvEv_b32_body)
DEF_FORMS(mov_EvIz_m32, aero_op_mov_EvIz, mov_EvIz_m32_body)
DEF_FORMS(xchg_EvGv_m32, aero_op_xchg_EvGv, xchg_EvGv_m32_body)
