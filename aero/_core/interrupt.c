/* aero core: exceptions and interrupt delivery.
 *
 * Faults unwind the current instruction with longjmp (aero_fault); the run loop then
 * delivers them with the instruction's own EIP, escalating to #DF and to shutdown by the
 * architecture's benign/contributory/page-fault rules. Software interrupts and traps are
 * delivered directly with the EIP of the next instruction.
 */
#include "platform.h"

void aero_fault(aero_machine *m, int vector, uint32_t code, int has_code) {
    m->fault_vector = vector;
    m->fault_code = code;
    m->fault_has_code = has_code;
    longjmp(m->fault_jmp, 1);
}

void aero_fault_ud(aero_machine *m) { aero_fault(m, EXC_UD, 0, 0); }

/* Real-mode delivery through the interrupt vector table. */
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

/* Through an IDT task gate (SDM INT "TASK-GATE"): the TSS selector must name an available
 * TSS in the GDT (#GP(sel)), present (#NP(sel)); the switch nests (back link, NT); an
 * error code is pushed on the new task's stack, a word or a dword as its TSS is 16- or
 * 32-bit (#SS(EXT) without room); the new EIP must lie within CS (#GP(EXT)). */
static void deliver_task_gate(aero_machine *m, uint32_t glo, uint32_t ret_eip, int has_code, uint32_t code,
                              uint32_t ext) {
    uint16_t tsel = (uint16_t)(glo >> 16);
    uint32_t terr = (tsel & ~3u) | ext, lo, hi;
    if ((tsel & 4) || aero_read_descriptor(m, tsel, &lo, &hi) != 0) aero_fault(m, EXC_GP, terr, 1);
    uint32_t ttype = (hi >> 8) & 0x1F;
    if (ttype != 0x01 && ttype != 0x09) aero_fault(m, EXC_GP, terr, 1); /* busy, or no TSS */
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, terr, 1);
    int trap = aero_task_switch(m, tsel, lo, hi, AERO_TASK_INT, ret_eip, ext);
    if (has_code) {
        int size = (ttype & 8) ? 4 : 2;
        uint32_t lin;
        aero_stack_slots(m, &m->cpu.seg[S_SS], sp_get(m), size, 1, m->cpu.cpl, ext, &lin);
        lin_wr(m, lin, size, code);
        sp_set(m, (sp_get(m) - (uint32_t)size) & sp_mask(m));
    }
    if (m->cpu.eip > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, ext, 1);
    if (trap) aero_task_debug_trap(m);
}

/* Protected-mode and virtual-8086-mode delivery through the IDT (SDM INT n, "PROTECTED-
 * MODE", "TRAP-OR-INTERRUPT-GATE", "INTER-PRIVILEGE-LEVEL-INTERRUPT", "INTERRUPT-FROM-
 * VIRTUAL-8086-MODE", "INTRA-PRIVILEGE-LEVEL-INTERRUPT"). Error codes carry EXT (bit 0)
 * for events not caused by INT n/INT3/INTO, and bit 1 when they name an IDT entry. Every
 * check, the new stack's room and pages included, comes before any state changes. */
static void deliver_pm(aero_machine *m, int vector, uint32_t ret_eip, int has_code, uint32_t code,
                       int software) {
    uint32_t ext = software ? 0u : 1u;
    uint32_t gerr = (uint32_t)vector * 8 + 2 + ext;
    int v86 = (m->cpu.eflags & F_VM) != 0;
    uint32_t cpl = m->cpu.cpl;
    if ((uint32_t)vector * 8 + 7 > m->cpu.idtr.limit) aero_fault(m, EXC_GP, gerr, 1);
    uint32_t lo = aero_rd_sys(m, m->cpu.idtr.base + (uint32_t)vector * 8, 4);
    uint32_t hi = aero_rd_sys(m, m->cpu.idtr.base + (uint32_t)vector * 8 + 4, 4);
    uint32_t type = (hi >> 8) & 0x1F, gdpl = (hi >> 13) & 3;
    int gate32;
    switch (type) {
    case 0x05: gate32 = -1; break; /* task gate */
    case 0x06: case 0x07: gate32 = 0; break;
    case 0x0E: case 0x0F: gate32 = 1; break;
    default: aero_fault(m, EXC_GP, gerr, 1);
    }
    if (software && gdpl < cpl) aero_fault(m, EXC_GP, gerr, 1);
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, gerr, 1);
    if (gate32 < 0) {
        deliver_task_gate(m, lo, ret_eip, has_code, code, ext);
        return;
    }
    uint16_t sel = (uint16_t)(lo >> 16);
    uint32_t off = (lo & 0xFFFF) | (gate32 ? (hi & 0xFFFF0000u) : 0);
    if ((sel & ~3u) == 0) aero_fault(m, EXC_GP, ext, 1);
    uint32_t serr = (sel & ~3u) | ext, dlo, dhi;
    aero_desc_read(m, sel, EXC_GP, ext, &dlo, &dhi);
    uint32_t dtype = (dhi >> 8) & 0x1F, ddpl = (dhi >> 13) & 3;
    if ((dtype & 0x18) != 0x18 || ddpl > cpl) aero_fault(m, EXC_GP, serr, 1);
    if (!(dhi & 0x8000)) aero_fault(m, EXC_NP, serr, 1);
    int inner = !(dtype & 0x04) && ddpl < cpl;
    /* From virtual-8086 mode only a non-conforming ring-0 handler will do. */
    if (v86 && (!inner || ddpl != 0)) aero_fault(m, EXC_GP, serr, 1);
    uint32_t newcpl = inner ? ddpl : cpl;
    int size = gate32 ? 4 : 2;
    aero_segment ncs, nss;
    aero_desc_cache(&ncs, (uint16_t)((sel & ~3u) | newcpl), dlo, dhi | 0x100);
    uint32_t vals[10], lin[10], base_esp, sp, sserr;
    int n = 0;
    if (inner) {
        base_esp = aero_tss_stack(m, newcpl, ext, &nss);
        sserr = (nss.selector & ~3u) | ext;
        if (v86) {
            vals[n++] = m->cpu.seg[S_GS].selector;
            vals[n++] = m->cpu.seg[S_FS].selector;
            vals[n++] = m->cpu.seg[S_DS].selector;
            vals[n++] = m->cpu.seg[S_ES].selector;
        }
        vals[n++] = m->cpu.seg[S_SS].selector;
        vals[n++] = m->cpu.r[R_ESP];
    } else {
        nss = m->cpu.seg[S_SS];
        base_esp = m->cpu.r[R_ESP];
        sserr = ext;
    }
    sp = (nss.attr & SA_DB) ? base_esp : (base_esp & 0xFFFF);
    vals[n++] = get_flags(m);
    vals[n++] = m->cpu.seg[S_CS].selector;
    vals[n++] = ret_eip;
    if (has_code) vals[n++] = code;
    aero_stack_slots(m, &nss, sp, size, n, newcpl, sserr, lin);
    if (off > ncs.limit) aero_fault(m, EXC_GP, ext, 1);
    /* Commit: the accessed bits first (the only writes that could still fault). */
    aero_desc_accessed(m, sel, dhi);
    if (inner) {
        aero_desc_accessed(m, nss.selector, (uint32_t)(nss.attr & 0xFF) << 8);
        nss.attr |= 1;
    }
    m->cpu.cpl = newcpl;
    for (int i = 0; i < n; i++) lin_wr(m, lin[i], size, vals[i]);
    uint32_t nsp = (sp - (uint32_t)(n * size)) & ((nss.attr & SA_DB) ? 0xFFFFFFFFu : 0xFFFFu);
    m->cpu.r[R_ESP] = (nss.attr & SA_DB) ? nsp : ((base_esp & 0xFFFF0000u) | nsp);
    m->cpu.seg[S_SS] = nss;
    m->cpu.seg[S_CS] = ncs;
    m->cpu.eip = off;
    m->cpu.eflags &= ~(F_TF | F_NT | F_RF | F_VM);
    if (!(type & 1)) m->cpu.eflags &= ~F_IF; /* interrupt gate, not trap gate */
    if (v86) {
        aero_seg_null(m, S_ES, 0);
        aero_seg_null(m, S_DS, 0);
        aero_seg_null(m, S_FS, 0);
        aero_seg_null(m, S_GS, 0);
    }
    aero_seg_refresh_all(m); /* CS, SS and the mode (VM) changed */
}

/* Protected mode (PE = 1) includes virtual-8086 mode: its interrupts and exceptions go
 * through the IDT to ring 0. */
static void deliver(aero_machine *m, int vector, uint32_t ret_eip, int has_code, uint32_t code, int software) {
    m->cpu.halted = 0;
    m->exit_block = 1;
    if (m->cpu.cr0 & CR0_PE) deliver_pm(m, vector, ret_eip, has_code, code, software);
    else deliver_real(m, vector, ret_eip);
}

void aero_interrupt(aero_machine *m, int vector, uint32_t ret_eip, int has_code, uint32_t code) {
    deliver(m, vector, ret_eip, has_code, code, 0);
}

/* INT n, INT3 and INTO are software interrupts (gate DPL checked against CPL, EXT = 0);
 * INT1 (ICEBP) delivers #DB as a privileged software exception, like a hardware debug
 * trap: no gate DPL check, and EXT = 1 in the error code of an exception raised while
 * delivering it (SDM Vol. 2 'INT n/INTO/INT3/INT1': the gate DPL check 'does not apply to
 * INT1'; Vol. 3A 6.13 'Error Code', EXT). */
static void software_event(aero_machine *m, int vector, uint32_t ret_eip, int software) {
    m->soft_int = 1;
    if (m->stop_on_exception) {
        m->last_exc = vector;
        m->last_exc_code = 0;
        m->cpu.eip = ret_eip;
        m->stop = AERO_STOP_EXCEPTION;
        m->exit_block = 1;
        return;
    }
    deliver(m, vector, ret_eip, 0, 0, software);
}

void aero_soft_int(aero_machine *m, int vector, uint32_t ret_eip) { software_event(m, vector, ret_eip, 1); }

void aero_icebp(aero_machine *m, uint32_t ret_eip) { software_event(m, EXC_DB, ret_eip, 0); }

/* Exception classes for the double-fault rules (SDM Vol. 3, "Interrupt 8 — Double Fault
 * Exception", tables "Interrupt and Exception Classes" and "Conditions for Generating a
 * Double Fault"): #DE, #TS, #NP, #SS and #GP are contributory, #PF is its own class, every
 * other vector is benign. A contributory exception while delivering a contributory one, or
 * a contributory exception or #PF while delivering a #PF, becomes #DF; other pairs are
 * handled one after the other. */
static int contributory(int v) { return v == EXC_DE || (v >= EXC_TS && v <= EXC_GP); }

/* A fault while delivering #DF: shutdown, or, when so configured, the reset a PC's chipset
 * makes of it (RAM kept), after which the CPU runs on from the reset vector. */
static void triple_fault(aero_machine *m) {
    m->delivering = -1;
    if (m->cfg.reset_on_triple_fault) {
        aero_pc_do_reset(m, AERO_RESET_TRIPLE);
        return;
    }
    aero_log_event(m, AERO_EV_SHUTDOWN, 0, 0);
    m->cpu.shutdown = 1;
    m->stop = AERO_STOP_SHUTDOWN;
}

/* The run loop has already settled the fault's tick (the faulting instruction's) and
 * dropped the instruction's data-breakpoint hits. */
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
            triple_fault(m);
            return;
        }
        if ((contributory(prev) && contributory(vec)) ||
            (prev == EXC_PF && (contributory(vec) || vec == EXC_PF))) {
            vec = EXC_DF;
            has_code = 1;
            code = 0;
        }
    }
    /* Faults push RF = 1, so that the restarted instruction does not raise its instruction
     * breakpoint again (#DF is an abort; instruction breakpoints do not come here). */
    if (vec != EXC_DF) m->cpu.eflags |= F_RF;
    m->delivering = vec;
    deliver(m, vec, m->cpu.eip, has_code, code, 0);
    m->delivering = -1;
}
