/* aero core: the x87 FPU of the P6 (D8-DF escapes and WAIT).
 *
 * Decoding: the escapes arrive here whole (isa.py row D8+r); the x87 opcode map is the data
 * below, indexed by the escape byte and the ModRM reg field, for memory operands (mem_ops)
 * and register operands (reg_ops; rows whose meaning depends on ModRM rm go through
 * rm_ops). Arithmetic is softfloat.c: integer only, so every host computes the same bits.
 *
 * Precise faults: a handler reads its memory operands first, computes into locals, writes
 * memory (the whole destination checked before the first byte) and only then changes the
 * FPU state, so a #GP/#SS/#PF on the operand leaves the FPU exactly as it was.
 *
 * Exceptions: flags accumulate in the status word; an unmasked one sets ES and B and is
 * reported by the next waiting x87 instruction (or WAIT): #MF with CR0.NE = 1, otherwise
 * FERR# on IRQ 13 through the 8259 until port F0h is written (IGNNE#).
 */
#include "fpu.h"

#include "cpu.h"
#include "platform.h"
#include "softfloat.h"

/* ---- state helpers ---- */

AERO_INLINE aero_fpu *F(aero_machine *m) { return &m->cpu.fpu; }
AERO_INLINE int fpu_top(const aero_fpu *f) { return (f->fsw >> 11) & 7; }
AERO_INLINE void set_top(aero_fpu *f, int top) { f->fsw = (uint16_t)((f->fsw & ~FSW_TOP) | ((top & 7) << 11)); }
AERO_INLINE int phys(const aero_fpu *f, int i) { return (fpu_top(f) + i) & 7; }
AERO_INLINE int st_empty(const aero_fpu *f, int i) { return (f->empty >> phys(f, i)) & 1; }
AERO_INLINE sf80 st_get(const aero_fpu *f, int i) { int p = phys(f, i); return sf_make(f->se[p], f->sig[p]); }
AERO_INLINE void st_set(aero_fpu *f, int i, sf80 v) {
    int p = phys(f, i);
    f->se[p] = v.se;
    f->sig[p] = v.sig;
    f->empty &= (uint8_t)~(1u << p);
}
AERO_INLINE void fpu_pop(aero_fpu *f) {
    f->empty |= (uint8_t)(1u << phys(f, 0));
    set_top(f, fpu_top(f) + 1);
}
AERO_INLINE void fpu_push(aero_fpu *f, sf80 v) {
    set_top(f, fpu_top(f) - 1);
    st_set(f, 0, v);
}
AERO_INLINE void set_cc(aero_fpu *f, uint32_t mask, uint32_t v) { f->fsw = (uint16_t)((f->fsw & ~mask) | (v & mask)); }

/* ES and B follow the pending unmasked exceptions (an invalid-operation stack fault is IE). */
static void update_es(aero_fpu *f) {
    if (f->fsw & ~f->fcw & 0x3Fu) f->fsw |= FSW_ES | FSW_B;
    else {
        f->fsw &= (uint16_t)~(FSW_ES | FSW_B);
        f->ignne = 0;
    }
}
AERO_INLINE void raise_flags(aero_fpu *f, uint32_t flags) {
    f->fsw |= (uint16_t)(flags & 0x3Fu);
    update_es(f);
}

static sf_env make_env(const aero_fpu *f) {
    static const uint8_t prec[4] = {24, 64, 53, 64}; /* PC 01 is reserved: taken as 64 */
    sf_env e;
    e.rc = (f->fcw >> 10) & 3u;
    e.prec = prec[(f->fcw >> 8) & 3u];
    e.masks = f->fcw & 0x3Fu;
    e.flags = 0;
    return e;
}
/* Same without precision control (only the basic arithmetic and FSQRT obey PC). */
static sf_env make_env64(const aero_fpu *f) {
    sf_env e = make_env(f);
    e.prec = 64;
    return e;
}

/* An operation raised env->flags: 1 when its result may be written, 0 when an unmasked
 * invalid-operation, denormal or zero-divide exception suppresses it (the flag is recorded). */
static int result_ok(aero_fpu *f, const sf_env *e) {
    uint32_t pre = e->flags & (SF_IE | SF_DE | SF_ZE);
    if (pre & ~f->fcw) {
        raise_flags(f, pre);
        return 0;
    }
    return 1;
}
/* Record a completed operation's flags; C1 = rounded up. */
static void finish(aero_fpu *f, const sf_env *e) {
    set_cc(f, FSW_C1, (e->flags & SF_C1) ? FSW_C1 : 0);
    raise_flags(f, e->flags);
}

/* Stack underflow (an empty source) / overflow (push onto a full stack): IE + SF, C1 = 0 or
 * 1. Returns 1 when masked (the caller stores the QNaN indefinite), 0 when the instruction
 * must do nothing more. */
static int stack_fault(aero_fpu *f, int overflow) {
    set_cc(f, FSW_C1, overflow ? FSW_C1 : 0);
    f->fsw |= FSW_SF;
    raise_flags(f, SF_IE);
    return (f->fcw & FSW_IE) != 0;
}

/* ---- memory operands ---- */

static void mem_read(aero_machine *m, const aero_insn *in, uint32_t off, uint8_t *buf, int n) {
    uint32_t mask = in->asz ? 0xFFFFFFFFu : 0xFFFFu;
    uint32_t lin = seg_lin(m, in->seg, off & mask, (uint32_t)n);
    int i = 0;
    for (; i + 4 <= n; i += 4) store_le(buf + i, 4, lin_rd(m, lin + (uint32_t)i, 4));
    for (; i + 2 <= n; i += 2) store_le(buf + i, 2, lin_rd(m, lin + (uint32_t)i, 2));
    for (; i < n; i++) buf[i] = (uint8_t)lin_rd(m, lin + (uint32_t)i, 1);
}
static void mem_write(aero_machine *m, const aero_insn *in, uint32_t off, const uint8_t *buf, int n) {
    uint32_t mask = in->asz ? 0xFFFFFFFFu : 0xFFFFu;
    uint32_t lin = seg_lin_w(m, in->seg, off & mask, (uint32_t)n);
    if (n > 4) aero_probe_write(m, lin, (uint32_t)n);
    int i = 0;
    for (; i + 4 <= n; i += 4) lin_wr(m, lin + (uint32_t)i, 4, load_le(buf + i, 4));
    for (; i + 2 <= n; i += 2) lin_wr(m, lin + (uint32_t)i, 2, load_le(buf + i, 2));
    for (; i < n; i++) lin_wr(m, lin + (uint32_t)i, 1, buf[i]);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)load_le(p, 4) | ((uint64_t)load_le(p + 4, 4) << 32); }
static void put_le64(uint8_t *p, uint64_t v) { store_le(p, 4, (uint32_t)v); store_le(p + 4, 4, (uint32_t)(v >> 32)); }
static void put80(uint8_t *p, sf80 v) { put_le64(p, v.sig); store_le(p + 8, 2, v.se); }
static sf80 get80(const uint8_t *p) { return sf_make((uint16_t)load_le(p + 8, 2), le64(p)); }

/* Memory operand formats. */
enum { M_F32, M_I32, M_F64, M_I16, M_I64, M_F80, M_BCD };
static const uint8_t fmt_size[] = {4, 4, 8, 2, 8, 10, 10};

/* Load a numeric memory operand as a register value (FLD, FILD, arithmetic sources). */
static sf80 load_operand(aero_machine *m, const aero_insn *in, int fmt, sf_env *e) {
    uint8_t b[10];
    mem_read(m, in, ea(m, in), b, fmt_size[fmt]);
    switch (fmt) {
    case M_F32: return aero_sf_from_f32(e, load_le(b, 4));
    case M_F64: return aero_sf_from_f64(e, le64(b));
    case M_I16: return aero_sf_from_i64((int16_t)load_le(b, 2));
    case M_I32: return aero_sf_from_i64((int32_t)load_le(b, 4));
    case M_I64: return aero_sf_from_i64((int64_t)le64(b));
    case M_BCD: return aero_sf_from_bcd(b);
    default: return get80(b);
    }
}

/* ---- the opcode map as data ---- */

struct fpu_op;
typedef void (*fpu_fn)(aero_machine *m, const aero_insn *in, const struct fpu_op *op);
typedef struct fpu_op {
    fpu_fn fn;     /* handler; NULL: #UD */
    uint8_t arg;   /* handler argument: operation, memory format, condition, rm-table index */
    uint8_t flags; /* FOPF_* */
} fpu_op;
#define FOPF_NOWAIT 1 /* FN* control instruction: does not report pending exceptions */
#define FOPF_CTRL 2   /* control instruction: FIP/FCS/FOP/FDP/FDS keep their values */
#define FOPF_RM 4     /* register form selected by rm: arg indexes rm_ops */

/* Arithmetic operations, in D8's ModRM reg order. */
enum { A_ADD, A_MUL, A_COM, A_COMP, A_SUB, A_SUBR, A_DIV, A_DIVR };

static sf80 arith(sf_env *e, int op, sf80 a, sf80 b) {
    switch (op) {
    case A_ADD: return aero_sf_add(e, a, b);
    case A_MUL: return aero_sf_mul(e, a, b);
    case A_SUB: return aero_sf_sub(e, a, b);
    case A_SUBR: return aero_sf_sub(e, b, a);
    case A_DIV: return aero_sf_div(e, a, b);
    default: return aero_sf_div(e, b, a);
    }
}

/* Set C3 C2 C0 from a comparison result (-1, 0, 1, 2 = unordered); C1 = 0. */
static void compare_cc(aero_fpu *f, int r) {
    static const uint16_t cc[4] = {FSW_C0, FSW_C3, 0, FSW_C3 | FSW_C2 | FSW_C0};
    set_cc(f, FSW_CC, cc[r < 0 ? 0 : r == 0 ? 1 : r == 1 ? 2 : 3]);
}

/* FCOM family on ST(0) and b (b_empty: the second operand is an empty register). e holds
 * the flags of loading b (a memory operand). pops: registers to pop afterwards. */
static void do_compare(aero_fpu *f, sf_env *e, sf80 b, int b_empty, int quiet, int pops) {
    if (st_empty(f, 0) || b_empty) {
        if (!stack_fault(f, 0)) return;
        compare_cc(f, 2);
    } else {
        int r = aero_sf_compare(e, st_get(f, 0), b, quiet);
        if (!result_ok(f, e)) return;
        raise_flags(f, e->flags);
        compare_cc(f, r);
    }
    while (pops--) fpu_pop(f);
}

/* D8/DA/DC/DE with a memory operand: ST(0) op m32real / m32int / m64real / m16int. */
static void op_arith_mem(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    sf_env e = make_env(f);
    sf80 b = load_operand(m, in, op->arg, &e);
    /* A binary32/64 SNaN is an SNaN operand of the operation (SDM Vol. 1, table 4-7: an
     * SNaN and a QNaN give the QNaN); the load only quieted it. IE stays raised. */
    if ((op->arg == M_F32 || op->arg == M_F64) && (e.flags & SF_IE)) b.sig &= ~0x4000000000000000ull;
    if (in->reg == A_COM || in->reg == A_COMP) {
        do_compare(f, &e, b, 0, 0, in->reg == A_COMP);
        return;
    }
    if (st_empty(f, 0)) {
        if (stack_fault(f, 0)) st_set(f, 0, sf_indefinite());
        return;
    }
    sf80 r = arith(&e, in->reg, st_get(f, 0), b);
    if (e.flags & SF_ZE) e.flags &= ~SF_DE; /* #Z over #D, also of the load (SDM Vol. 1, 4.9.2) */
    if (!result_ok(f, &e)) return;
    st_set(f, 0, r);
    finish(f, &e);
}

/* D8 (ST(0) = ST(0) op ST(i)), DC (ST(i) = ST(i) op ST(0)), DE (the same, then pop). Two
 * of DC/DE's subtractions and divisions run the other way: Intel's FSUB ST(i), ST(0) is
 * reg 5 there and reg 4 in D8. */
static void op_arith_reg(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    int to_sti = op->arg != 0, pop = op->arg == 2;
    int operation = in->reg;
    if (to_sti && operation >= A_SUB) operation ^= 1;
    int dst = to_sti ? in->rm : 0, src = to_sti ? 0 : in->rm;
    if (st_empty(f, 0) || st_empty(f, in->rm)) {
        if (!stack_fault(f, 0)) return;
        st_set(f, dst, sf_indefinite());
    } else {
        sf_env e = make_env(f);
        sf80 r = arith(&e, operation, st_get(f, dst), st_get(f, src));
        if (e.flags & SF_ZE) e.flags &= ~SF_DE; /* #Z over #D (SDM Vol. 1, 4.9.2) */
        if (!result_ok(f, &e)) return;
        st_set(f, dst, r);
        finish(f, &e);
    }
    if (pop) fpu_pop(f);
}

/* FCOM/FCOMP ST(i) (D8 D0/D8, and the DC D0/D8 and DE D0 aliases), FCOMPP, FUCOM*. arg:
 * pops | quiet << 2. */
static void op_com_reg(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    int i = (op->arg & 8) ? 1 : in->rm; /* FCOMPP / FUCOMPP compare with ST(1) */
    sf_env e = make_env(f);
    do_compare(f, &e, st_get(f, i), st_empty(f, i), (op->arg >> 2) & 1, op->arg & 3);
}

/* FCOMI/FCOMIP/FUCOMI/FUCOMIP: ZF PF CF; OF SF AF cleared. arg: pop | quiet << 2. */
static void op_comi(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    int r;
    if (st_empty(f, 0) || st_empty(f, in->rm)) {
        if (!stack_fault(f, 0)) return;
        r = 2;
    } else {
        sf_env e = make_env(f);
        r = aero_sf_compare(&e, st_get(f, 0), st_get(f, in->rm), (op->arg >> 2) & 1);
        if (!result_ok(f, &e)) return; /* unmasked: no result, C1 as it was */
        set_cc(f, FSW_C1, 0);
        raise_flags(f, e.flags);
    }
    uint32_t fl = r == 2 ? (F_ZF | F_PF | F_CF) : r == 0 ? F_ZF : r < 0 ? F_CF : 0;
    set_flags_masked(m, F_ARITH, fl);
    if (op->arg & 1) fpu_pop(f);
}

/* FLD m32real / m64real / m80real / m16int / m32int / m64int / m80bcd. */
static void op_fld_mem(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    sf_env e = make_env(f);
    sf80 v = load_operand(m, in, op->arg, &e);
    if (!(f->empty >> phys(f, 7) & 1)) {
        if (stack_fault(f, 1)) fpu_push(f, sf_indefinite());
        return;
    }
    if (!result_ok(f, &e)) return;
    fpu_push(f, v);
    set_cc(f, FSW_C1, 0);
    raise_flags(f, e.flags);
}

/* FST/FSTP/FIST/FISTP/FBSTP to memory. arg: format | pop << 4. */
static void op_fst_mem(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    int fmt = op->arg & 15, pop = op->arg >> 4;
    uint8_t b[10];
    sf_env e = make_env(f);
    if (st_empty(f, 0)) {
        if (!(f->fcw & FSW_IE)) { stack_fault(f, 0); return; }
        /* Masked underflow: the indefinite of the destination format is stored. */
        e.flags = 0;
        sf80 ind = sf_indefinite();
        switch (fmt) {
        case M_F32: store_le(b, 4, aero_sf_to_f32(&e, ind)); break;
        case M_F64: put_le64(b, aero_sf_to_f64(&e, ind)); break;
        case M_I16: store_le(b, 2, 0x8000u); break;
        case M_I32: store_le(b, 4, 0x80000000u); break;
        case M_I64: put_le64(b, 0x8000000000000000ull); break;
        case M_BCD: aero_sf_to_bcd(&e, ind, b); break;
        default: put80(b, ind); break;
        }
        mem_write(m, in, ea(m, in), b, fmt_size[fmt]);
        stack_fault(f, 0);
        if (pop) fpu_pop(f);
        return;
    }
    sf80 v = st_get(f, 0);
    switch (fmt) {
    case M_F32: store_le(b, 4, aero_sf_to_f32(&e, v)); break;
    case M_F64: put_le64(b, aero_sf_to_f64(&e, v)); break;
    case M_I16: store_le(b, 2, (uint32_t)aero_sf_to_int(&e, v, 16)); break;
    case M_I32: store_le(b, 4, (uint32_t)aero_sf_to_int(&e, v, 32)); break;
    case M_I64: put_le64(b, (uint64_t)aero_sf_to_int(&e, v, 64)); break;
    case M_BCD: aero_sf_to_bcd(&e, v, b); break;
    default: put80(b, v); break;
    }
    /* Unmasked invalid, denormal, overflow or underflow: nothing is stored or popped. */
    uint32_t unmasked = e.flags & ~f->fcw & (SF_IE | SF_DE | SF_OE | SF_UE);
    if (unmasked) {
        set_cc(f, FSW_C1, 0);
        raise_flags(f, e.flags & (SF_IE | SF_DE | SF_OE | SF_UE));
        return;
    }
    mem_write(m, in, ea(m, in), b, fmt_size[fmt]);
    finish(f, &e);
    if (pop) fpu_pop(f);
}

/* FLD ST(i). */
static void op_fld_reg(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)op;
    if (!(f->empty >> phys(f, 7) & 1)) {
        if (stack_fault(f, 1)) fpu_push(f, sf_indefinite());
        return;
    }
    if (st_empty(f, in->rm)) {
        if (stack_fault(f, 0)) fpu_push(f, sf_indefinite());
        return;
    }
    fpu_push(f, st_get(f, in->rm));
    set_cc(f, FSW_C1, 0);
}

/* FST/FSTP ST(i) (arg: pop) and the FSTP1/FSTP8/FSTP9 aliases. */
static void op_fst_reg(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    if (st_empty(f, 0)) {
        if (!stack_fault(f, 0)) return;
        st_set(f, in->rm, sf_indefinite());
    } else {
        st_set(f, in->rm, st_get(f, 0));
        set_cc(f, FSW_C1, 0);
    }
    if (op->arg) fpu_pop(f);
}

/* FXCH ST(i) (and its DD C8 / DF C8 aliases). */
static void op_fxch(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)op;
    if (st_empty(f, 0) || st_empty(f, in->rm)) {
        if (!stack_fault(f, 0)) return;
        if (st_empty(f, 0)) st_set(f, 0, sf_indefinite());
        if (st_empty(f, in->rm)) st_set(f, in->rm, sf_indefinite());
    } else {
        set_cc(f, FSW_C1, 0);
    }
    sf80 a = st_get(f, 0), b = st_get(f, in->rm);
    st_set(f, 0, b);
    st_set(f, in->rm, a);
}

/* FCMOVcc: arg = the Jcc condition (B=2, E=4, BE=6, P=10; +1 negates). */
static void op_fcmov(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    if (st_empty(f, 0) || st_empty(f, in->rm)) {
        if (!stack_fault(f, 0)) return;
        st_set(f, 0, sf_indefinite());
        return;
    }
    set_cc(f, FSW_C1, 0);
    if (aero_cond(m, op->arg)) st_set(f, 0, st_get(f, in->rm));
}

/* FFREE ST(i) (arg 0) and FFREEP ST(i) (arg 1). */
static void op_ffree(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    f->empty |= (uint8_t)(1u << phys(f, in->rm));
    if (op->arg) set_top(f, fpu_top(f) + 1);
}

/* FNOP, and FENI/FDISI/FSETPM (no-ops since the 80287/80387). */
static void op_fnop(aero_machine *m, const aero_insn *in, const fpu_op *op) { (void)m; (void)in; (void)op; }

/* One-operand operations on ST(0). */
enum { U_CHS, U_ABS, U_TST, U_XAM, U_SQRT, U_RNDINT, U_F2XM1, U_SIN, U_COS, U_INCSTP, U_DECSTP };

static void op_unary(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)in;
    if (op->arg == U_INCSTP || op->arg == U_DECSTP) {
        set_top(f, fpu_top(f) + (op->arg == U_INCSTP ? 1 : -1));
        set_cc(f, FSW_C1, 0);
        return;
    }
    if (op->arg == U_XAM) {
        sf80 v = st_get(f, 0);
        static const uint16_t cls[] = {
            [SFC_ZERO] = FSW_C3, [SFC_NORMAL] = FSW_C2, [SFC_DENORMAL] = FSW_C3 | FSW_C2,
            [SFC_INF] = FSW_C2 | FSW_C0, [SFC_QNAN] = FSW_C0, [SFC_SNAN] = FSW_C0, [SFC_UNSUPPORTED] = 0};
        uint16_t cc = st_empty(f, 0) ? (FSW_C3 | FSW_C0) : cls[aero_sf_class(v)];
        set_cc(f, FSW_CC, cc | (sf_sign(v) ? FSW_C1 : 0));
        return;
    }
    if (st_empty(f, 0)) {
        if (!stack_fault(f, 0)) return;
        if (op->arg == U_TST) compare_cc(f, 2);
        else st_set(f, 0, sf_indefinite());
        return;
    }
    sf80 v = st_get(f, 0), r;
    sf_env e = op->arg == U_SQRT ? make_env(f) : make_env64(f);
    switch (op->arg) {
    case U_CHS: r = v; r.se ^= 0x8000; st_set(f, 0, r); set_cc(f, FSW_C1, 0); return;
    case U_ABS: r = v; r.se &= 0x7FFF; st_set(f, 0, r); set_cc(f, FSW_C1, 0); return;
    case U_TST: {
        int c = aero_sf_compare(&e, v, sf_make(0, 0), 0);
        if (!result_ok(f, &e)) return;
        raise_flags(f, e.flags);
        compare_cc(f, c);
        return;
    }
    case U_SQRT: r = aero_sf_sqrt(&e, v); break;
    case U_RNDINT: r = aero_sf_round_int(&e, v); break;
    case U_F2XM1: r = aero_sf_f2xm1(&e, v); break;
    default: {
        sf80 s, c;
        if (aero_sf_sin_cos(&e, v, &s, &c, op->arg == U_SIN ? SF_SINCOS_SIN : SF_SINCOS_COS)) {
            set_cc(f, FSW_C2, FSW_C2);
            return;
        }
        if (!result_ok(f, &e)) return;
        set_cc(f, FSW_C2, 0);
        st_set(f, 0, op->arg == U_SIN ? s : c);
        finish(f, &e);
        return;
    }
    }
    if (!result_ok(f, &e)) return;
    st_set(f, 0, r);
    finish(f, &e);
}

/* FSINCOS and FPTAN: ST(0) replaced, then a push (cos, or 1.0). */
static void op_push_two(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)in;
    if (st_empty(f, 0)) {
        if (!stack_fault(f, 0)) return;
        st_set(f, 0, sf_indefinite());
        fpu_push(f, sf_indefinite());
        return;
    }
    if (!(f->empty >> phys(f, 7) & 1)) {
        if (!stack_fault(f, 1)) return;
        st_set(f, 0, sf_indefinite());
        fpu_push(f, sf_indefinite());
        return;
    }
    sf_env e = make_env64(f);
    sf80 a, b;
    int out_of_range;
    if (op->arg) {
        out_of_range = aero_sf_sin_cos(&e, st_get(f, 0), &a, &b, SF_SINCOS_BOTH);
    } else {
        out_of_range = aero_sf_tan(&e, st_get(f, 0), &a);
        b = aero_sf_from_i64(1);
        if (sf_is_nan(a)) b = a;
    }
    if (out_of_range) { set_cc(f, FSW_C2, FSW_C2); return; }
    if (!result_ok(f, &e)) return;
    set_cc(f, FSW_C2, 0);
    st_set(f, 0, a);
    fpu_push(f, b);
    finish(f, &e);
}

/* Two-operand operations on ST(0) and ST(1). */
enum { B_PREM, B_PREM1, B_SCALE, B_ATAN, B_YL2X, B_YL2XP1 };

static void op_binary(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)in;
    int pop = op->arg >= B_ATAN;
    if (st_empty(f, 0) || st_empty(f, 1)) {
        if (!stack_fault(f, 0)) return;
        if (pop) { st_set(f, 1, sf_indefinite()); fpu_pop(f); }
        else st_set(f, 0, sf_indefinite());
        return;
    }
    sf_env e = make_env64(f);
    sf80 a = st_get(f, 0), b = st_get(f, 1), r;
    uint32_t cc = 0;
    switch (op->arg) {
    case B_PREM: r = aero_sf_rem(&e, a, b, 0, &cc); break;
    case B_PREM1: r = aero_sf_rem(&e, a, b, 1, &cc); break;
    case B_SCALE: r = aero_sf_scale(&e, a, b); break;
    case B_ATAN: r = aero_sf_atan2(&e, b, a); break;
    case B_YL2X: r = aero_sf_yl2x(&e, b, a); break;
    default: r = aero_sf_yl2xp1(&e, b, a); break;
    }
    if (!result_ok(f, &e)) return;
    if (op->arg <= B_PREM1) {
        st_set(f, 0, r);
        set_cc(f, FSW_CC, cc);
        raise_flags(f, e.flags);
        return;
    }
    st_set(f, pop ? 1 : 0, r);
    finish(f, &e);
    if (pop) fpu_pop(f);
}

/* FXTRACT: ST(0) = exponent, then push the significand (exponent 3FFFh). */
static void op_fxtract(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)in;
    (void)op;
    if (st_empty(f, 0) || !(f->empty >> phys(f, 7) & 1)) {
        if (!stack_fault(f, !st_empty(f, 0))) return;
        st_set(f, 0, sf_indefinite());
        fpu_push(f, sf_indefinite());
        return;
    }
    sf80 v = st_get(f, 0), ex, sig;
    sf_env e = make_env64(f);
    int c = aero_sf_class(v);
    if (c == SFC_UNSUPPORTED) { e.flags |= SF_IE; ex = sig = sf_indefinite(); }
    else if (c == SFC_QNAN || c == SFC_SNAN) { ex = sig = aero_sf_propagate_nan(&e, v, v); }
    else if (c == SFC_INF) { ex = sf_make(0x7FFF, 0x8000000000000000ull); sig = v; }
    else if (c == SFC_ZERO) {
        e.flags |= SF_ZE;
        ex = sf_make(0xFFFF, 0x8000000000000000ull);
        sig = v;
    } else {
        if (c == SFC_DENORMAL) e.flags |= SF_DE;
        int32_t exp;
        uint64_t s;
        aero_sf_unpack(v, &exp, &s);
        ex = aero_sf_from_i64(exp - 16383);
        sig = sf_make((uint16_t)((v.se & 0x8000) | 0x3FFF), s);
    }
    if (!result_ok(f, &e)) return;
    st_set(f, 0, ex);
    fpu_push(f, sig);
    set_cc(f, FSW_C1, 0);
    raise_flags(f, e.flags);
}

/* The constants, with 128 bits of significand (generated with exact arithmetic:
 * value = hi:lo / 2^127 x 2^(exp - 16383)), rounded to 64 bits in the current RC. */
static const struct { int32_t exp; uint64_t hi, lo; } constants[7] = {
    {16383, 0x8000000000000000ull, 0},                      /* FLD1 */
    {16384, 0xD49A784BCD1B8AFEull, 0x492BF6FF4DAFDB4Cull}, /* FLDL2T: log2(10) */
    {16383, 0xB8AA3B295C17F0BBull, 0xBE87FED0691D3E88ull}, /* FLDL2E: log2(e) */
    {16384, 0xC90FDAA22168C234ull, 0xC4C6628B80DC1CD1ull}, /* FLDPI */
    {16381, 0x9A209A84FBCFF798ull, 0x8F8959AC0B7C9178ull}, /* FLDLG2: log10(2) */
    {16382, 0xB17217F7D1CF79ABull, 0xC9E3B39803F2F6AFull}, /* FLDLN2: ln(2) */
    {0, 0, 0},                                              /* FLDZ */
};

static void op_fldconst(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)in;
    if (!(f->empty >> phys(f, 7) & 1)) {
        if (stack_fault(f, 1)) fpu_push(f, sf_indefinite());
        return;
    }
    sf_env e = make_env64(f);
    sf80 v = op->arg == 6 ? sf_make(0, 0) : aero_sf_const(&e, 0, constants[op->arg].exp, constants[op->arg].hi, constants[op->arg].lo);
    fpu_push(f, v);
    set_cc(f, FSW_C1, 0); /* the constants never raise: PE is not reported */
}

/* ---- control instructions ---- */

static void fninit(aero_fpu *f) {
    f->fcw = FPU_FCW_INIT;
    f->fsw = 0;
    f->empty = 0xFF;
    f->fip = f->fdp = 0;
    f->fcs = f->fds = f->fop = 0;
    f->ignne = 0;
}

void aero_fpu_reset(aero_fpu *f) {
    memset(f, 0, sizeof *f);
    f->fcw = FPU_FCW_RESET; /* registers +0.0 and valid (FTW 5555h), FSW 0 */
}

void aero_fpu_port_f0(aero_machine *m) {
    aero_fpu *f = F(m);
    if (f->ferr) {
        f->ferr = 0;
        if (m->pc) aero_pic_set_irq(m, 13, 0);
    }
    if (f->fsw & FSW_ES) f->ignne = 1;
}

static void op_fninit(aero_machine *m, const aero_insn *in, const fpu_op *op) { (void)in; (void)op; fninit(F(m)); }
static void op_fnclex(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)in;
    (void)op;
    f->fsw &= (uint16_t)~(0x3Fu | FSW_SF | FSW_ES | FSW_B);
    f->ignne = 0;
}
static void op_fldcw(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    aero_fpu *f = F(m);
    (void)op;
    uint8_t b[2];
    mem_read(m, in, ea(m, in), b, 2);
    f->fcw = (uint16_t)(load_le(b, 2) | 0x0040u); /* bit 6 reads as 1 */
    update_es(f);
}
static void op_fnstcw(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    uint8_t b[2];
    (void)op;
    store_le(b, 2, F(m)->fcw);
    mem_write(m, in, ea(m, in), b, 2);
}
static void op_fnstsw(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    uint8_t b[2];
    (void)op;
    store_le(b, 2, F(m)->fsw);
    mem_write(m, in, ea(m, in), b, 2);
}
static void op_fnstsw_ax(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    (void)in;
    (void)op;
    set_r16(m, R_EAX, F(m)->fsw);
}

/* The full tag word: 00 valid, 01 zero, 10 special (NaN, infinity, denormal, unsupported),
 * 11 empty, computed from the contents as FSTENV/FSAVE store it. */
static uint16_t full_tags(const aero_fpu *f) {
    uint16_t t = 0;
    for (int p = 0; p < 8; p++) {
        uint16_t tag;
        if ((f->empty >> p) & 1) tag = 3;
        else {
            int c = aero_sf_class(sf_make(f->se[p], f->sig[p]));
            tag = c == SFC_ZERO ? 1 : c == SFC_NORMAL ? 0 : 2;
        }
        t |= (uint16_t)(tag << (2 * p));
    }
    return t;
}

/* The environment layouts: 14 bytes (16-bit operand size) or 28 (32-bit), the real-mode
 * forms holding a 20/32-bit linear instruction and operand pointer instead of selectors.
 * Reserved halves are stored as FFFFh. */
static int env_size(const aero_insn *in) { return in->osz ? 28 : 14; }

static void env_store(aero_machine *m, const aero_insn *in, uint8_t *b) {
    aero_fpu *f = F(m);
    int real = !(m->cpu.cr0 & CR0_PE);
    uint16_t tags = full_tags(f);
    if (in->osz) {
        memset(b, 0xFF, 28);
        store_le(b + 0, 2, f->fcw);
        store_le(b + 4, 2, f->fsw);
        store_le(b + 8, 2, tags);
        if (real) {
            uint32_t ip = ((uint32_t)f->fcs << 4) + f->fip, dp = ((uint32_t)f->fds << 4) + f->fdp;
            store_le(b + 12, 2, ip & 0xFFFF);
            store_le(b + 16, 4, ((ip >> 16) << 12) | (f->fop & 0x7FFu));
            store_le(b + 20, 2, dp & 0xFFFF);
            store_le(b + 24, 4, (dp >> 16) << 12);
        } else {
            store_le(b + 12, 4, f->fip);
            store_le(b + 16, 4, f->fcs | ((uint32_t)(f->fop & 0x7FFu) << 16));
            store_le(b + 20, 4, f->fdp);
            store_le(b + 24, 2, f->fds);
        }
    } else {
        store_le(b + 0, 2, f->fcw);
        store_le(b + 2, 2, f->fsw);
        store_le(b + 4, 2, tags);
        if (real) {
            uint32_t ip = ((uint32_t)f->fcs << 4) + f->fip, dp = ((uint32_t)f->fds << 4) + f->fdp;
            store_le(b + 6, 2, ip & 0xFFFF);
            store_le(b + 8, 2, (((ip >> 16) & 0xF) << 12) | (f->fop & 0x7FFu));
            store_le(b + 10, 2, dp & 0xFFFF);
            store_le(b + 12, 2, ((dp >> 16) & 0xF) << 12);
        } else {
            store_le(b + 6, 2, f->fip & 0xFFFF);
            store_le(b + 8, 2, f->fcs);
            store_le(b + 10, 2, f->fdp & 0xFFFF);
            store_le(b + 12, 2, f->fds);
        }
    }
}

static void env_load(aero_machine *m, const aero_insn *in, const uint8_t *b) {
    aero_fpu *f = F(m);
    int real = !(m->cpu.cr0 & CR0_PE);
    uint16_t tags;
    if (in->osz) {
        f->fcw = (uint16_t)load_le(b + 0, 2);
        f->fsw = (uint16_t)load_le(b + 4, 2);
        tags = (uint16_t)load_le(b + 8, 2);
        if (real) {
            f->fip = load_le(b + 12, 2) | ((load_le(b + 16, 4) >> 12) << 16);
            f->fop = (uint16_t)(load_le(b + 16, 2) & 0x7FFu);
            f->fdp = load_le(b + 20, 2) | ((load_le(b + 24, 4) >> 12) << 16);
            f->fcs = f->fds = 0;
        } else {
            f->fip = load_le(b + 12, 4);
            f->fcs = (uint16_t)load_le(b + 16, 2);
            f->fop = (uint16_t)((load_le(b + 16, 4) >> 16) & 0x7FFu);
            f->fdp = load_le(b + 20, 4);
            f->fds = (uint16_t)load_le(b + 24, 2);
        }
    } else {
        f->fcw = (uint16_t)load_le(b + 0, 2);
        f->fsw = (uint16_t)load_le(b + 2, 2);
        tags = (uint16_t)load_le(b + 4, 2);
        if (real) {
            uint32_t w = load_le(b + 8, 2);
            f->fip = load_le(b + 6, 2) | ((w >> 12) << 16);
            f->fop = (uint16_t)(w & 0x7FFu);
            f->fdp = load_le(b + 10, 2) | ((load_le(b + 12, 2) >> 12) << 16);
            f->fcs = f->fds = 0;
        } else {
            f->fip = load_le(b + 6, 2);
            f->fop = 0; /* this layout has no opcode field */
            f->fcs = (uint16_t)load_le(b + 8, 2);
            f->fdp = load_le(b + 10, 2);
            f->fds = (uint16_t)load_le(b + 12, 2);
        }
    }
    f->fcw |= 0x0040u;
    f->empty = 0;
    for (int p = 0; p < 8; p++)
        if (((tags >> (2 * p)) & 3) == 3) f->empty |= (uint8_t)(1u << p);
    update_es(f);
}

static void op_fldenv(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    uint8_t b[28];
    (void)op;
    mem_read(m, in, ea(m, in), b, env_size(in));
    env_load(m, in, b);
}
static void op_fnstenv(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    uint8_t b[28];
    (void)op;
    env_store(m, in, b);
    mem_write(m, in, ea(m, in), b, env_size(in));
    F(m)->fcw |= 0x3Fu; /* FSTENV then masks every exception */
    update_es(F(m));
}
static void op_frstor(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    uint8_t b[108];
    (void)op;
    int n = env_size(in);
    mem_read(m, in, ea(m, in), b, n + 80);
    env_load(m, in, b);
    aero_fpu *f = F(m);
    for (int i = 0; i < 8; i++) {
        int p = phys(f, i);
        sf80 v = get80(b + n + 10 * i);
        f->sig[p] = v.sig;
        f->se[p] = v.se;
    }
}
static void op_fnsave(aero_machine *m, const aero_insn *in, const fpu_op *op) {
    uint8_t b[108];
    (void)op;
    aero_fpu *f = F(m);
    int n = env_size(in);
    env_store(m, in, b);
    for (int i = 0; i < 8; i++) {
        int p = phys(f, i);
        put80(b + n + 10 * i, sf_make(f->se[p], f->sig[p]));
    }
    mem_write(m, in, ea(m, in), b, n + 80);
    fninit(f);
}

/* ---- the tables ---- */

#define UD {0, 0, 0}
#define CTL(fn, fl) {fn, 0, FOPF_CTRL | (fl)}
static const fpu_op mem_ops[8][8] = {
    /* D8 */ {{op_arith_mem, M_F32, 0}, {op_arith_mem, M_F32, 0}, {op_arith_mem, M_F32, 0}, {op_arith_mem, M_F32, 0},
              {op_arith_mem, M_F32, 0}, {op_arith_mem, M_F32, 0}, {op_arith_mem, M_F32, 0}, {op_arith_mem, M_F32, 0}},
    /* D9 */ {{op_fld_mem, M_F32, 0}, UD, {op_fst_mem, M_F32, 0}, {op_fst_mem, M_F32 | 16, 0},
              CTL(op_fldenv, 0), CTL(op_fldcw, 0), CTL(op_fnstenv, FOPF_NOWAIT), CTL(op_fnstcw, FOPF_NOWAIT)},
    /* DA */ {{op_arith_mem, M_I32, 0}, {op_arith_mem, M_I32, 0}, {op_arith_mem, M_I32, 0}, {op_arith_mem, M_I32, 0},
              {op_arith_mem, M_I32, 0}, {op_arith_mem, M_I32, 0}, {op_arith_mem, M_I32, 0}, {op_arith_mem, M_I32, 0}},
    /* DB */ {{op_fld_mem, M_I32, 0}, UD, {op_fst_mem, M_I32, 0}, {op_fst_mem, M_I32 | 16, 0},
              UD, {op_fld_mem, M_F80, 0}, UD, {op_fst_mem, M_F80 | 16, 0}},
    /* DC */ {{op_arith_mem, M_F64, 0}, {op_arith_mem, M_F64, 0}, {op_arith_mem, M_F64, 0}, {op_arith_mem, M_F64, 0},
              {op_arith_mem, M_F64, 0}, {op_arith_mem, M_F64, 0}, {op_arith_mem, M_F64, 0}, {op_arith_mem, M_F64, 0}},
    /* DD */ {{op_fld_mem, M_F64, 0}, UD, {op_fst_mem, M_F64, 0}, {op_fst_mem, M_F64 | 16, 0},
              CTL(op_frstor, 0), UD, CTL(op_fnsave, FOPF_NOWAIT), CTL(op_fnstsw, FOPF_NOWAIT)},
    /* DE */ {{op_arith_mem, M_I16, 0}, {op_arith_mem, M_I16, 0}, {op_arith_mem, M_I16, 0}, {op_arith_mem, M_I16, 0},
              {op_arith_mem, M_I16, 0}, {op_arith_mem, M_I16, 0}, {op_arith_mem, M_I16, 0}, {op_arith_mem, M_I16, 0}},
    /* DF */ {{op_fld_mem, M_I16, 0}, UD, {op_fst_mem, M_I16, 0}, {op_fst_mem, M_I16 | 16, 0},
              {op_fld_mem, M_BCD, 0}, {op_fld_mem, M_I64, 0}, {op_fst_mem, M_BCD | 16, 0}, {op_fst_mem, M_I64 | 16, 0}},
};

/* rm-selected register rows: D9 /2 /4 /5 /6 /7, DA /5, DB /4, DE /3, DF /4. */
enum { RM_D9_2, RM_D9_4, RM_D9_5, RM_D9_6, RM_D9_7, RM_DA_5, RM_DB_4, RM_DE_3, RM_DF_4 };
#define RM(k) {0, k, FOPF_RM}
static const fpu_op rm_ops[9][8] = {
    /* D9 D0-D7 */ {{op_fnop, 0, 0}, UD, UD, UD, UD, UD, UD, UD},
    /* D9 E0-E7 */ {{op_unary, U_CHS, 0}, {op_unary, U_ABS, 0}, UD, UD, {op_unary, U_TST, 0}, {op_unary, U_XAM, 0}, UD, UD},
    /* D9 E8-EF */ {{op_fldconst, 0, 0}, {op_fldconst, 1, 0}, {op_fldconst, 2, 0}, {op_fldconst, 3, 0},
                    {op_fldconst, 4, 0}, {op_fldconst, 5, 0}, {op_fldconst, 6, 0}, UD},
    /* D9 F0-F7 */ {{op_unary, U_F2XM1, 0}, {op_binary, B_YL2X, 0}, {op_push_two, 0, 0}, {op_binary, B_ATAN, 0},
                    {op_fxtract, 0, 0}, {op_binary, B_PREM1, 0}, {op_unary, U_DECSTP, 0}, {op_unary, U_INCSTP, 0}},
    /* D9 F8-FF */ {{op_binary, B_PREM, 0}, {op_binary, B_YL2XP1, 0}, {op_unary, U_SQRT, 0}, {op_push_two, 1, 0},
                    {op_unary, U_RNDINT, 0}, {op_binary, B_SCALE, 0}, {op_unary, U_SIN, 0}, {op_unary, U_COS, 0}},
    /* DA E8-EF */ {UD, {op_com_reg, 2 | 4 | 8, 0}, UD, UD, UD, UD, UD, UD},
    /* DB E0-E7 */ {CTL(op_fnop, FOPF_NOWAIT), CTL(op_fnop, FOPF_NOWAIT), CTL(op_fnclex, FOPF_NOWAIT),
                    CTL(op_fninit, FOPF_NOWAIT), CTL(op_fnop, FOPF_NOWAIT), UD, UD, UD},
    /* DE D8-DF */ {UD, {op_com_reg, 2 | 8, 0}, UD, UD, UD, UD, UD, UD},
    /* DF E0-E7 */ {CTL(op_fnstsw_ax, FOPF_NOWAIT), UD, UD, UD, UD, UD, UD, UD},
};

static const fpu_op reg_ops[8][8] = {
    /* D8 */ {{op_arith_reg, 0, 0}, {op_arith_reg, 0, 0}, {op_com_reg, 0, 0}, {op_com_reg, 1, 0},
              {op_arith_reg, 0, 0}, {op_arith_reg, 0, 0}, {op_arith_reg, 0, 0}, {op_arith_reg, 0, 0}},
    /* D9 */ {{op_fld_reg, 0, 0}, {op_fxch, 0, 0}, RM(RM_D9_2), {op_fst_reg, 1, 0},
              RM(RM_D9_4), RM(RM_D9_5), RM(RM_D9_6), RM(RM_D9_7)},
    /* DA */ {{op_fcmov, 2, 0}, {op_fcmov, 4, 0}, {op_fcmov, 6, 0}, {op_fcmov, 10, 0}, UD, RM(RM_DA_5), UD, UD},
    /* DB */ {{op_fcmov, 3, 0}, {op_fcmov, 5, 0}, {op_fcmov, 7, 0}, {op_fcmov, 11, 0},
              RM(RM_DB_4), {op_comi, 4, 0}, {op_comi, 0, 0}, UD},
    /* DC */ {{op_arith_reg, 1, 0}, {op_arith_reg, 1, 0}, {op_com_reg, 0, 0}, {op_com_reg, 1, 0},
              {op_arith_reg, 1, 0}, {op_arith_reg, 1, 0}, {op_arith_reg, 1, 0}, {op_arith_reg, 1, 0}},
    /* DD */ {{op_ffree, 0, 0}, {op_fxch, 0, 0}, {op_fst_reg, 0, 0}, {op_fst_reg, 1, 0},
              {op_com_reg, 4, 0}, {op_com_reg, 1 | 4, 0}, UD, UD},
    /* DE */ {{op_arith_reg, 2, 0}, {op_arith_reg, 2, 0}, {op_com_reg, 1, 0}, RM(RM_DE_3),
              {op_arith_reg, 2, 0}, {op_arith_reg, 2, 0}, {op_arith_reg, 2, 0}, {op_arith_reg, 2, 0}},
    /* DF */ {{op_ffree, 1, 0}, {op_fxch, 0, 0}, {op_fst_reg, 1, 0}, {op_fst_reg, 1, 0},
              RM(RM_DF_4), {op_comi, 1 | 4, 0}, {op_comi, 1, 0}, UD},
};

/* ---- entry points ---- */

AERO_INLINE int fpu_present(const aero_machine *m) { return (m->cfg.cpuid_features_edx & 1u) != 0; }

/* A waiting instruction meets a pending unmasked exception: #MF (CR0.NE = 1), or FERR# on
 * IRQ 13 and the instruction waits (retried until the handler writes port F0h). Returns 1
 * when the instruction must not run now. */
static int report_pending(aero_machine *m) {
    aero_fpu *f = F(m);
    if (!(f->fsw & FSW_ES)) return 0;
    if (m->cpu.cr0 & CR0_NE) aero_fault(m, EXC_MF, 0, 0);
    if (f->ignne || !m->pc) return 0;
    if (!f->ferr) {
        f->ferr = 1;
        aero_pic_set_irq(m, 13, 1);
    }
    m->exit_block = 1;
    return 1;
}

void aero_op_fpu_esc(aero_machine *m, const aero_insn *in) {
    if (m->cpu.cr0 & (CR0_EM | CR0_TS)) aero_fault(m, EXC_NM, 0, 0);
    if (!fpu_present(m)) aero_fault_ud(m);
    int esc = in->op & 7;
    const fpu_op *op = in->mod == 3 ? &reg_ops[esc][in->reg] : &mem_ops[esc][in->reg];
    if (op->flags & FOPF_RM) op = &rm_ops[op->arg][in->rm];
    if (!op->fn) aero_fault_ud(m);
    if (!(op->flags & FOPF_NOWAIT) && report_pending(m)) return;
    op->fn(m, in, op);
    if (!(op->flags & FOPF_CTRL)) {
        aero_fpu *f = F(m);
        f->fip = m->cpu.eip;
        f->fcs = m->cpu.seg[S_CS].selector;
        f->fop = (uint16_t)(((in->op & 7u) << 8) | ((uint32_t)in->mod << 6) | ((uint32_t)in->reg << 3) | in->rm);
        if (in->mod != 3) {
            f->fdp = ea(m, in);
            f->fds = m->cpu.seg[in->seg].selector;
        }
    }
    next(m, in);
}

/* WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set; then reports a pending unmasked x87
 * exception. */
void aero_op_wait(aero_machine *m, const aero_insn *in) {
    if ((m->cpu.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS)) aero_fault(m, EXC_NM, 0, 0);
    if (fpu_present(m) && report_pending(m)) return;
    next(m, in);
}

/* ---- the API ---- */

void aero_get_fpu(aero_machine *m, aero_fpu_regs *out) {
    const aero_fpu *f = F(m);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 8; i++) {
        int p = phys(f, i);
        out->st_sig[i] = f->sig[p];
        out->st_se[i] = f->se[p];
    }
    out->fcw = f->fcw;
    out->fsw = f->fsw;
    out->ftw = full_tags(f);
    out->fop = f->fop;
    out->fcs = f->fcs;
    out->fds = f->fds;
    out->fip = f->fip;
    out->fdp = f->fdp;
    out->ferr = f->ferr;
}

void aero_set_fpu(aero_machine *m, const aero_fpu_regs *in) {
    aero_fpu *f = F(m);
    f->fcw = in->fcw;
    f->fsw = in->fsw;
    for (int i = 0; i < 8; i++) {
        int p = phys(f, i);
        f->sig[p] = in->st_sig[i];
        f->se[p] = in->st_se[i];
    }
    f->empty = 0;
    for (int p = 0; p < 8; p++)
        if (((in->ftw >> (2 * p)) & 3) == 3) f->empty |= (uint8_t)(1u << p);
    f->fop = in->fop & 0x7FF;
    f->fcs = in->fcs;
    f->fds = in->fds;
    f->fip = in->fip;
    f->fdp = in->fdp;
    update_es(f);
}
