/* aero core: control transfer and stack instructions.
 *
 * Every handler validates whatever can fault (segment limits, pages, descriptors) before
 * it commits ESP, EIP or segment registers: a fault unwinds with longjmp and the
 * instruction is delivered or restarted with the state it started from. Stack writes of
 * several slots are checked slot by slot first, then written, then ESP is committed.
 *
 * Call gates and task gates are not implemented: a far JMP/CALL to a gate selector raises
 * #GP(selector) (aero_far_jump accepts code segments only), and IRET with NT=1 raises #GP(0)
 * since there are no hardware task switches.
 */
#include "cpu.h"

/* EIP of the next instruction (16-bit IP wraps in 16-bit code segments). */
AERO_INLINE uint32_t next_eip(const aero_machine *m, const aero_insn *in) {
    uint32_t e = m->cpu.eip + in->len;
    return code32(m) ? e : (e & 0xFFFF);
}

/* Near branch target: masked to 16 bits with a 16-bit operand size. */
AERO_INLINE uint32_t near_target(const aero_insn *in, uint32_t t) { return in->osz ? t : (t & 0xFFFF); }

AERO_INLINE void check_cs_limit(aero_machine *m, uint32_t target) {
    if (target > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);
}

/* Stack slot `k` bytes above SP, wrapped to the stack size. */
AERO_INLINE uint32_t sp_at(aero_machine *m, uint32_t k) { return (sp_get(m) + k) & sp_mask(m); }
AERO_INLINE uint32_t stk_rd(aero_machine *m, uint32_t k, int size) { return rdn(m, S_SS, sp_at(m, k), size); }

/* Push n values (vals[0] first, so it lands highest). Every slot is limit- and page-checked
 * before the first write, so a fault leaves memory and ESP untouched. */
static void push_n(aero_machine *m, int size, int n, const uint32_t *vals) {
    uint32_t lin[32];
    uint32_t sp = sp_get(m), mask = sp_mask(m);
    for (int i = 0; i < n; i++) lin[i] = seg_lin(m, S_SS, (sp - (uint32_t)((i + 1) * size)) & mask, (uint32_t)size);
    for (int i = 0; i < n; i++) aero_probe_write(m, lin[i], (uint32_t)size);
    for (int i = 0; i < n; i++) lin_wr(m, lin[i], size, vals[i]);
    sp_set(m, (sp - (uint32_t)(n * size)) & mask);
}

/* ---- descriptors (for returns to an outer privilege level) ---- */

/* Descriptor of a non-null selector; #GP(selector) when it lies outside its table. */
static void read_desc(aero_machine *m, uint16_t sel, uint32_t *lo, uint32_t *hi) {
    uint32_t base = (sel & 4) ? m->cpu.ldtr.base : m->cpu.gdtr.base;
    uint32_t limit = (sel & 4) ? m->cpu.ldtr.limit : m->cpu.gdtr.limit;
    if ((sel & ~7u) + 7 > limit) aero_fault(m, EXC_GP, sel & ~3u, 1);
    *lo = lin_rd(m, base + (sel & ~7u), 4);
    *hi = lin_rd(m, base + (sel & ~7u) + 4, 4);
}

/* Segment limit in bytes described by a descriptor (granularity applied). */
static uint32_t desc_limit(uint32_t lo, uint32_t hi) {
    uint32_t limit = (lo & 0xFFFF) | (hi & 0x000F0000u);
    return (hi & 0x00800000u) ? ((limit << 12) | 0xFFF) : limit;
}

/* Load a segment cache from a descriptor, marking it accessed (in memory too). */
static void commit_desc(aero_machine *m, aero_segment *s, uint16_t sel, uint32_t lo, uint32_t hi) {
    if (!(hi & 0x100)) {
        uint32_t base = (sel & 4) ? m->cpu.ldtr.base : m->cpu.gdtr.base;
        lin_wr(m, base + (sel & ~7u) + 5, 1, ((hi >> 8) & 0xFF) | 1);
    }
    hi |= 0x100;
    s->selector = sel;
    s->base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000u);
    s->limit = desc_limit(lo, hi);
    s->attr = (uint16_t)(((hi >> 8) & 0xFF) | ((hi >> 8) & 0xF000));
}

/* RETF/IRET to an outer privilege level (RPL of cs_sel > CPL): checks the code and stack
 * descriptors, then loads CS:EIP and SS:ESP, releases `imm` bytes of the outer stack, and
 * nulls the data segment registers the new CPL may not use. */
static void return_outer(aero_machine *m, uint16_t cs_sel, uint32_t eip, uint16_t ss_sel, uint32_t esp,
                         uint32_t imm) {
    uint32_t rpl = cs_sel & 3u;
    uint32_t clo, chi, slo, shi;
    if ((cs_sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    read_desc(m, cs_sel, &clo, &chi);
    uint32_t ctype = (chi >> 8) & 0x1F, cdpl = (chi >> 13) & 3;
    if ((ctype & 0x18) != 0x18) aero_fault(m, EXC_GP, cs_sel & ~3u, 1);
    if ((ctype & 0x04) ? cdpl > rpl : cdpl != rpl) aero_fault(m, EXC_GP, cs_sel & ~3u, 1);
    if (!(chi & 0x8000)) aero_fault(m, EXC_NP, cs_sel & ~3u, 1);
    if ((ss_sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    read_desc(m, ss_sel, &slo, &shi);
    uint32_t stype = (shi >> 8) & 0x1F, sdpl = (shi >> 13) & 3;
    if ((ss_sel & 3u) != rpl || (stype & 0x1A) != 0x12 || sdpl != rpl)
        aero_fault(m, EXC_GP, ss_sel & ~3u, 1);
    if (!(shi & 0x8000)) aero_fault(m, EXC_SS, ss_sel & ~3u, 1);
    if (eip > desc_limit(clo, chi)) aero_fault(m, EXC_GP, 0, 1);
    commit_desc(m, &m->cpu.seg[S_CS], cs_sel, clo, chi);
    commit_desc(m, &m->cpu.seg[S_SS], ss_sel, slo, shi);
    m->cpu.cpl = rpl;
    m->cpu.eip = eip;
    /* A 16-bit stack segment takes only SP: the upper half of ESP is kept, as on hardware. */
    if (stack32(m)) m->cpu.r[R_ESP] = esp;
    else set_r16(m, R_ESP, (uint16_t)esp);
    sp_set(m, sp_at(m, imm));
    static const int data_segs[4] = {S_ES, S_DS, S_FS, S_GS};
    for (int i = 0; i < 4; i++) {
        aero_segment *s = &m->cpu.seg[data_segs[i]];
        int conforming_code = (s->attr & 0x1C) == 0x1C;
        uint32_t dpl = (s->attr >> 5) & 3;
        if ((s->attr & SA_S) && !conforming_code && dpl < rpl) {
            s->selector = 0;
            s->base = 0;
            s->limit = 0;
            s->attr = 0;
        }
    }
    aero_tlb_flush(m); /* user/supervisor page checks depend on the CPL */
}

/* ---- jumps ---- */

void aero_op_jcc(aero_machine *m, const aero_insn *in) {
    if (aero_cond(m, in->op & 15)) aero_jump_near(m, near_target(in, m->cpu.eip + in->len + in->imm));
    else next(m, in);
}

void aero_op_jmp_J(aero_machine *m, const aero_insn *in) {
    aero_jump_near(m, near_target(in, m->cpu.eip + in->len + in->imm));
}

void aero_op_jmp_Ev(aero_machine *m, const aero_insn *in) {
    aero_jump_near(m, near_target(in, get_E(m, in, osize(in))));
}

void aero_op_jmpf_Ap(aero_machine *m, const aero_insn *in) { aero_far_jump(m, in->imm2, in->imm); }

void aero_op_jmpf_Mp(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t a = ea(m, in);
    uint32_t off = rdn(m, in->seg, a, size);
    uint16_t sel = (uint16_t)rd16(m, in->seg, (a + (uint32_t)size) & (in->asz ? 0xFFFFFFFFu : 0xFFFFu));
    aero_far_jump(m, sel, off);
}

/* ---- calls and returns ---- */

static void call_near(aero_machine *m, const aero_insn *in, uint32_t target) {
    target = near_target(in, target);
    check_cs_limit(m, target);
    push(m, osize(in), next_eip(m, in));
    m->cpu.eip = target;
}

void aero_op_call_Jz(aero_machine *m, const aero_insn *in) { call_near(m, in, m->cpu.eip + in->len + in->imm); }
void aero_op_call_Ev(aero_machine *m, const aero_insn *in) { call_near(m, in, get_E(m, in, osize(in))); }

/* Far CALL to a code segment: CS then EIP are pushed with the operand size (the selector
 * zero-extended in a 32-bit slot). The stack slots are checked before the transfer and
 * written after it, so no fault can leave a half-done call. */
static void call_far(aero_machine *m, const aero_insn *in, uint16_t sel, uint32_t off) {
    int size = osize(in);
    if (!aero_pm(m) && off > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);
    uint32_t sp = sp_get(m), mask = sp_mask(m);
    uint32_t s1 = (sp - (uint32_t)size) & mask, s2 = (sp - 2u * (uint32_t)size) & mask;
    uint32_t l1 = seg_lin(m, S_SS, s1, (uint32_t)size), l2 = seg_lin(m, S_SS, s2, (uint32_t)size);
    aero_probe_write(m, l1, (uint32_t)size);
    aero_probe_write(m, l2, (uint32_t)size);
    uint32_t old_cs = m->cpu.seg[S_CS].selector, ret = next_eip(m, in);
    aero_far_jump(m, sel, off);
    lin_wr(m, l1, size, old_cs);
    lin_wr(m, l2, size, ret);
    sp_set(m, s2);
}

void aero_op_callf_Ap(aero_machine *m, const aero_insn *in) { call_far(m, in, in->imm2, in->imm); }

void aero_op_callf_Mp(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t a = ea(m, in);
    uint32_t off = rdn(m, in->seg, a, size);
    uint16_t sel = (uint16_t)rd16(m, in->seg, (a + (uint32_t)size) & (in->asz ? 0xFFFFFFFFu : 0xFFFFu));
    call_far(m, in, sel, off);
}

static void ret_near(aero_machine *m, const aero_insn *in, uint32_t imm) {
    int size = osize(in);
    uint32_t target = stk_rd(m, 0, size);
    aero_jump_near(m, target);
    sp_set(m, sp_at(m, (uint32_t)size + imm));
}

void aero_op_ret(aero_machine *m, const aero_insn *in) { ret_near(m, in, 0); }
void aero_op_ret_Iw(aero_machine *m, const aero_insn *in) { ret_near(m, in, in->imm & 0xFFFF); }

/* RETF (CB) and RETF Iw (CA). */
void aero_op_retf(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t imm = in->op == 0xCA ? (in->imm & 0xFFFF) : 0;
    uint32_t off = stk_rd(m, 0, size);
    uint16_t sel = (uint16_t)stk_rd(m, (uint32_t)size, size);
    if (aero_pm(m)) {
        uint32_t rpl = sel & 3u;
        if (rpl < m->cpu.cpl) aero_fault(m, EXC_GP, sel & ~3u, 1);
        if (rpl > m->cpu.cpl) {
            uint32_t k = 2u * (uint32_t)size + imm;
            uint32_t esp = stk_rd(m, k, size);
            uint16_t ss = (uint16_t)stk_rd(m, k + (uint32_t)size, size);
            return_outer(m, sel, off, ss, esp, imm);
            return;
        }
    }
    aero_far_jump(m, sel, off);
    sp_set(m, sp_at(m, 2u * (uint32_t)size + imm));
}

/* ---- IRET ---- */

/* EFLAGS after a protected-mode IRET that popped `fl`, decided with the current CPL. */
static uint32_t iret_pm_flags(aero_machine *m, uint32_t fl, int osz) {
    uint32_t old = get_flags(m);
    uint32_t cpl = m->cpu.cpl, iopl = (old & F_IOPL) >> 12;
    uint32_t mask = F_ARITH | F_TF | F_DF | F_NT;
    if (osz) mask |= F_RF | F_AC | F_ID;
    if (cpl <= iopl) mask |= F_IF;
    if (cpl == 0) mask |= F_IOPL;
    return (old & ~mask) | (fl & mask) | F_BIT1;
}

/* Return from protected mode (CPL 0) to virtual-8086 mode: EIP CS EFLAGS ESP SS ES DS FS GS
 * were pushed as dwords; every segment is then loaded the virtual-8086 way. */
static void iret_to_v86(aero_machine *m, uint32_t eip, uint16_t cs, uint32_t fl) {
    uint32_t v[6];
    for (int i = 0; i < 6; i++) v[i] = stk_rd(m, 12u + 4u * (uint32_t)i, 4);
    if (eip > 0xFFFF) aero_fault(m, EXC_GP, 0, 1);
    m->cpu.eflags = (fl & F_WRITABLE) | F_BIT1;
    m->cpu.lf_op = LF_NONE;
    m->cpu.cpl = 3;
    aero_load_seg(m, S_CS, cs);
    aero_load_seg(m, S_SS, (uint16_t)v[1]);
    aero_load_seg(m, S_ES, (uint16_t)v[2]);
    aero_load_seg(m, S_DS, (uint16_t)v[3]);
    aero_load_seg(m, S_FS, (uint16_t)v[4]);
    aero_load_seg(m, S_GS, (uint16_t)v[5]);
    m->cpu.r[R_ESP] = v[0];
    m->cpu.eip = eip;
    aero_tlb_flush(m);
}

void aero_op_iret(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t s = (uint32_t)size;
    if (!aero_pm(m)) {
        /* Real mode, or virtual-8086 mode with IOPL 3 (IOPL itself is then kept). */
        uint32_t old = get_flags(m);
        int v86 = (old & F_VM) != 0;
        if (v86 && (old & F_IOPL) != F_IOPL) aero_fault(m, EXC_GP, 0, 1);
        uint32_t eip = stk_rd(m, 0, size);
        uint16_t cs = (uint16_t)stk_rd(m, s, size);
        uint32_t fl = stk_rd(m, 2 * s, size);
        uint32_t mask = F_WRITABLE & ~F_VM; /* VM (and VIP/VIF, not modelled) are kept */
        if (!in->osz) mask &= 0xFFFF;
        if (v86) mask &= ~F_IOPL;
        aero_far_jump(m, cs, eip);
        sp_set(m, sp_at(m, 3 * s));
        m->cpu.eflags = (old & ~mask) | (fl & mask) | F_BIT1;
        return;
    }
    uint32_t old = get_flags(m);
    if (old & F_NT) aero_fault(m, EXC_GP, 0, 1); /* task return: no hardware task switching */
    uint32_t eip = stk_rd(m, 0, size);
    uint16_t cs = (uint16_t)stk_rd(m, s, size);
    uint32_t fl = stk_rd(m, 2 * s, size);
    if (in->osz && (fl & F_VM) && m->cpu.cpl == 0) {
        iret_to_v86(m, eip, cs, fl);
        return;
    }
    uint32_t rpl = cs & 3u;
    if ((cs & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    if (rpl < m->cpu.cpl) aero_fault(m, EXC_GP, cs & ~3u, 1);
    uint32_t nf = iret_pm_flags(m, fl, in->osz);
    if (!in->osz) nf = (old & 0xFFFF0000u) | (nf & 0xFFFF);
    if (rpl == m->cpu.cpl) {
        aero_far_jump(m, cs, eip);
        sp_set(m, sp_at(m, 3 * s));
    } else {
        uint32_t esp = stk_rd(m, 3 * s, size);
        uint16_t ss = (uint16_t)stk_rd(m, 4 * s, size);
        return_outer(m, cs, eip, ss, esp, 0);
    }
    m->cpu.eflags = nf;
}

/* ---- software interrupts ---- */

void aero_op_int_Ib(aero_machine *m, const aero_insn *in) {
    /* Virtual-8086 mode with IOPL < 3: INT n is sensitive (INT3/INTO/INT1 are not). */
    if ((m->cpu.eflags & F_VM) && (m->cpu.eflags & F_IOPL) != F_IOPL) aero_fault(m, EXC_GP, 0, 1);
    aero_soft_int(m, (int)(in->imm & 0xFF), next_eip(m, in));
}
void aero_op_int3(aero_machine *m, const aero_insn *in) { aero_soft_int(m, EXC_BP, next_eip(m, in)); }
void aero_op_into(aero_machine *m, const aero_insn *in) {
    if (get_flags(m) & F_OF) aero_soft_int(m, EXC_OF, next_eip(m, in));
    else next(m, in);
}
void aero_op_int1(aero_machine *m, const aero_insn *in) { aero_soft_int(m, EXC_DB, next_eip(m, in)); }

/* ---- loops ---- */

/* E0 LOOPNZ, E1 LOOPZ, E2 LOOP: the counter (CX or ECX by address size) is written only
 * once the branch target has passed its limit check. */
void aero_op_loopcc(aero_machine *m, const aero_insn *in) {
    uint32_t cnt = (in->asz ? m->cpu.r[R_ECX] : (m->cpu.r[R_ECX] & 0xFFFF)) - 1;
    if (!in->asz) cnt &= 0xFFFF;
    int taken = cnt != 0;
    if (taken && in->op != 0xE2) {
        int zf = aero_cond(m, 4); /* condition 4: ZF set */
        taken = in->op == 0xE1 ? zf : !zf;
    }
    if (taken) aero_jump_near(m, near_target(in, m->cpu.eip + in->len + in->imm));
    else next(m, in);
    if (in->asz) m->cpu.r[R_ECX] = cnt;
    else set_r16(m, R_ECX, (uint16_t)cnt);
}

void aero_op_jcxz(aero_machine *m, const aero_insn *in) {
    uint32_t cnt = in->asz ? m->cpu.r[R_ECX] : (m->cpu.r[R_ECX] & 0xFFFF);
    if (cnt == 0) aero_jump_near(m, near_target(in, m->cpu.eip + in->len + in->imm));
    else next(m, in);
}

/* BOUND Gv,Ma: signed bounds [lower, upper] at the memory operand; #BR outside. */
void aero_op_bound(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t a = ea(m, in);
    uint32_t lo = rdn(m, in->seg, a, size);
    uint32_t hi = rdn(m, in->seg, (a + (uint32_t)size) & (in->asz ? 0xFFFFFFFFu : 0xFFFFu), size);
    int32_t idx, l, h;
    if (size == 2) {
        idx = (int16_t)get_r16(m, in->reg);
        l = (int16_t)lo;
        h = (int16_t)hi;
    } else {
        idx = (int32_t)m->cpu.r[in->reg];
        l = (int32_t)lo;
        h = (int32_t)hi;
    }
    if (idx < l || idx > h) aero_fault(m, EXC_BR, 0, 0);
    next(m, in);
}

/* ---- stack frames ---- */

/* ENTER Iw,Ib as the Intel pseudo-code: push (E)BP, copy nesting-1 frame pointers from the
 * old frame, push the new frame pointer, then reserve Iw bytes. All reads and writes are
 * validated first; the final stack top must be writable too (#SS otherwise). */
void aero_op_enter(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t s = (uint32_t)size, mask = sp_mask(m);
    uint32_t alloc = in->imm & 0xFFFF, level = in->imm2 & 31u;
    uint32_t sp = sp_get(m), bp = m->cpu.r[R_EBP] & mask;
    uint32_t frame = (sp - s) & mask;        /* SP after pushing (E)BP */
    uint32_t frame_reg = m->cpu.r[R_ESP];    /* the new (E)BP: ESP after that push */
    if (stack32(m)) frame_reg = frame;
    else frame_reg = (frame_reg & 0xFFFF0000u) | frame;
    uint32_t nslots = level ? level + 1 : 1;
    uint32_t lin[32], rlin[32];
    for (uint32_t i = 0; i < nslots; i++) lin[i] = seg_lin(m, S_SS, (sp - (i + 1) * s) & mask, s);
    for (uint32_t i = 1; i + 1 < nslots; i++) {
        rlin[i] = seg_lin(m, S_SS, (bp - i * s) & mask, s);
        (void)lin_rd(m, rlin[i], size); /* page check before any write */
    }
    uint32_t final_sp = (sp - nslots * s - alloc) & mask;
    uint32_t flin = seg_lin(m, S_SS, final_sp, s);
    for (uint32_t i = 0; i < nslots; i++) aero_probe_write(m, lin[i], s);
    aero_probe_write(m, flin, s);
    /* Commit: nothing below can fault. Reads follow writes in order, as the CPU does. */
    lin_wr(m, lin[0], size, m->cpu.r[R_EBP]);
    for (uint32_t i = 1; i + 1 < nslots; i++) lin_wr(m, lin[i], size, lin_rd(m, rlin[i], size));
    if (level) lin_wr(m, lin[nslots - 1], size, frame_reg);
    sp_set(m, final_sp);
    set_reg(m, R_EBP, size, frame_reg);
    next(m, in);
}

/* LEAVE: (E)SP = (E)BP by stack size, then pop (E)BP by operand size. */
void aero_op_leave(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t sp = m->cpu.r[R_EBP] & sp_mask(m);
    uint32_t v = rdn(m, S_SS, sp, size);
    sp_set(m, (sp + (uint32_t)size) & sp_mask(m));
    set_reg(m, R_EBP, size, v);
    next(m, in);
}

/* ---- push and pop ---- */

/* 50+r: PUSH SP pushes the value from before the push (286 and later). */
void aero_op_push_Zv(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    push(m, size, get_reg(m, in->reg, size));
    next(m, in);
}

/* 58+r: POP SP loads the popped value (it overrides the increment). */
void aero_op_pop_Zv(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t v = pop(m, size);
    set_reg(m, in->reg, size, v);
    next(m, in);
}

void aero_op_push_Ev(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    push(m, size, get_E(m, in, size));
    next(m, in);
}

/* 8F/0: a memory destination's address is computed with ESP already incremented. */
void aero_op_pop_Ev(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t v = stk_rd(m, 0, size);
    uint32_t nsp = sp_at(m, (uint32_t)size);
    if (in->mod == 3) {
        sp_set(m, nsp);
        set_reg(m, in->rm, size, v);
    } else {
        uint32_t old = m->cpu.r[R_ESP];
        sp_set(m, nsp);
        uint32_t a = ea(m, in);
        m->cpu.r[R_ESP] = old;
        wrn(m, in->seg, a, size, v);
        sp_set(m, nsp);
    }
    next(m, in);
}

void aero_op_push_Iz(aero_machine *m, const aero_insn *in) { push(m, osize(in), in->imm); next(m, in); }
void aero_op_push_Ib(aero_machine *m, const aero_insn *in) { push(m, osize(in), in->imm); next(m, in); }

/* PUSH ES/CS/SS/DS (06 0E 16 1E) and FS/GS (0F A0, 0F A8): the segment is opcode bits 3-5.
 * With a 32-bit operand size ESP moves by 4 but, as on the P6 family, only the low 16 bits
 * of the slot are written (the upper half keeps its old contents). */
void aero_op_push_sreg(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t sel = m->cpu.seg[(in->op >> 3) & 7].selector;
    uint32_t sp = (sp_get(m) - (uint32_t)size) & sp_mask(m);
    uint32_t lin = seg_lin(m, S_SS, sp, (uint32_t)size);
    lin_wr(m, lin, 2, sel);
    sp_set(m, sp);
    next(m, in);
}

/* POP ES/SS/DS (07 17 1F) and FS/GS (0F A1, 0F A9). POP SS opens an interrupt shadow.
 * SP moves in the width of the stack the value was popped from, even when POP SS changes
 * the stack size. */
void aero_op_pop_sreg(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    int seg = (in->op >> 3) & 7;
    int old32 = stack32(m);
    uint16_t sel = (uint16_t)stk_rd(m, 0, size);
    uint32_t nsp = sp_at(m, (uint32_t)size);
    aero_load_seg(m, seg, sel);
    if (old32) m->cpu.r[R_ESP] = nsp;
    else set_r16(m, R_ESP, (uint16_t)nsp);
    if (seg == S_SS) m->cpu.inhibit_irq = 1;
    next(m, in);
}

/* PUSHA: AX CX DX BX (original SP) BP SI DI. */
void aero_op_pusha(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t v[8];
    for (int i = 0; i < 8; i++) v[i] = get_reg(m, i, size);
    push_n(m, size, 8, v);
    next(m, in);
}

/* POPA: DI SI BP (skip SP) BX DX CX AX; all eight slots are read before anything changes. */
void aero_op_popa(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t v[8];
    for (int i = 0; i < 8; i++) v[i] = stk_rd(m, (uint32_t)(i * size), size);
    uint32_t nsp = sp_at(m, 8u * (uint32_t)size);
    for (int i = 0; i < 8; i++) {
        int r = 7 - i;
        if (r != R_ESP) set_reg(m, r, size, v[i]);
    }
    sp_set(m, nsp);
    next(m, in);
}

/* PUSHF: the image has VM and RF clear; #GP(0) in virtual-8086 mode with IOPL < 3. */
void aero_op_pushf(aero_machine *m, const aero_insn *in) {
    uint32_t f = get_flags(m);
    if ((f & F_VM) && (f & F_IOPL) != F_IOPL) aero_fault(m, EXC_GP, 0, 1);
    push(m, osize(in), f & ~(F_VM | F_RF));
    next(m, in);
}

/* POPF: VM and RF never change; IOPL only at CPL 0 (and in real mode), IF only when
 * CPL <= IOPL; a 16-bit operand changes the low 16 bits only. */
void aero_op_popf(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t old = get_flags(m);
    uint32_t mask = F_WRITABLE & ~(F_VM | F_RF);
    if (old & F_VM) {
        if ((old & F_IOPL) != F_IOPL) aero_fault(m, EXC_GP, 0, 1);
        mask &= ~F_IOPL;
    } else if (m->cpu.cr0 & CR0_PE) {
        uint32_t iopl = (old & F_IOPL) >> 12;
        if (m->cpu.cpl != 0) mask &= ~F_IOPL;
        if (m->cpu.cpl > iopl) mask &= ~F_IF;
    }
    if (size == 2) mask &= 0xFFFF;
    uint32_t v = pop(m, size);
    m->cpu.eflags = (old & ~mask) | (v & mask) | F_BIT1;
    m->cpu.lf_op = LF_NONE;
    m->exit_block = 1; /* TF may have changed: the run loop must look again */
    next(m, in);
}
