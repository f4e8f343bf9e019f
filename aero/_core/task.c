/* aero core: hardware task switching (SDM Vol. 3A, chapter 7 "Task Management").
 *
 * One entry point, aero_task_switch, serves JMP and CALL to a TSS or a task gate and IRET
 * with NT = 1 (ops_flow.c), and interrupts and exceptions through IDT task gates
 * (interrupt.c). Each caller first makes the checks that depend on how the switch started
 * (privilege of the gate or TSS descriptor, its busy bit, present). The switch then runs
 * in three steps, as SDM 7.3 "Task Switching" orders them:
 *
 *  1. Checks that leave the outgoing task untouched when they fail: the new TSS limit
 *     (#TS), the old TSS limit, the new TSS read whole, every byte the switch will write
 *     probed (old TSS save area, back link, the busy bits in the GDT).
 *  2. Commit: busy bits, the old task's registers saved in its TSS (EFLAGS with NT
 *     cleared on IRET), the back link on CALL and interrupts, TR, CR3 (32-bit TSS, paging
 *     on), EFLAGS (NT set on CALL and interrupts), EIP, general registers, segment
 *     selectors and LDTR selector of the new task, CR0.TS; DR7's local enables cleared.
 *  3. The descriptors of LDTR, CS, SS, ES, DS, FS, GS are loaded and qualified in the new
 *     task's context (SDM Table 7-1): a fault here is raised with the new task's state,
 *     its segment registers not yet qualified being unusable.
 *
 * A 16-bit TSS (types 1 and 3) saves and loads the low words only; loading one sets the
 * upper words of the general registers to FFFFh, clears those of EIP and EFLAGS and makes
 * FS and GS null, as Bochs and QEMU do (SDM 7.6: "the upper 16 bits of the registers are
 * modified and not maintained"). It has no CR3 field and no I/O map.
 */
#include "cpu.h"

/* 32-bit TSS offsets. */
#define T32_CR3 0x1C
#define T32_EIP 0x20
#define T32_EFLAGS 0x24
#define T32_GPR 0x28
#define T32_SEG 0x48
#define T32_LDT 0x60
#define T32_TRAP 0x64
/* 16-bit TSS offsets. */
#define T16_IP 0x0E
#define T16_FLAGS 0x10
#define T16_GPR 0x12
#define T16_SEG 0x22
#define T16_LDT 0x2A

#define DR6_BT 0x8000u

/* The state a TSS holds for a task. */
typedef struct tss_image {
    uint32_t cr3, eip, eflags, gpr[8];
    uint16_t seg[6]; /* ES CS SS DS FS GS */
    uint16_t ldt;
    int trap;
} tss_image;

AERO_INLINE int tss_is32(uint32_t type) { return (type & 8) != 0; }

/* Read the whole state of the TSS at `base` (supervisor reads; a #PF leaves all as it was). */
static void tss_read(aero_machine *m, uint32_t base, int is32, tss_image *t) {
    if (is32) {
        t->cr3 = aero_rd_sys(m, base + T32_CR3, 4);
        t->eip = aero_rd_sys(m, base + T32_EIP, 4);
        t->eflags = aero_rd_sys(m, base + T32_EFLAGS, 4);
        for (int i = 0; i < 8; i++) t->gpr[i] = aero_rd_sys(m, base + T32_GPR + 4u * (uint32_t)i, 4);
        for (int i = 0; i < 6; i++) t->seg[i] = (uint16_t)aero_rd_sys(m, base + T32_SEG + 4u * (uint32_t)i, 2);
        t->ldt = (uint16_t)aero_rd_sys(m, base + T32_LDT, 2);
        t->trap = (int)(aero_rd_sys(m, base + T32_TRAP, 2) & 1);
    } else {
        t->cr3 = 0;
        t->eip = aero_rd_sys(m, base + T16_IP, 2);
        t->eflags = aero_rd_sys(m, base + T16_FLAGS, 2);
        for (int i = 0; i < 8; i++) t->gpr[i] = 0xFFFF0000u | aero_rd_sys(m, base + T16_GPR + 2u * (uint32_t)i, 2);
        for (int i = 0; i < 4; i++) t->seg[i] = (uint16_t)aero_rd_sys(m, base + T16_SEG + 2u * (uint32_t)i, 2);
        t->seg[S_FS] = t->seg[S_GS] = 0;
        t->ldt = (uint16_t)aero_rd_sys(m, base + T16_LDT, 2);
        t->trap = 0;
    }
}

/* Save the outgoing task's state (registers, selectors, EIP, EFLAGS) in its TSS. */
static void tss_save(aero_machine *m, uint32_t base, int is32, uint32_t eip, uint32_t eflags) {
    if (is32) {
        aero_wr_sys(m, base + T32_EIP, 4, eip);
        aero_wr_sys(m, base + T32_EFLAGS, 4, eflags);
        for (int i = 0; i < 8; i++) aero_wr_sys(m, base + T32_GPR + 4u * (uint32_t)i, 4, m->cpu.r[i]);
        for (int i = 0; i < 6; i++) aero_wr_sys(m, base + T32_SEG + 4u * (uint32_t)i, 2, m->cpu.seg[i].selector);
    } else {
        aero_wr_sys(m, base + T16_IP, 2, eip);
        aero_wr_sys(m, base + T16_FLAGS, 2, eflags);
        for (int i = 0; i < 8; i++) aero_wr_sys(m, base + T16_GPR + 2u * (uint32_t)i, 2, m->cpu.r[i]);
        for (int i = 0; i < 4; i++) aero_wr_sys(m, base + T16_SEG + 2u * (uint32_t)i, 2, m->cpu.seg[i].selector);
    }
}

/* Set or clear the busy bit (type bit 1) of the TSS descriptor of GDT selector sel. */
static void set_busy(aero_machine *m, uint16_t sel, int busy) {
    uint32_t a = m->cpu.gdtr.base + (sel & ~7u) + 5;
    uint32_t b = aero_rd_sys(m, a, 1);
    aero_wr_sys(m, a, 1, busy ? (b | 2u) : (b & ~2u));
}

/* Load LDTR from the new task's LDT selector (Table 7-1: #TS(selector) unless null, or an
 * LDT descriptor in the GDT that is present). */
static void load_ldtr(aero_machine *m, uint16_t sel, uint32_t ext) {
    aero_segment *l = &m->cpu.ldtr;
    uint32_t err = (sel & ~3u) | ext, lo, hi;
    l->selector = sel;
    l->base = 0;
    l->limit = 0;
    l->attr = 0; /* unusable until qualified */
    if ((sel & ~3u) == 0) return;
    if ((sel & 4) || aero_read_descriptor(m, sel, &lo, &hi) != 0) aero_fault(m, EXC_TS, err, 1);
    if (((hi >> 8) & 0x1F) != 0x02 || !(hi & 0x8000)) aero_fault(m, EXC_TS, err, 1);
    aero_desc_cache(l, sel, lo, hi);
}

/* Qualify and load segment register seg of the new task at privilege cpl (Table 7-1). */
static void load_task_seg(aero_machine *m, int seg, uint16_t sel, uint32_t cpl, uint32_t ext) {
    uint32_t err = (sel & ~3u) | ext, lo, hi;
    if ((sel & ~3u) == 0) {
        if (seg == S_CS || seg == S_SS) aero_fault(m, EXC_TS, err, 1);
        aero_seg_null(m, seg, sel);
        return;
    }
    if (aero_read_descriptor(m, sel, &lo, &hi) != 0) aero_fault(m, EXC_TS, err, 1);
    uint32_t type = (hi >> 8) & 0x1F, dpl = (hi >> 13) & 3, rpl = sel & 3u;
    int present = (hi & 0x8000) != 0;
    if (seg == S_CS) {
        if ((type & 0x18) != 0x18) aero_fault(m, EXC_TS, err, 1);
        if ((type & 0x04) ? dpl > rpl : dpl != rpl) aero_fault(m, EXC_TS, err, 1);
        if (!present) aero_fault(m, EXC_NP, err, 1);
    } else if (seg == S_SS) {
        if ((type & 0x1A) != 0x12 || dpl != cpl || dpl != rpl) aero_fault(m, EXC_TS, err, 1);
        if (!present) aero_fault(m, EXC_SS, err, 1);
    } else {
        int is_data = (type & 0x18) == 0x10;
        if (!is_data && (type & 0x1A) != 0x1A) aero_fault(m, EXC_TS, err, 1);
        if ((type & 0x1C) != 0x1C && (dpl < cpl || dpl < rpl)) aero_fault(m, EXC_TS, err, 1);
        if (!present) aero_fault(m, EXC_NP, err, 1);
    }
    aero_desc_accessed(m, sel, hi);
    aero_desc_cache(&m->cpu.seg[seg], sel, lo, hi | 0x100);
    aero_seg_refresh(m, seg);
}

int aero_task_switch(aero_machine *m, uint16_t sel, uint32_t lo, uint32_t hi, int source, uint32_t eip,
                     uint32_t ext) {
    aero_cpu *c = &m->cpu;
    uint32_t ntype = (hi >> 8) & 0xF, otype = c->tr.attr & 0xF;
    int n32 = tss_is32(ntype), o32 = tss_is32(otype);
    int nest = source == AERO_TASK_CALL || source == AERO_TASK_INT;
    aero_segment ntr;
    aero_desc_cache(&ntr, sel, lo, hi | 0x200);

    /* 1. Checks: nothing has changed if one of these faults. */
    if (ntr.limit < (n32 ? 0x67u : 0x2Bu)) aero_fault(m, EXC_TS, (sel & ~3u) | ext, 1);
    if (c->tr.limit < (o32 ? 0x5Fu : 0x29u)) aero_fault(m, EXC_TS, (c->tr.selector & ~3u) | ext, 1);
    tss_image t;
    tss_read(m, ntr.base, n32, &t);
    uint32_t obase = c->tr.base;
    if (o32) aero_sys_probe(m, obase + T32_EIP, T32_SEG + 24 - T32_EIP);
    else aero_sys_probe(m, obase + T16_IP, T16_SEG + 8 - T16_IP);
    if (nest) aero_sys_probe(m, ntr.base, 2);
    if (source == AERO_TASK_JMP || source == AERO_TASK_IRET)
        aero_sys_probe(m, c->gdtr.base + (c->tr.selector & ~7u) + 5, 1); /* old busy bit */
    if (source != AERO_TASK_IRET) aero_sys_probe(m, c->gdtr.base + (sel & ~7u) + 5, 1);

    /* 2. Commit. */
    uint32_t flags = get_flags(m);
    if (source == AERO_TASK_JMP || source == AERO_TASK_IRET) set_busy(m, c->tr.selector, 0);
    if (source == AERO_TASK_IRET) flags &= ~F_NT;
    tss_save(m, obase, o32, eip, flags);
    if (nest) aero_wr_sys(m, ntr.base, 2, c->tr.selector);
    if (source != AERO_TASK_IRET) set_busy(m, sel, 1);
    c->tr = ntr;
    if (n32 && (c->cr0 & CR0_PG)) {
        c->cr3 = t.cr3; /* as MOV CR3 does, global pages kept */
        aero_tlb_flush(m);
    }
    uint32_t nf = t.eflags;
    if (nest) nf |= F_NT;
    c->eflags = (nf & F_WRITABLE) | F_BIT1;
    c->lf_op = LF_NONE;
    c->eip = t.eip;
    for (int i = 0; i < 8; i++) c->r[i] = t.gpr[i];
    c->cr0 |= CR0_TS;
    c->dr[7] &= ~0x55u; /* L0-L3: local breakpoints end with their task (SDM 17.2.4) */
    c->ldtr.selector = t.ldt;
    c->ldtr.attr = 0;
    int v86 = (c->eflags & F_VM) != 0;
    c->cpl = v86 ? 3u : (t.seg[S_CS] & 3u);
    /* Selectors first, every cache unusable until it is qualified below. */
    for (int i = 0; i < 6; i++) aero_seg_null(m, i, t.seg[i]);
    m->exit_block = 1;

    /* 3. Descriptors, in the new task's context. */
    load_ldtr(m, t.ldt, ext);
    if (v86) {
        for (int i = 0; i < 6; i++) aero_load_seg(m, i, t.seg[i]);
    } else {
        static const int order[6] = {S_CS, S_SS, S_ES, S_DS, S_FS, S_GS};
        for (int i = 0; i < 6; i++) load_task_seg(m, order[i], t.seg[order[i]], c->cpl, ext);
    }
    return t.trap;
}

void aero_task_debug_trap(aero_machine *m) {
    m->cpu.dr[6] |= DR6_BT;
    aero_interrupt(m, EXC_DB, m->cpu.eip, 0, 0);
}

uint32_t aero_tss_stack(aero_machine *m, uint32_t dpl, uint32_t ext, aero_segment *ss) {
    const aero_segment *tr = &m->cpu.tr;
    uint32_t esp, sel;
    if (tss_is32(tr->attr & 0xF)) {
        uint32_t a = dpl * 8 + 4;
        if (a + 5 > tr->limit) aero_fault(m, EXC_TS, (tr->selector & ~3u) | ext, 1);
        esp = aero_rd_sys(m, tr->base + a, 4);
        sel = aero_rd_sys(m, tr->base + a + 4, 2);
    } else {
        uint32_t a = dpl * 4 + 2;
        if (a + 3 > tr->limit) aero_fault(m, EXC_TS, (tr->selector & ~3u) | ext, 1);
        esp = aero_rd_sys(m, tr->base + a, 2);
        sel = aero_rd_sys(m, tr->base + a + 2, 2);
    }
    uint32_t err = (sel & ~3u) | ext, lo, hi;
    if ((sel & ~3u) == 0) aero_fault(m, EXC_TS, ext, 1);
    aero_desc_read(m, (uint16_t)sel, EXC_TS, ext, &lo, &hi);
    if ((sel & 3u) != dpl) aero_fault(m, EXC_TS, err, 1);
    if (((hi >> 8) & 0x1A) != 0x12 || ((hi >> 13) & 3) != dpl) aero_fault(m, EXC_TS, err, 1);
    if (!(hi & 0x8000)) aero_fault(m, EXC_SS, err, 1);
    aero_desc_cache(ss, (uint16_t)sel, lo, hi);
    return esp;
}
