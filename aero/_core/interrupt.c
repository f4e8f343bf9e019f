/* aero core: exceptions and interrupt delivery.
 *
 * Faults unwind the current instruction with longjmp (aero_fault); the run loop then
 * delivers them with the instruction's own EIP, escalating to #DF and to shutdown by the
 * architecture's benign/contributory/page-fault rules. Software interrupts and traps are
 * delivered directly with the EIP of the next instruction.
 */
#include "cpu.h"

void aero_fault(aero_machine *m, int vector, uint32_t code, int has_code) {
    m->fault_vector = vector;
    m->fault_code = code;
    m->fault_has_code = has_code;
    longjmp(m->fault_jmp, 1);
}

void aero_fault_ud(aero_machine *m) { aero_fault(m, EXC_UD, 0, 0); }

/* Real-mode and virtual-8086 delivery through the interrupt vector table. */
static void deliver_real(aero_machine *m, int vector, uint32_t ret_eip) {
    uint32_t off = (uint32_t)vector * 4;
    if (off + 3 > m->cpu.idtr.limit) aero_fault(m, EXC_GP, off * 2 + 2, 1);
    uint32_t ip = aero_rd_sys(m, m->cpu.idtr.base + off, 2);
    uint16_t cs = (uint16_t)aero_rd_sys(m, m->cpu.idtr.base + off + 2, 2);
    uint32_t flags = get_flags(m);
    /* Write the three words before committing SP, so a stack fault leaves SP intact. */
    uint32_t sp = sp_get(m), mask = sp_mask(m);
    uint32_t s1 = (sp - 2) & mask, s2 = (sp - 4) & mask, s3 = (sp - 6) & mask;
    wr16(m, S_SS, s1, flags);
    wr16(m, S_SS, s2, m->cpu.seg[S_CS].selector);
    wr16(m, S_SS, s3, ret_eip);
    sp_set(m, s3);
    m->cpu.eflags &= ~(F_IF | F_TF | F_AC | F_RF);
    aero_load_seg(m, S_CS, cs);
    m->cpu.eip = ip;
}

/* Protected-mode delivery through an interrupt or trap gate of the IDT. */
static void deliver_pm(aero_machine *m, int vector, uint32_t ret_eip, int has_code, uint32_t code,
                       int software) {
    uint32_t ext = software ? 0u : 1u;
    uint32_t gerr = (uint32_t)vector * 8 + 2 + ext;
    if ((uint32_t)vector * 8 + 7 > m->cpu.idtr.limit) aero_fault(m, EXC_GP, gerr, 1);
    uint32_t lo = aero_rd_sys(m, m->cpu.idtr.base + (uint32_t)vector * 8, 4);
    uint32_t hi = aero_rd_sys(m, m->cpu.idtr.base + (uint32_t)vector * 8 + 4, 4);
    uint32_t type = (hi >> 8) & 0x1F, gdpl = (hi >> 13) & 3;
    int gate32;
    switch (type) {
    case 0x06: case 0x07: gate32 = 0; break;
    case 0x0E: case 0x0F: gate32 = 1; break;
    default: aero_fault(m, EXC_GP, gerr, 1); /* task gates: see the system-architecture docs */
    }
    if (software && gdpl < m->cpu.cpl) aero_fault(m, EXC_GP, gerr, 1);
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, gerr, 1);
    uint16_t sel = (uint16_t)(lo >> 16);
    uint32_t off = (lo & 0xFFFF) | (gate32 ? (hi & 0xFFFF0000u) : 0);
    if ((sel & ~3u) == 0) aero_fault(m, EXC_GP, ext, 1);
    uint32_t dbase = (sel & 4) ? m->cpu.ldtr.base : m->cpu.gdtr.base;
    uint32_t dlimit = (sel & 4) ? m->cpu.ldtr.limit : m->cpu.gdtr.limit;
    if ((sel & ~7u) + 7 > dlimit) aero_fault(m, EXC_GP, (sel & ~3u) | ext, 1);
    uint32_t dlo = aero_rd_sys(m, dbase + (sel & ~7u), 4), dhi = aero_rd_sys(m, dbase + (sel & ~7u) + 4, 4);
    uint32_t dtype = (dhi >> 8) & 0x1F, ddpl = (dhi >> 13) & 3;
    if ((dtype & 0x18) != 0x18 || ddpl > m->cpu.cpl) aero_fault(m, EXC_GP, (sel & ~3u) | ext, 1);
    if (!(dhi & 0x8000)) aero_fault(m, EXC_NP, (sel & ~3u) | ext, 1);
    int conforming = (dtype & 0x04) != 0;
    uint32_t newcpl = conforming ? m->cpu.cpl : ddpl;
    uint32_t flags = get_flags(m);
    int size = gate32 ? 4 : 2;
    uint16_t old_ss = m->cpu.seg[S_SS].selector, old_cs = m->cpu.seg[S_CS].selector;
    uint32_t old_esp = m->cpu.r[R_ESP];
    if (newcpl < m->cpu.cpl) {
        /* Inner privilege: new stack from the 32-bit TSS (SS0:ESP0 at offsets 4 and 8). */
        uint32_t tss = m->cpu.tr.base;
        uint32_t esp0 = aero_rd_sys(m, tss + 4 + newcpl * 8, 4);
        uint16_t ss0 = (uint16_t)aero_rd_sys(m, tss + 8 + newcpl * 8, 2);
        /* SS0 must be a present, writable data segment with RPL = DPL = the new CPL;
         * otherwise #TS(SS0). Checked before the CPL changes, so a fault leaves it alone. */
        uint32_t slo, shi;
        uint32_t stype, sdpl;
        if ((ss0 & ~3u) == 0 || aero_read_descriptor(m, ss0, &slo, &shi) != 0)
            aero_fault(m, EXC_TS, ss0 & ~3u, 1);
        stype = (shi >> 8) & 0x1A;
        sdpl = (shi >> 13) & 3;
        if (stype != 0x12 || (ss0 & 3u) != newcpl || sdpl != newcpl) aero_fault(m, EXC_TS, ss0 & ~3u, 1);
        if (!(shi & 0x8000)) aero_fault(m, EXC_SS, ss0 & ~3u, 1);
        uint32_t save_cpl = m->cpu.cpl;
        m->cpu.cpl = newcpl;
        aero_load_seg(m, S_SS, ss0);
        m->cpu.cpl = save_cpl;
        m->cpu.r[R_ESP] = esp0;
        push(m, size, old_ss);
        push(m, size, old_esp);
    }
    push(m, size, flags);
    push(m, size, old_cs);
    push(m, size, ret_eip);
    if (has_code) push(m, size, code);
    if (newcpl != m->cpu.cpl) aero_tlb_flush(m);
    m->cpu.cpl = newcpl;
    aero_segment *cs = &m->cpu.seg[S_CS];
    cs->selector = (uint16_t)((sel & ~3u) | newcpl);
    cs->base = (dlo >> 16) | ((dhi & 0xFF) << 16) | (dhi & 0xFF000000u);
    cs->limit = (dlo & 0xFFFF) | (dhi & 0xF0000u);
    if (dhi & 0x00800000u) cs->limit = (cs->limit << 12) | 0xFFF;
    cs->attr = (uint16_t)(((dhi >> 8) & 0xFF) | ((dhi >> 8) & 0xF000) | 1);
    m->cpu.eip = off;
    m->cpu.eflags &= ~(F_TF | F_NT | F_RF | F_VM);
    if (!(type & 1)) m->cpu.eflags &= ~F_IF; /* interrupt gate, not trap gate */
}

static void deliver(aero_machine *m, int vector, uint32_t ret_eip, int has_code, uint32_t code, int software) {
    m->cpu.halted = 0;
    m->exit_block = 1;
    if (aero_pm(m)) deliver_pm(m, vector, ret_eip, has_code, code, software);
    else deliver_real(m, vector, ret_eip);
}

void aero_interrupt(aero_machine *m, int vector, uint32_t ret_eip, int has_code, uint32_t code) {
    deliver(m, vector, ret_eip, has_code, code, 0);
}

void aero_soft_int(aero_machine *m, int vector, uint32_t ret_eip) {
    m->soft_int = 1;
    if (m->stop_on_exception) {
        m->last_exc = vector;
        m->last_exc_code = 0;
        m->cpu.eip = ret_eip;
        m->stop = AERO_STOP_EXCEPTION;
        m->exit_block = 1;
        return;
    }
    deliver(m, vector, ret_eip, 0, 0, 1);
}

static int contributory(int v) { return v == EXC_DE || (v >= EXC_TS && v <= EXC_GP); }

void aero_handle_fault(aero_machine *m) {
    int vec = m->fault_vector;
    m->last_exc = vec;
    m->last_exc_code = m->fault_has_code ? m->fault_code : 0;
    m->exit_block = 1;
    if (m->stop_on_exception) {
        m->countdown++; /* the faulting instruction did not retire and nothing was delivered */
        m->stop = AERO_STOP_EXCEPTION;
        m->delivering = -1;
        return;
    }
    int prev = m->delivering;
    int has_code = m->fault_has_code;
    uint32_t code = m->fault_code;
    if (prev >= 0) {
        if (prev == EXC_DF) {
            m->stop = AERO_STOP_SHUTDOWN;
            m->delivering = -1;
            return;
        }
        if ((contributory(prev) && contributory(vec)) ||
            (prev == EXC_PF && (contributory(vec) || vec == EXC_PF))) {
            vec = EXC_DF;
            has_code = 1;
            code = 0;
        }
    }
    m->delivering = vec;
    deliver(m, vec, m->cpu.eip, has_code, code, 0);
    m->delivering = -1;
}
