/* aero core: string instructions. */
#include "cpu.h"

void aero_op_movs(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_cmps(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_stos(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_lods(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_scas(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_ins(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
void aero_op_outs(aero_machine *m, const aero_insn *in) { AERO_PENDING(m, in); }
