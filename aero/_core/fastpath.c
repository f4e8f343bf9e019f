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

/* ---- the deferred-EIP prefix (aero_block.npre) ----
 * Every specialised form that does not branch comes in the prefix variants of DEF_FORMS.
 * Each row names how the form treats the arithmetic flags, for the liveness pass below. */
enum {
    PF_NONE, /* writes no flag, cannot fault: MOV, LEA (register forms) */
    PF_ALL,  /* writes all six, reads none, cannot fault: ADD ... CMP, TEST (register forms) */
    PF_CF,   /* writes all six, reads CF, cannot fault: ADC, SBB, INC, DEC (register forms) */
    PF_MEM,  /* may fault (a memory access): every flag must be right before it */
};
typedef struct prefix_form {
    aero_handler fn;           /* the specialised form (advances EIP) */
    aero_handler de, dl;       /* in the prefix: goes on to the next entry / the last entry */
    aero_handler nf_de, nf_dl; /* the same without writing the flags (PF_ALL, PF_CF), else NULL */
    uint8_t flags;             /* PF_*: what it does with the flags */
} prefix_form;

/* The prefix variants (the forms themselves are declared above). */
#define PDECL(name) DECL(name##_de) DECL(name##_dl)
#define PDECL_NF(name) PDECL(name) DECL(name##_nf_de) DECL(name##_nf_dl)
#define ALU_PDECL(name) PDECL_NF(name##_EvGv_r32) PDECL_NF(name##_GvEv_r32) PDECL_NF(name##_EvI_r32) \
                        PDECL_NF(name##_eAXIz_32) PDECL(name##_GvEv_m32) PDECL(name##_EvGv_m32)   \
                        PDECL(name##_EvI_m32)
ALU_PDECL(add) ALU_PDECL(or) ALU_PDECL(adc) ALU_PDECL(sbb)
ALU_PDECL(and) ALU_PDECL(sub) ALU_PDECL(xor) ALU_PDECL(cmp)
PDECL_NF(test_EvGv_r32) PDECL_NF(inc_Zv_32) PDECL_NF(dec_Zv_32)
PDECL(mov_EvGv_r32) PDECL(mov_GvEv_r32) PDECL(mov_ZvIv_32) PDECL(lea_32)
PDECL(mov_EvGv_m32) PDECL(mov_GvEv_m32) PDECL(mov_EvGv_b32) PDECL(mov_GvEv_b32)
PDECL(mov_EvIz_m32) PDECL(xchg_EvGv_m32) PDECL(push_Zv_32) PDECL(pop_Zv_32) PDECL(push_I_32)
PDECL(call_Jz_32) PDECL(jmp_J_32)

/* Row 0 is no form (aero_insn.form = 0 outside the prefix). */
#define PROW(h, f) {aero_op_##h, aero_op_##h##_de, aero_op_##h##_dl, NULL, NULL, f},
#define PROW_NF(h, f) {aero_op_##h, aero_op_##h##_de, aero_op_##h##_dl, aero_op_##h##_nf_de, aero_op_##h##_nf_dl, f},
#define ALU_PROWS(name, f) PROW_NF(name##_EvGv_r32, f) PROW_NF(name##_GvEv_r32, f) PROW_NF(name##_EvI_r32, f) \
                           PROW_NF(name##_eAXIz_32, f) PROW(name##_GvEv_m32, PF_MEM)                      \
                           PROW(name##_EvGv_m32, PF_MEM) PROW(name##_EvI_m32, PF_MEM)
static const prefix_form prefix_forms[] = {
    {NULL, NULL, NULL, NULL, NULL, PF_MEM},
    ALU_PROWS(add, PF_ALL) ALU_PROWS(or, PF_ALL) ALU_PROWS(adc, PF_CF) ALU_PROWS(sbb, PF_CF)
    ALU_PROWS(and, PF_ALL) ALU_PROWS(sub, PF_ALL) ALU_PROWS(xor, PF_ALL) ALU_PROWS(cmp, PF_ALL)
    PROW_NF(test_EvGv_r32, PF_ALL) PROW_NF(inc_Zv_32, PF_CF) PROW_NF(dec_Zv_32, PF_CF)
    PROW(mov_EvGv_r32, PF_NONE) PROW(mov_GvEv_r32, PF_NONE) PROW(mov_ZvIv_32, PF_NONE)
    PROW(lea_32, PF_NONE)
    PROW(mov_EvGv_m32, PF_MEM) PROW(mov_GvEv_m32, PF_MEM) PROW(mov_EvGv_b32, PF_MEM)
    PROW(mov_GvEv_b32, PF_MEM) PROW(mov_EvIz_m32, PF_MEM) PROW(xchg_EvGv_m32, PF_MEM)
    PROW(push_Zv_32, PF_MEM) PROW(pop_Zv_32, PF_MEM) PROW(push_I_32, PF_MEM)
    PROW(call_Jz_32, PF_MEM) PROW(jmp_J_32, PF_MEM) /* may fault (CS limit, the push) */
};
#define NFORMS (sizeof prefix_forms / sizeof prefix_forms[0])
_Static_assert(NFORMS <= 256, "aero_insn.form is one byte");

static uint8_t prefix_row(aero_handler h) {
    for (size_t i = 1; i < NFORMS; i++)
        if (prefix_forms[i].fn == h) return (uint8_t)i;
    return 0;
}

aero_handler aero_prefix_normal(const aero_insn *in) { return prefix_forms[in->form].fn; }

/* Flags the instructions after an entry may still read: none, CF alone, or all of them. */
enum { LIVE_NONE, LIVE_CF, LIVE_ALL };

void aero_fast_prefix(aero_block *b) {
    uint32_t n = 0;
    int32_t off = 0; /* EIP of the entry minus EIP at the block's start */
    /* The last entry dispatched reads EIP (a branch, or whatever ends the block) and is
     * never in the prefix; nor is anything after a form that is not in the table. A CALL or
     * JMP before it is one the block goes on after, at its target (decode.c). */
    while (n + 1 < b->nrun) {
        aero_insn *in = &b->insn[n];
        uint8_t row = prefix_row(in->fn);
        if (!row) break;
        in->form = row;
        in->pre_off = (int16_t)off; /* within one page: |off| < 4096 */
        off += in->len;
        if (in->fn == aero_op_call_Jz_32 || in->fn == aero_op_jmp_J_32) off += (int32_t)in->imm;
        n++;
    }
    b->npre = n;
    b->pre_delta = off;
    if (!n) return;
    /* Backwards, the flags read after each entry. After the prefix: a fused CMP, SUB or
     * TEST and Jcc writes all of them first and reads none, a fused INC or DEC reads CF;
     * anything else may read or expose them all. A form may leave out the flags only where
     * nothing is read before they are all written again. */
    int live = LIVE_ALL;
    if (b->unfused && n == b->nrun - 1)
        live = (b->unfused == aero_op_inc_Zv_32 || b->unfused == aero_op_dec_Zv_32) ? LIVE_CF : LIVE_NONE;
    for (uint32_t i = n; i-- > 0;) {
        aero_insn *in = &b->insn[i];
        const prefix_form *f = &prefix_forms[in->form];
        int nf = f->nf_de && live == LIVE_NONE, last = i == n - 1;
        in->fn = nf ? (last ? f->nf_dl : f->nf_de) : (last ? f->dl : f->de);
        switch (f->flags) {
        case PF_NONE: break;
        case PF_ALL: live = LIVE_NONE; break;
        case PF_CF: live = LIVE_CF; break;
        default: live = LIVE_ALL; break;
        }
    }
}

int aero_prefix_generic(aero_machine *m, const aero_insn *in, aero_handler generic) {
    const uint32_t start = m->cpu.eip;
    m->cpu.eip = prefix_eip(m, in);
    m->cur = in;
    generic(m, in);
    if (m->exit_block) return 1;
    m->cpu.eip = start;
    return 0;
}

void aero_prefix_generic_de(aero_machine *m, const aero_insn *in, aero_handler generic) {
    if (aero_prefix_generic(m, in, generic)) return;
    in++;
    in->fn(m, in);
}

void aero_prefix_generic_dl(aero_machine *m, const aero_insn *in, aero_handler generic) {
    aero_prefix_generic(m, in, generic);
}
