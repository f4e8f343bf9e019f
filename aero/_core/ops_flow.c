/* aero core: control transfer and stack instructions. */
#include "cpu.h"

void aero_op_jcc(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_jmp_J(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_jmp_Ev(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_jmpf_Ap(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_jmpf_Mp(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_call_Jz(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_call_Ev(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_callf_Ap(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_callf_Mp(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_ret(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_ret_Iw(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_retf(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_iret(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_int_Ib(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_int3(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_into(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_int1(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_loopcc(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_jcxz(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_bound(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_enter(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_leave(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_push_Zv(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_pop_Zv(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_push_Ev(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_pop_Ev(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_push_Iz(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_push_Ib(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_push_sreg(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_pop_sreg(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_pusha(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_popa(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_pushf(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_popf(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
