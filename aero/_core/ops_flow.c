/* aero core: control transfer and stack instructions.
 *
 * Every handler validates whatever can fault (segment limits, pages, descriptors) before
 * it commits ESP, EIP or segment registers: a fault unwinds with longjmp and the
 * instruction is delivered or restarted with the state it started from. Stack writes of
 * several slots are checked slot by slot first, then written, then ESP is committed.
 *
 * Protected-mode far transfers follow the SDM pseudocode of JMP, CALL, RET and IRET: a far
 * JMP/CALL dispatches on the descriptor type (code segment, call gate, task gate, TSS);
 * CALL through a call gate to a more privileged non-conforming segment switches to the
 * stack the TSS gives for that level and copies the gate's parameter count of words or
 * dwords; RETF/IRET to an outer level reload SS:ESP and null the data segment registers
 * the outer level may not use; IRET with NT = 1 returns to the task in the back link.
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
    for (int i = 0; i < n; i++) lin[i] = seg_lin_w(m, S_SS, (sp - (uint32_t)((i + 1) * size)) & mask, (uint32_t)size);
    for (int i = 0; i < n; i++) aero_probe_write(m, lin[i], (uint32_t)size);
    for (int i = 0; i < n; i++) lin_wr(m, lin[i], size, vals[i]);
    sp_set(m, (sp - (uint32_t)(n * size)) & mask);
}

/* Commit a new SS:ESP (a 16-bit stack segment takes only SP: the upper half of ESP is
 * kept, as on hardware) and CS, then recompute the segment access checks. */
static void set_stack(aero_machine *m, const aero_segment *ss, uint32_t esp) {
    m->cpu.seg[S_SS] = *ss;
    if (ss->attr & SA_DB) m->cpu.r[R_ESP] = esp;
    else set_r16(m, R_ESP, (uint16_t)esp);
}


/* ---- returns to an outer privilege level ---- */

/* RETF/IRET to an outer privilege level (RPL of cs_sel > CPL; SDM RET "RETURN-TO-OUTER-
 * PRIVILEGE-LEVEL", IRET "RETURN-OUTER-PRIVILEGE-LEVEL"): checks the code and stack
 * descriptors, then loads CS:EIP and SS:ESP, releases `imm` bytes of the outer stack, and
 * nulls the data segment registers the new CPL may not use (data or non-conforming code
 * with DPL < CPL). */
static void return_outer(aero_machine *m, uint16_t cs_sel, uint32_t eip, uint16_t ss_sel, uint32_t esp,
                         uint32_t imm) {
    uint32_t rpl = cs_sel & 3u;
    uint32_t clo, chi, slo, shi;
    if ((cs_sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    aero_desc_read(m, cs_sel, EXC_GP, 0, &clo, &chi);
    uint32_t ctype = (chi >> 8) & 0x1F, cdpl = (chi >> 13) & 3;
    if ((ctype & 0x18) != 0x18) aero_fault(m, EXC_GP, cs_sel & ~3u, 1);
    if ((ctype & 0x04) ? cdpl > rpl : cdpl != rpl) aero_fault(m, EXC_GP, cs_sel & ~3u, 1);
    if (!(chi & 0x8000)) aero_fault(m, EXC_NP, cs_sel & ~3u, 1);
    if ((ss_sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    aero_desc_read(m, ss_sel, EXC_GP, 0, &slo, &shi);
    uint32_t stype = (shi >> 8) & 0x1F, sdpl = (shi >> 13) & 3;
    if ((ss_sel & 3u) != rpl || (stype & 0x1A) != 0x12 || sdpl != rpl)
        aero_fault(m, EXC_GP, ss_sel & ~3u, 1);
    if (!(shi & 0x8000)) aero_fault(m, EXC_SS, ss_sel & ~3u, 1);
    if (eip > aero_desc_limit(clo, chi)) aero_fault(m, EXC_GP, 0, 1);
    /* Commit: the accessed bits first (the only writes that could still fault). */
    aero_desc_accessed(m, cs_sel, chi);
    aero_desc_accessed(m, ss_sel, shi);
    aero_segment ss;
    aero_desc_cache(&m->cpu.seg[S_CS], cs_sel, clo, chi | 0x100);
    aero_desc_cache(&ss, ss_sel, slo, shi | 0x100);
    m->cpu.cpl = rpl;
    m->cpu.eip = eip;
    set_stack(m, &ss, esp);
    aero_seg_refresh_all(m);
    sp_set(m, sp_at(m, imm));
    static const int data_segs[4] = {S_ES, S_DS, S_FS, S_GS};
    for (int i = 0; i < 4; i++) {
        const aero_segment *s = &m->cpu.seg[data_segs[i]];
        int conforming_code = (s->attr & 0x1C) == 0x1C;
        uint32_t dpl = (s->attr >> 5) & 3;
        if ((s->attr & SA_S) && !conforming_code && dpl < rpl) aero_seg_null(m, data_segs[i], 0);
    }
}

/* ---- far JMP and CALL in protected mode ---- */

/* Task switch for a far JMP/CALL (to a TSS, or through a task gate); the new task's EIP
 * must lie within its CS (#GP(0)). */
static void far_task(aero_machine *m, const aero_insn *in, uint16_t sel, uint32_t lo, uint32_t hi, int call) {
    int trap = aero_task_switch(m, sel, lo, hi, call ? AERO_TASK_CALL : AERO_TASK_JMP, next_eip(m, in), 0);
    if (m->cpu.eip > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);
    if (trap) aero_task_debug_trap(m);
}

/* Far CALL to a code segment given directly: CS then EIP are pushed with the operand size
 * (the selector zero-extended in a 32-bit slot). The stack slots are checked before the
 * transfer and written after it, so no fault can leave a half-done call. */
static void call_code(aero_machine *m, const aero_insn *in, uint16_t sel, uint32_t off) {
    int size = osize(in);
    if (!aero_pm(m) && off > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);
    uint32_t sp = sp_get(m), mask = sp_mask(m);
    uint32_t s1 = (sp - (uint32_t)size) & mask, s2 = (sp - 2u * (uint32_t)size) & mask;
    uint32_t l1 = seg_lin_w(m, S_SS, s1, (uint32_t)size), l2 = seg_lin_w(m, S_SS, s2, (uint32_t)size);
    aero_probe_write(m, l1, (uint32_t)size);
    aero_probe_write(m, l2, (uint32_t)size);
    uint32_t old_cs = m->cpu.seg[S_CS].selector, ret = next_eip(m, in);
    aero_far_jump(m, sel, off);
    lin_wr(m, l1, size, old_cs);
    lin_wr(m, l2, size, ret);
    sp_set(m, s2);
}

/* JMP/CALL through a call gate (gate descriptor glo/ghi, already checked for privilege
 * and presence). The gate gives the code segment and the offset (16 bits for a 16-bit
 * gate); CALL to a non-conforming segment of higher privilege switches stacks. */
static void via_call_gate(aero_machine *m, const aero_insn *in, uint32_t glo, uint32_t ghi, int call) {
    int gate32 = (ghi & 0x800) != 0;
    int size = gate32 ? 4 : 2;
    uint16_t sel = (uint16_t)(glo >> 16);
    uint32_t off = (glo & 0xFFFF) | (gate32 ? (ghi & 0xFFFF0000u) : 0);
    uint32_t lo, hi, cpl = m->cpu.cpl, err = sel & ~3u;
    if ((sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    aero_desc_read(m, sel, EXC_GP, 0, &lo, &hi);
    uint32_t type = (hi >> 8) & 0x1F, dpl = (hi >> 13) & 3;
    int conforming = (type & 0x04) != 0;
    if ((type & 0x18) != 0x18 || dpl > cpl) aero_fault(m, EXC_GP, err, 1);
    if (!call && !conforming && dpl != cpl) aero_fault(m, EXC_GP, err, 1);
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, err, 1);
    uint32_t newcpl = (!conforming && dpl < cpl) ? dpl : cpl;
    aero_segment ncs;
    aero_desc_cache(&ncs, (uint16_t)((sel & ~3u) | newcpl), lo, hi | 0x100);
    uint32_t ret = next_eip(m, in);
    uint16_t old_cs = m->cpu.seg[S_CS].selector;
    if (!call || newcpl == cpl) {
        uint32_t lin[2];
        if (call) aero_stack_slots(m, &m->cpu.seg[S_SS], sp_get(m), size, 2, cpl, 0, lin);
        if (off > ncs.limit) aero_fault(m, EXC_GP, 0, 1);
        aero_desc_accessed(m, sel, hi);
        m->cpu.seg[S_CS] = ncs;
        aero_seg_refresh(m, S_CS);
        m->cpu.eip = off;
        if (call) {
            lin_wr(m, lin[0], size, old_cs);
            lin_wr(m, lin[1], size, ret);
            sp_set(m, (sp_get(m) - 2u * (uint32_t)size) & sp_mask(m));
        }
        return;
    }
    /* MORE-PRIVILEGE: new stack from the TSS; old SS:ESP, the parameters (read from the
     * caller's stack in the gate's size, the last one first so they keep their order),
     * then CS:EIP go on it. */
    aero_segment nss;
    uint32_t nesp = aero_tss_stack(m, newcpl, 0, &nss);
    uint32_t count = ghi & 0x1F, vals[4 + 31], lin[4 + 31];
    int n = 0;
    vals[n++] = m->cpu.seg[S_SS].selector;
    vals[n++] = m->cpu.r[R_ESP];
    for (uint32_t i = count; i-- > 0;) vals[n++] = stk_rd(m, i * (uint32_t)size, size);
    vals[n++] = old_cs;
    vals[n++] = ret;
    uint32_t sp = (nss.attr & SA_DB) ? nesp : (nesp & 0xFFFF);
    aero_stack_slots(m, &nss, sp, size, n, newcpl, nss.selector & ~3u, lin);
    if (off > ncs.limit) aero_fault(m, EXC_GP, 0, 1);
    /* Commit: the accessed bits first (the only writes that could still fault). */
    aero_desc_accessed(m, sel, hi);
    aero_desc_accessed(m, nss.selector, (uint32_t)(nss.attr & 0xFF) << 8);
    nss.attr |= 1;
    m->cpu.cpl = newcpl;
    for (int i = 0; i < n; i++) lin_wr(m, lin[i], size, vals[i]);
    set_stack(m, &nss, nesp);
    sp_set(m, (sp - (uint32_t)(n * size)) & sp_mask(m));
    m->cpu.seg[S_CS] = ncs;
    aero_seg_refresh_all(m);
    m->cpu.eip = off;
}

/* Far JMP (call = 0) or CALL (call = 1) to sel:off. Real and virtual-8086 mode: CS is
 * loaded the real-mode way. Protected mode dispatches on the descriptor (SDM JMP/CALL
 * "PROTECTED-MODE"): code segment; call gate, task gate (DPL >= CPL and RPL, else #GP(gate),
 * present, else #NP(gate)); available TSS in the GDT (same rules). Anything else, a busy
 * TSS included, is #GP(selector). */
static void far_transfer(aero_machine *m, const aero_insn *in, uint16_t sel, uint32_t off, int call) {
    if (!aero_pm(m)) {
        if (call) call_code(m, in, sel, off);
        else aero_far_jump(m, sel, off);
        return;
    }
    if ((sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    uint32_t lo, hi;
    aero_desc_read(m, sel, EXC_GP, 0, &lo, &hi);
    uint32_t type = (hi >> 8) & 0x1F, dpl = (hi >> 13) & 3, rpl = sel & 3u, err = sel & ~3u;
    if ((type & 0x18) == 0x18) {
        if (call) call_code(m, in, sel, off);
        else aero_far_jump(m, sel, off);
        return;
    }
    int gate_or_tss = type == 0x04 || type == 0x0C || type == 0x05 || type == 0x01 || type == 0x09;
    if (!gate_or_tss) aero_fault(m, EXC_GP, err, 1);
    if (((type == 0x01 || type == 0x09) && (sel & 4)) || dpl < m->cpu.cpl || dpl < rpl)
        aero_fault(m, EXC_GP, err, 1); /* a TSS must be in the GDT */
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, err, 1);
    if (type == 0x04 || type == 0x0C) {
        via_call_gate(m, in, lo, hi, call);
    } else if (type == 0x05) {
        /* Task gate: an available TSS in the GDT (#GP(TSS selector)), present (#NP). */
        uint16_t tsel = (uint16_t)(lo >> 16);
        uint32_t tlo, thi;
        if ((tsel & 4) || aero_read_descriptor(m, tsel, &tlo, &thi) != 0) aero_fault(m, EXC_GP, tsel & ~3u, 1);
        uint32_t ttype = (thi >> 8) & 0x1F;
        if (ttype != 0x01 && ttype != 0x09) aero_fault(m, EXC_GP, tsel & ~3u, 1);
        if (!(thi & 0x8000)) aero_fault(m, EXC_NP, tsel & ~3u, 1);
        far_task(m, in, tsel, tlo, thi, call);
    } else {
        far_task(m, in, sel, lo, hi, call);
    }
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

void aero_op_jmpf_Ap(aero_machine *m, const aero_insn *in) { far_transfer(m, in, in->imm2, in->imm, 0); }

void aero_op_jmpf_Mp(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t a = ea(m, in);
    uint32_t off = rdn(m, in->seg, a, size);
    uint16_t sel = (uint16_t)rd16(m, in->seg, a + (uint32_t)size); /* one m16:16/32 operand */
    far_transfer(m, in, sel, off, 0);
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

void aero_op_callf_Ap(aero_machine *m, const aero_insn *in) { far_transfer(m, in, in->imm2, in->imm, 1); }

void aero_op_callf_Mp(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t a = ea(m, in);
    uint32_t off = rdn(m, in->seg, a, size);
    uint16_t sel = (uint16_t)rd16(m, in->seg, a + (uint32_t)size); /* one m16:16/32 operand */
    far_transfer(m, in, sel, off, 1);
}

static void ret_near(aero_machine *m, const aero_insn *in, uint32_t imm) {
    int size = osize(in);
    uint32_t target = stk_rd(m, 0, size);
    aero_jump_near(m, target);
    sp_set(m, sp_at(m, (uint32_t)size + imm));
}

void aero_op_ret(aero_machine *m, const aero_insn *in) { ret_near(m, in, 0); }
void aero_op_ret_Iw(aero_machine *m, const aero_insn *in) { ret_near(m, in, in->imm & 0xFFFF); }

/* RETF (CB) and RETF Iw (CA): RPL < CPL is #GP(selector); RPL > CPL returns to an outer
 * level, whose SS:ESP lie above the `Iw` bytes of parameters. */
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

/* Return from protected mode (CPL 0) to virtual-8086 mode (SDM IRET "RETURN-TO-VIRTUAL-
 * 8086-MODE"): EIP CS EFLAGS ESP SS ES DS FS GS were pushed as dwords (all nine must lie
 * within SS, else #SS(0)); EIP must fit the 64 KB segment (#GP(0)); EFLAGS is taken whole
 * and every segment is then loaded the virtual-8086 way, at CPL 3. */
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
}

/* IRET with NT = 1 (SDM IRET "TASK-RETURN"): back to the task whose TSS selector is the
 * back link of the current TSS. It must name a busy TSS in the GDT (#TS(selector)),
 * present (#NP(selector)); the task left is marked not busy. */
static void iret_task(aero_machine *m, const aero_insn *in) {
    uint16_t link = (uint16_t)aero_rd_sys(m, m->cpu.tr.base, 2);
    uint32_t lo, hi;
    if ((link & 4) || aero_read_descriptor(m, link, &lo, &hi) != 0) aero_fault(m, EXC_TS, link & ~3u, 1);
    uint32_t type = (hi >> 8) & 0x1F;
    if (type != 0x03 && type != 0x0B) aero_fault(m, EXC_TS, link & ~3u, 1);
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, link & ~3u, 1);
    int trap = aero_task_switch(m, link, lo, hi, AERO_TASK_IRET, next_eip(m, in), 0);
    if (m->cpu.eip > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);
    if (trap) aero_task_debug_trap(m);
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
    if (old & F_NT) {
        iret_task(m, in);
        return;
    }
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
void aero_op_int1(aero_machine *m, const aero_insn *in) { aero_icebp(m, next_eip(m, in)); }

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
    uint32_t hi = rdn(m, in->seg, a + (uint32_t)size, size); /* one operand: no 64 KB wrap */
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
    for (uint32_t i = 0; i < nslots; i++) lin[i] = seg_lin_w(m, S_SS, (sp - (i + 1) * s) & mask, s);
    for (uint32_t i = 1; i + 1 < nslots; i++) {
        rlin[i] = seg_lin(m, S_SS, (bp - i * s) & mask, s);
        (void)lin_rd(m, rlin[i], size); /* page check before any write */
    }
    uint32_t final_sp = (sp - nslots * s - alloc) & mask;
    uint32_t flin = seg_lin_w(m, S_SS, final_sp, s);
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
    uint32_t lin = seg_lin_w(m, S_SS, sp, (uint32_t)size);
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

/* ---- forms specialised at decode time (fastpath.c): 32-bit operand size in 32-bit code
 * (EIP and branch targets are not masked to 16 bits). What the fast path cannot finish
 * without a call (a stack access off the TLB, a target past the CS limit, a condition of a
 * lazy operation it does not evaluate) goes to the generic handler before anything has
 * changed, which raises the fault or computes the rest; so the fast path saves no
 * registers. ---- */
AERO_INLINE int ss32(const aero_machine *m) { return (m->cpu.seg[S_SS].attr & SA_DB) != 0; }

/* Condition cc of a pending 32-bit operation op with operands a, b and result res: 1 and *r
 * when these decide it, else 0. */
AERO_INLINE int cond_lazy32(const uint32_t op, const uint32_t a, const uint32_t b, const uint32_t res,
                            const int cc, int *r) {
    int v;
    switch (cc >> 1) {
    case 0: /* OF */
        if (op == LF_SUB) v = (int)(((a ^ b) & (a ^ res)) >> 31);
        else if (op == LF_ADD) v = (int)(((a ^ res) & (b ^ res)) >> 31);
        else if (op == LF_LOGIC) v = 0;
        else return 0;
        break;
    case 1: /* CF */
        if (op == LF_SUB) v = a < b;
        else if (op == LF_ADD) v = res < a;
        else if (op == LF_LOGIC) v = 0;
        else if (op == LF_INC || op == LF_DEC) v = (int)(b & F_CF);
        else return 0;
        break;
    case 2: v = res == 0; break;                               /* ZF */
    case 3: /* CF or ZF */
        if (op == LF_SUB) v = a <= b;
        else if (op == LF_ADD) v = res < a || res == 0;
        else if (op == LF_LOGIC) v = res == 0;
        else return 0;
        break;
    case 4: v = (int)(res >> 31); break;                       /* SF */
    case 5: v = aero_parity[res & 0xFFu] != 0; break;          /* PF */
    case 6: /* SF != OF */
        if (op == LF_SUB) v = (int32_t)a < (int32_t)b;
        else if (op == LF_LOGIC) v = (int)(res >> 31);
        else return 0;
        break;
    default: /* ZF, or SF != OF */
        if (op == LF_SUB) v = (int32_t)a <= (int32_t)b;
        else if (op == LF_LOGIC) v = (int32_t)res <= 0;
        else return 0;
        break;
    }
    *r = v ^ (cc & 1);
    return 1;
}
/* Condition cc (0-15) without materialising the flags: from EFLAGS when no lazy operation is
 * pending, else from the operands of a pending 32-bit operation. 1 and *r when found, 0
 * when aero_cond must decide (8/16-bit operations, ADC/SBB carries and overflows, INC/DEC
 * overflows). */
AERO_INLINE int cond32(const aero_machine *m, const int cc, int *r) {
    const aero_cpu *c = &m->cpu;
    uint32_t op = c->lf_op, a = c->lf_a, b = c->lf_b, res = c->lf_res;
    int v;
    if (op == LF_NONE) {
        uint32_t f = c->eflags, sf_ne_of = ((f >> 7) ^ (f >> 11)) & 1u;
        switch (cc >> 1) {
        case 0: v = (f & F_OF) != 0; break;
        case 1: v = (f & F_CF) != 0; break;
        case 2: v = (f & F_ZF) != 0; break;
        case 3: v = (f & (F_CF | F_ZF)) != 0; break;
        case 4: v = (f & F_SF) != 0; break;
        case 5: v = (f & F_PF) != 0; break;
        case 6: v = (int)sf_ne_of; break;
        default: v = ((f & F_ZF) != 0) | (int)sf_ne_of; break;
        }
        *r = v ^ (cc & 1);
        return 1;
    }
    if (c->lf_size != 2) return 0;
    return cond_lazy32(op, a, b, res, cc, r);
}
/* The 32-bit Jcc with a constant condition: the per-condition handlers and the fused pairs
 * below. A condition cond32 cannot decide, or a target past the CS limit, goes to the
 * generic handler, with m->cur set to this Jcc first (the loop of a block of register-only
 * instructions does not store it, and a fused pair runs the Jcc from the entry before). */
AERO_INLINE void jcc32_body(aero_machine *m, const aero_insn *in, const int cc) {
    int t;
    if (AERO_UNLIKELY(!cond32(m, cc, &t))) { m->cur = in; aero_op_jcc(m, in); return; }
    uint32_t e = m->cpu.eip + in->len;
    if (t) {
        e += in->imm;
        if (AERO_UNLIKELY(e > m->cpu.seg[S_CS].limit)) {
            m->cur = in;
            aero_op_jcc(m, in);
            return;
        }
    }
    m->cpu.eip = e;
}
/* One Jcc handler per condition, so the condition is a constant. */
#define DEF_JCC32(cc) \
    void aero_op_jcc32_##cc(aero_machine *m, const aero_insn *in) { jcc32_body(m, in, cc); }
DEF_JCC32(0) DEF_JCC32(1) DEF_JCC32(2) DEF_JCC32(3) DEF_JCC32(4) DEF_JCC32(5) DEF_JCC32(6) DEF_JCC32(7)
DEF_JCC32(8) DEF_JCC32(9) DEF_JCC32(10) DEF_JCC32(11) DEF_JCC32(12) DEF_JCC32(13) DEF_JCC32(14) DEF_JCC32(15)

/* Fused pairs: a register-only CMP, TEST, SUB, INC or DEC (32-bit, specialised) followed by
 * a 32-bit Jcc as the last two instructions of a block (decode.c). The first entry's handler
 * runs both, with the pending operation's operands at hand for the condition; the Jcc keeps
 * its own entry, which the run loop does not dispatch (aero_block.nrun), and which the fused
 * handler passes to the Jcc part, so a fault there is the Jcc's with the first instruction
 * retired, as unfused. Each part keeps its generic fallback. The block's tick count is
 * unchanged: still one per instruction. */
void aero_op_dec_Zv(aero_machine *m, const aero_insn *in);
void aero_op_inc_Zv(aero_machine *m, const aero_insn *in);
/* The first part's operation and operands, with the register result written; 0 when its
 * generic handler must run it (a carry-in that needs aero_lazy_cf). */
AERO_INLINE int fused_first(aero_machine *m, const aero_insn *in, const int kind, uint32_t *op,
                            uint32_t *a, uint32_t *b, uint32_t *res) {
    uint32_t *r = m->cpu.r;
    switch (kind) {
    case 0: *op = LF_SUB; *a = r[in->rm]; *b = in->imm; *res = *a - *b; break;       /* CMP Ev, I */
    case 1: *op = LF_SUB; *a = r[in->rm]; *b = r[in->reg]; *res = *a - *b; break;   /* CMP Ev, Gv */
    case 2: *op = LF_SUB; *a = r[in->reg]; *b = r[in->rm]; *res = *a - *b; break;   /* CMP Gv, Ev */
    case 3: *op = LF_LOGIC; *a = r[in->rm]; *b = r[in->reg]; *res = *a & *b; break; /* TEST */
    case 4: *op = LF_SUB; *a = r[in->rm]; *b = in->imm; *res = *a - *b; break;       /* SUB Ev, I */
    case 5: *op = LF_DEC; *a = r[in->reg]; *res = *a - 1; break;                     /* DEC r32 */
    default: *op = LF_INC; *a = r[in->reg]; *res = *a + 1; break;                    /* INC r32 */
    }
    if (kind >= 5 && AERO_UNLIKELY(!fast_cf(m, b))) return 0; /* INC/DEC keep CF in lf_b */
    set_lazy(m, *op, 2, *a, *b, *res);
    if (kind == 4) r[in->rm] = *res;
    else if (kind >= 5) r[in->reg] = *res;
    return 1;
}
/* Both parts; EIP is stored once. */
AERO_INLINE void fused_pair(aero_machine *m, const aero_insn *in, const int kind, const int cc) {
    uint32_t op, a, b = 0, res;
    if (AERO_UNLIKELY(!fused_first(m, in, kind, &op, &a, &b, &res))) {
        (kind == 5 ? aero_op_dec_Zv : aero_op_inc_Zv)(m, in);
        jcc32_body(m, in + 1, cc);
        return;
    }
    const aero_insn *j = in + 1;
    uint32_t e = m->cpu.eip + in->len + j->len;
    int t;
    if (AERO_UNLIKELY(!cond_lazy32(op, a, b, res, cc, &t))) goto slow;
    if (t) {
        e += j->imm;
        if (AERO_UNLIKELY(e > m->cpu.seg[S_CS].limit)) goto slow;
    }
    m->cpu.eip = e;
    return;
slow: /* the Jcc's generic handler, from the Jcc's EIP */
    m->cpu.eip += in->len;
    m->cur = j;
    aero_op_jcc(m, j);
}
#define DEF_FUSED(kind, cc)                                                                       \
    static void fused_##kind##_##cc(aero_machine *m, const aero_insn *in) {                       \
        fused_pair(m, in, kind, cc);                                                              \
    }
#define DEF_FUSED_CC(kind)                                                                        \
    DEF_FUSED(kind, 0) DEF_FUSED(kind, 1) DEF_FUSED(kind, 2) DEF_FUSED(kind, 3)                   \
    DEF_FUSED(kind, 4) DEF_FUSED(kind, 5) DEF_FUSED(kind, 6) DEF_FUSED(kind, 7)                   \
    DEF_FUSED(kind, 8) DEF_FUSED(kind, 9) DEF_FUSED(kind, 10) DEF_FUSED(kind, 11)                 \
    DEF_FUSED(kind, 12) DEF_FUSED(kind, 13) DEF_FUSED(kind, 14) DEF_FUSED(kind, 15)
DEF_FUSED_CC(0) DEF_FUSED_CC(1) DEF_FUSED_CC(2) DEF_FUSED_CC(3) DEF_FUSED_CC(4) DEF_FUSED_CC(5)
DEF_FUSED_CC(6)
#define FUSED_ROW(kind)                                                                           \
    {fused_##kind##_0, fused_##kind##_1, fused_##kind##_2, fused_##kind##_3,                      \
     fused_##kind##_4, fused_##kind##_5, fused_##kind##_6, fused_##kind##_7,                      \
     fused_##kind##_8, fused_##kind##_9, fused_##kind##_10, fused_##kind##_11,                    \
     fused_##kind##_12, fused_##kind##_13, fused_##kind##_14, fused_##kind##_15}
void aero_op_cmp_EvI_r32(aero_machine *m, const aero_insn *in);
void aero_op_cmp_EvGv_r32(aero_machine *m, const aero_insn *in);
void aero_op_cmp_GvEv_r32(aero_machine *m, const aero_insn *in);
void aero_op_test_EvGv_r32(aero_machine *m, const aero_insn *in);
void aero_op_sub_EvI_r32(aero_machine *m, const aero_insn *in);
void aero_op_dec_Zv_32(aero_machine *m, const aero_insn *in);
void aero_op_inc_Zv_32(aero_machine *m, const aero_insn *in);
/* The first instruction's specialised handler, by kind (the order of fused_first). */
static const aero_handler fuse_first[7] = {
    aero_op_cmp_EvI_r32, aero_op_cmp_EvGv_r32, aero_op_cmp_GvEv_r32, aero_op_test_EvGv_r32,
    aero_op_sub_EvI_r32, aero_op_dec_Zv_32, aero_op_inc_Zv_32,
};
static const aero_handler fused_pairs[7][16] = {
    FUSED_ROW(0), FUSED_ROW(1), FUSED_ROW(2), FUSED_ROW(3), FUSED_ROW(4), FUSED_ROW(5), FUSED_ROW(6),
};
static const aero_handler jcc32_by_cc[16] = {
    aero_op_jcc32_0, aero_op_jcc32_1, aero_op_jcc32_2, aero_op_jcc32_3,
    aero_op_jcc32_4, aero_op_jcc32_5, aero_op_jcc32_6, aero_op_jcc32_7,
    aero_op_jcc32_8, aero_op_jcc32_9, aero_op_jcc32_10, aero_op_jcc32_11,
    aero_op_jcc32_12, aero_op_jcc32_13, aero_op_jcc32_14, aero_op_jcc32_15,
};

aero_handler aero_fuse_pair(aero_handler first, aero_handler jcc) {
    for (int cc = 0; cc < 16; cc++) {
        if (jcc32_by_cc[cc] != jcc) continue;
        for (int k = 0; k < 7; k++)
            if (fuse_first[k] == first) return fused_pairs[k][cc];
        return NULL;
    }
    return NULL;
}

void aero_op_jmp_J_32(aero_machine *m, const aero_insn *in) {
    uint32_t t = m->cpu.eip + in->len + in->imm;
    if (AERO_UNLIKELY(t > m->cpu.seg[S_CS].limit)) m->cur = in; /* see aero_op_jcc32_* */
    check_cs_limit(m, t);
    m->cpu.eip = t;
}
void aero_op_call_Jz_32(aero_machine *m, const aero_insn *in) {
    uint32_t ret = m->cpu.eip + in->len, t = ret + in->imm;
    uint8_t *p;
    if (AERO_UNLIKELY(t > m->cpu.seg[S_CS].limit || !ss32(m) ||
                      !(p = fast_wr_ptr(m, S_SS, m->cpu.r[R_ESP] - 4, 4)))) {
        aero_op_call_Jz(m, in);
        return;
    }
    store_le(p, 4, ret);
    m->cpu.r[R_ESP] -= 4;
    m->cpu.eip = t;
}
void aero_op_ret_32(aero_machine *m, const aero_insn *in) {
    const uint8_t *p;
    if (AERO_UNLIKELY(!ss32(m) || !(p = fast_rd_ptr(m, S_SS, m->cpu.r[R_ESP], 4)))) {
        aero_op_ret(m, in);
        return;
    }
    uint32_t t = load_le(p, 4);
    if (AERO_UNLIKELY(t > m->cpu.seg[S_CS].limit)) { aero_op_ret(m, in); return; }
    m->cpu.r[R_ESP] += 4;
    m->cpu.eip = t;
}
/* A direct CALL or JMP that a block goes on after, at its target (decode.c), as an entry of
 * the block's deferred-EIP prefix: the return address and the target come from the entry's
 * EIP; the prefix's EIP delta includes the jump. */
AERO_INLINE int call_prefix_body(aero_machine *m, const aero_insn *in) {
    uint32_t ret = prefix_eip(m, in) + in->len, t = ret + in->imm;
    uint8_t *p;
    if (AERO_UNLIKELY(t > m->cpu.seg[S_CS].limit || !ss32(m) ||
                      !(p = fast_wr_ptr(m, S_SS, m->cpu.r[R_ESP] - 4, 4))))
        return 0;
    store_le(p, 4, ret);
    m->cpu.r[R_ESP] -= 4;
    return 1;
}
AERO_INLINE int jmp_prefix_body(aero_machine *m, const aero_insn *in) {
    return prefix_eip(m, in) + in->len + in->imm <= m->cpu.seg[S_CS].limit;
}
DEF_PREFIX_FORMS(call_Jz_32, aero_op_call_Jz, call_prefix_body)
DEF_PREFIX_FORMS(jmp_J_32, aero_op_jmp_J, jmp_prefix_body)

/* PUSH and POP of a register or an immediate, as bodies for DEF_FORMS (1: done, 0: the
 * generic handler runs it). PUSH ESP pushes the value from before the push. */
AERO_INLINE int push32(aero_machine *m, uint32_t v) {
    uint8_t *p;
    if (AERO_UNLIKELY(!ss32(m) || !(p = fast_wr_ptr(m, S_SS, m->cpu.r[R_ESP] - 4, 4)))) return 0;
    store_le(p, 4, v);
    m->cpu.r[R_ESP] -= 4;
    return 1;
}
AERO_INLINE int push_Zv_32_body(aero_machine *m, const aero_insn *in) { return push32(m, m->cpu.r[in->reg]); }
AERO_INLINE int push_I_32_body(aero_machine *m, const aero_insn *in) { return push32(m, in->imm); }
/* POP ESP loads the popped value (it overrides the increment). */
AERO_INLINE int pop_Zv_32_body(aero_machine *m, const aero_insn *in) {
    const uint8_t *p;
    if (AERO_UNLIKELY(!ss32(m) || !(p = fast_rd_ptr(m, S_SS, m->cpu.r[R_ESP], 4)))) return 0;
    const uint32_t r = in->reg;
    uint32_t v = load_le(p, 4);
    m->cpu.r[R_ESP] += 4;
    m->cpu.r[r] = v;
    return 1;
}
/* Both PUSH imm32 and PUSH imm8 (sign-extended by the decoder) hand their cases to PUSH Iz. */
DEF_FORMS(push_Zv_32, aero_op_push_Zv, push_Zv_32_body)
DEF_FORMS(pop_Zv_32, aero_op_pop_Zv, pop_Zv_32_body)
DEF_FORMS(push_I_32, aero_op_push_Iz, push_I_32_body)
