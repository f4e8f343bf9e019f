/* aero core: port I/O and system instructions. */
#include "cpu.h"

void aero_op_in_Ib(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_in_DX(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_out_Ib(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_out_DX(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
/* HLT: privileged in protected mode; the run loop sleeps until an interrupt. */
void aero_op_hlt(aero_machine *m, const aero_insn *in) {
    if (aero_pm(m) && m->cpu.cpl != 0) aero_fault(m, EXC_GP, 0, 1);
    next(m, in);
    m->cpu.halted = 1;
    m->exit_block = 1;
}
void aero_op_cli(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_sti(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_cpuid(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_rdtsc(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_rdmsr(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_wrmsr(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_mov_CdRd(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_mov_RdCd(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_mov_DdRd(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_mov_RdDd(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_lgdt(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_lidt(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_sgdt(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_sidt(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_smsw(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_lmsw(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_clts(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_invd(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_invlpg(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_sldt(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_str(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_lldt(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_ltr(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_verrw(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_lar(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_lsl(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_arpl(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_sysenter(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_sysexit(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_ud2(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_wait(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_fpu_esc(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
