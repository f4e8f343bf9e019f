/* aero core: handlers specialised at decode time.
 *
 * The generic handlers (named in aero/isa.py) decide the operand size, the addressing form
 * and the EIP wrap on every execution. For the forms that dominate flat 32-bit code the
 * decoder swaps in a handler with those decisions already made: 32-bit operand size in a
 * 32-bit code segment, and for memory operands 32-bit addressing. They run the same checks
 * (segment limit and type, paging rights, CS limit, alignment) through the same inline
 * helpers; only the run-time dispatch on size and form is gone. Everything else keeps its
 * generic handler, so the table below is an optimisation only: removing a row changes
 * speed, never behaviour.
 */
#include "cpu.h"

#define ALU_FORMS(name)                                                                           \
    void aero_op_##name##_EvGv(aero_machine *m, const aero_insn *in);                              \
    void aero_op_##name##_GvEv(aero_machine *m, const aero_insn *in);                              \
    void aero_op_##name##_EvIz(aero_machine *m, const aero_insn *in);                              \
    void aero_op_##name##_EvIb(aero_machine *m, const aero_insn *in);                              \
    void aero_op_##name##_eAXIz(aero_machine *m, const aero_insn *in);                             \
    void aero_op_##name##_EvGv_r32(aero_machine *m, const aero_insn *in);                          \
    void aero_op_##name##_GvEv_r32(aero_machine *m, const aero_insn *in);                          \
    void aero_op_##name##_EvI_r32(aero_machine *m, const aero_insn *in);                           \
    void aero_op_##name##_eAXIz_32(aero_machine *m, const aero_insn *in);                          \
    void aero_op_##name##_GvEv_m32(aero_machine *m, const aero_insn *in);                          \
    void aero_op_##name##_EvGv_m32(aero_machine *m, const aero_insn *in);                          \
    void aero_op_##name##_EvI_m32(aero_machine *m, const aero_insn *in);
ALU_FORMS(add)
ALU_FORMS(or)
ALU_FORMS(adc)
ALU_FORMS(sbb)
ALU_FORMS(and)
ALU_FORMS(sub)
ALU_FORMS(xor)
ALU_FORMS(cmp)

#define DECL(name) void aero_op_##name(aero_machine *m, const aero_insn *in);
DECL(test_EvGv) DECL(test_EvGv_r32)
DECL(inc_Zv) DECL(inc_Zv_32) DECL(dec_Zv) DECL(dec_Zv_32)
DECL(mov_EvGv) DECL(mov_EvGv_r32) DECL(mov_EvGv_m32) DECL(mov_EvGv_b32)
DECL(mov_GvEv) DECL(mov_GvEv_r32) DECL(mov_GvEv_m32) DECL(mov_GvEv_b32)
DECL(mov_EvIz) DECL(mov_EvIz_m32)
DECL(mov_ZvIv) DECL(mov_ZvIv_32)
DECL(lea) DECL(lea_32)
DECL(xchg_EvGv) DECL(xchg_EvGv_m32)
DECL(jcc)
DECL(jmp_J) DECL(jmp_J_32)
DECL(call_Jz) DECL(call_Jz_32)
DECL(ret) DECL(ret_32)
DECL(push_Zv) DECL(push_Zv_32)
DECL(pop_Zv) DECL(pop_Zv_32)
DECL(push_Iz) DECL(push_Ib) DECL(push_I_32)

/* One row: the generic handler, its register form (mod = 3, or no ModRM) and its memory
 * form (NULL: the generic handler stays). */
typedef struct fast_form {
    aero_handler generic; /* the handler aero/isa.py names */
    aero_handler reg;     /* 32-bit operands, register operand or none */
    aero_handler mem;     /* 32-bit operands and addressing, memory operand */
} fast_form;

#define ALU_ROWS(name)                                                                           \
    {aero_op_##name##_EvGv, aero_op_##name##_EvGv_r32, aero_op_##name##_EvGv_m32},                \
    {aero_op_##name##_GvEv, aero_op_##name##_GvEv_r32, aero_op_##name##_GvEv_m32},                \
    {aero_op_##name##_EvIz, aero_op_##name##_EvI_r32, aero_op_##name##_EvI_m32},                  \
    {aero_op_##name##_EvIb, aero_op_##name##_EvI_r32, aero_op_##name##_EvI_m32},                  \
    {aero_op_##name##_eAXIz, aero_op_##name##_eAXIz_32, NULL},

static const fast_form fast_forms[] = {
    ALU_ROWS(add) ALU_ROWS(or) ALU_ROWS(adc) ALU_ROWS(sbb)
    ALU_ROWS(and) ALU_ROWS(sub) ALU_ROWS(xor) ALU_ROWS(cmp)
    {aero_op_test_EvGv, aero_op_test_EvGv_r32, NULL},
    {aero_op_inc_Zv, aero_op_inc_Zv_32, NULL},
    {aero_op_dec_Zv, aero_op_dec_Zv_32, NULL},
    {aero_op_mov_EvGv, aero_op_mov_EvGv_r32, aero_op_mov_EvGv_m32},
    {aero_op_mov_GvEv, aero_op_mov_GvEv_r32, aero_op_mov_GvEv_m32},
    {aero_op_mov_EvIz, NULL, aero_op_mov_EvIz_m32},
    {aero_op_mov_ZvIv, aero_op_mov_ZvIv_32, NULL},
    {aero_op_lea, NULL, aero_op_lea_32},
    {aero_op_xchg_EvGv, NULL, aero_op_xchg_EvGv_m32},
    {aero_op_jmp_J, aero_op_jmp_J_32, NULL},
    {aero_op_call_Jz, aero_op_call_Jz_32, NULL},
    {aero_op_ret, aero_op_ret_32, NULL},
    {aero_op_push_Zv, aero_op_push_Zv_32, NULL},
    {aero_op_pop_Zv, aero_op_pop_Zv_32, NULL},
    {aero_op_push_Iz, aero_op_push_I_32, NULL},
    {aero_op_push_Ib, aero_op_push_I_32, NULL},
};

#define DECL_JCC(cc) void aero_op_jcc32_##cc(aero_machine *m, const aero_insn *in);
DECL_JCC(0) DECL_JCC(1) DECL_JCC(2) DECL_JCC(3) DECL_JCC(4) DECL_JCC(5) DECL_JCC(6) DECL_JCC(7)
DECL_JCC(8) DECL_JCC(9) DECL_JCC(10) DECL_JCC(11) DECL_JCC(12) DECL_JCC(13) DECL_JCC(14) DECL_JCC(15)
/* Jcc specialised per condition (the low nibble of the opcode). */
static const aero_handler jcc32[16] = {
    aero_op_jcc32_0, aero_op_jcc32_1, aero_op_jcc32_2, aero_op_jcc32_3,
    aero_op_jcc32_4, aero_op_jcc32_5, aero_op_jcc32_6, aero_op_jcc32_7,
    aero_op_jcc32_8, aero_op_jcc32_9, aero_op_jcc32_10, aero_op_jcc32_11,
    aero_op_jcc32_12, aero_op_jcc32_13, aero_op_jcc32_14, aero_op_jcc32_15,
};

aero_handler aero_fast_form(const aero_insn *in) {
    if (!in->code32 || !in->osz) return in->fn;
    if (in->fn == aero_op_jcc) return jcc32[in->op & 15];
    int mem = in->mod != 3;
    if (mem && !in->asz) return in->fn;
    for (size_t i = 0; i < sizeof fast_forms / sizeof fast_forms[0]; i++) {
        const fast_form *f = &fast_forms[i];
        if (f->generic != in->fn) continue;
        aero_handler h = mem ? f->mem : f->reg;
        /* MOV loads and stores without an index register skip the index term. */
        if (mem && in->index == R_ZERO && h == aero_op_mov_EvGv_m32) return aero_op_mov_EvGv_b32;
        if (mem && in->index == R_ZERO && h == aero_op_mov_GvEv_m32) return aero_op_mov_GvEv_b32;
        return h ? h : in->fn;
    }
    return in->fn;
}

/* Handlers that touch no memory: the register forms above, LEA, Jcc and JMP rel. Neither they
 * nor the generic handlers they hand a case to can set exit_block (only memory accesses,
 * port I/O and system instructions do), so a block made of them only runs without the
 * per-instruction exit test (aero_block.quiet). Removing one costs speed only. */
static const aero_handler quiet_forms[] = {
#define ALU_QUIET(name) aero_op_##name##_EvGv_r32, aero_op_##name##_GvEv_r32, aero_op_##name##_EvI_r32, \
                        aero_op_##name##_eAXIz_32,
    ALU_QUIET(add) ALU_QUIET(or) ALU_QUIET(adc) ALU_QUIET(sbb)
    ALU_QUIET(and) ALU_QUIET(sub) ALU_QUIET(xor) ALU_QUIET(cmp)
#undef ALU_QUIET
    aero_op_test_EvGv_r32, aero_op_inc_Zv_32, aero_op_dec_Zv_32,
    aero_op_mov_EvGv_r32, aero_op_mov_GvEv_r32, aero_op_mov_ZvIv_32, aero_op_lea_32,
    aero_op_jmp_J_32,
};

int aero_fast_quiet(aero_handler h) {
    for (size_t i = 0; i < 16; i++)
        if (jcc32[i] == h) return 1;
    for (size_t i = 0; i < sizeof quiet_forms / sizeof quiet_forms[0]; i++)
        if (quiet_forms[i] == h) return 1;
    return 0;
}
