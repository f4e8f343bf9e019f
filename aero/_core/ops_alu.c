/* aero core: arithmetic, logic, shifts, bit operations, BCD, multiply and divide.
 *
 * The eight classic ALU operations set lazy flags (flags.c); the rest compute flags
 * eagerly. Architecturally undefined flags follow the choices in docs/cpu.md.
 */
#include "cpu.h"

enum { OP_ADD, OP_OR, OP_ADC, OP_SBB, OP_AND, OP_SUB, OP_XOR, OP_CMP };

AERO_INLINE int sidx(int size) { return size == 1 ? 0 : size == 2 ? 1 : 2; }
AERO_INLINE uint32_t smask(int size) { return size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu; }
AERO_INLINE uint32_t ssign(int size) { return size == 1 ? 0x80u : size == 2 ? 0x8000u : 0x80000000u; }
AERO_INLINE uint32_t sext(uint32_t v, int size) {
    return size == 1 ? (uint32_t)(int32_t)(int8_t)v : size == 2 ? (uint32_t)(int32_t)(int16_t)v : v;
}

/* One of the eight ALU operations; op is a constant at every call site. */
AERO_INLINE uint32_t alu(aero_machine *m, const int op, uint32_t a, uint32_t b, int size) {
    uint32_t r, c;
    int s = sidx(size);
    switch (op) {
    case OP_ADD: r = a + b; set_lazy(m, LF_ADD, s, a, b, r); break;
    case OP_OR: r = a | b; set_lazy(m, LF_LOGIC, s, a, b, r); break;
    case OP_ADC: c = get_cf(m); r = a + b + c; set_lazy(m, c ? LF_ADC : LF_ADD, s, a, b, r); break;
    case OP_SBB: c = get_cf(m); r = a - b - c; set_lazy(m, c ? LF_SBB : LF_SUB, s, a, b, r); break;
    case OP_AND: r = a & b; set_lazy(m, LF_LOGIC, s, a, b, r); break;
    case OP_SUB: case OP_CMP: r = a - b; set_lazy(m, LF_SUB, s, a, b, r); break;
    default: r = a ^ b; set_lazy(m, LF_LOGIC, s, a, b, r); break;
    }
    return r & smask(size);
}

/* E op= b (E op b for CMP): one segment check and translation for read-modify-write. */
AERO_INLINE void alu_E(aero_machine *m, const aero_insn *in, const int op, int size, uint32_t b) {
    if (in->mod == 3) {
        uint32_t r = alu(m, op, get_reg(m, in->rm, size), b, size);
        if (op != OP_CMP) set_reg(m, in->rm, size, r);
    } else {
        uint32_t lin = op == OP_CMP ? seg_lin(m, in->seg, ea(m, in), (uint32_t)size)
                                    : seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        uint32_t r = alu(m, op, op == OP_CMP ? lin_rd(m, lin, size) : lin_rd_w(m, lin, size), b, size);
        if (op != OP_CMP) lin_wr(m, lin, size, r);
    }
    next(m, in);
}
AERO_INLINE void alu_EG(aero_machine *m, const aero_insn *in, const int op, int size) {
    alu_E(m, in, op, size, get_reg(m, in->reg, size));
}
AERO_INLINE void alu_EI(aero_machine *m, const aero_insn *in, const int op, int size) {
    alu_E(m, in, op, size, in->imm & smask(size));
}
/* G op= E. */
AERO_INLINE void alu_GE(aero_machine *m, const aero_insn *in, const int op, int size) {
    uint32_t b = get_E(m, in, size);
    uint32_t r = alu(m, op, get_reg(m, in->reg, size), b, size);
    if (op != OP_CMP) set_reg(m, in->reg, size, r);
    next(m, in);
}
/* AL/eAX op= immediate. */
AERO_INLINE void alu_AI(aero_machine *m, const aero_insn *in, const int op, int size) {
    uint32_t r = alu(m, op, get_reg(m, R_EAX, size), in->imm & smask(size), size);
    if (op != OP_CMP) set_reg(m, R_EAX, size, r);
    next(m, in);
}

#define DEF_ALU(name, OP)                                                                     \
    void aero_op_##name##_EbGb(aero_machine *m, const aero_insn *in) { alu_EG(m, in, OP, 1); } \
    void aero_op_##name##_EvGv(aero_machine *m, const aero_insn *in) { alu_EG(m, in, OP, osize(in)); } \
    void aero_op_##name##_GbEb(aero_machine *m, const aero_insn *in) { alu_GE(m, in, OP, 1); } \
    void aero_op_##name##_GvEv(aero_machine *m, const aero_insn *in) { alu_GE(m, in, OP, osize(in)); } \
    void aero_op_##name##_ALIb(aero_machine *m, const aero_insn *in) { alu_AI(m, in, OP, 1); } \
    void aero_op_##name##_eAXIz(aero_machine *m, const aero_insn *in) { alu_AI(m, in, OP, osize(in)); } \
    void aero_op_##name##_EbIb(aero_machine *m, const aero_insn *in) { alu_EI(m, in, OP, 1); } \
    void aero_op_##name##_EvIz(aero_machine *m, const aero_insn *in) { alu_EI(m, in, OP, osize(in)); } \
    void aero_op_##name##_EvIb(aero_machine *m, const aero_insn *in) { alu_EI(m, in, OP, osize(in)); }

DEF_ALU(add, OP_ADD)
DEF_ALU(or, OP_OR)
DEF_ALU(adc, OP_ADC)
DEF_ALU(sbb, OP_SBB)
DEF_ALU(and, OP_AND)
DEF_ALU(sub, OP_SUB)
DEF_ALU(xor, OP_XOR)
DEF_ALU(cmp, OP_CMP)

/* TEST: AND without writing the result. */
AERO_INLINE void test_op(aero_machine *m, uint32_t a, uint32_t b, int size) {
    set_lazy(m, LF_LOGIC, sidx(size), a, b, a & b);
}
void aero_op_test_EbGb(aero_machine *m, const aero_insn *in) { test_op(m, get_E(m, in, 1), get_r8(m, in->reg), 1); next(m, in); }
void aero_op_test_EvGv(aero_machine *m, const aero_insn *in) { int s = osize(in); test_op(m, get_E(m, in, s), get_reg(m, in->reg, s), s); next(m, in); }
void aero_op_test_ALIb(aero_machine *m, const aero_insn *in) { test_op(m, get_r8(m, R_EAX), in->imm & 0xFF, 1); next(m, in); }
void aero_op_test_eAXIz(aero_machine *m, const aero_insn *in) { int s = osize(in); test_op(m, get_reg(m, R_EAX, s), in->imm, s); next(m, in); }
void aero_op_test_EbIb(aero_machine *m, const aero_insn *in) { test_op(m, get_E(m, in, 1), in->imm & 0xFF, 1); next(m, in); }
void aero_op_test_EvIz(aero_machine *m, const aero_insn *in) { int s = osize(in); test_op(m, get_E(m, in, s), in->imm, s); next(m, in); }

/* ---- INC / DEC / NOT / NEG ---- */

AERO_INLINE uint32_t incdec(aero_machine *m, uint32_t a, int size, int dec) {
    uint32_t cf = get_cf(m);
    uint32_t r = (dec ? a - 1 : a + 1) & smask(size);
    set_lazy(m, dec ? LF_DEC : LF_INC, sidx(size), a, cf, r);
    return r;
}
AERO_INLINE void incdec_E(aero_machine *m, const aero_insn *in, int size, int dec) {
    if (in->mod == 3) {
        set_reg(m, in->rm, size, incdec(m, get_reg(m, in->rm, size), size, dec));
    } else {
        uint32_t lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        lin_wr(m, lin, size, incdec(m, lin_rd_w(m, lin, size), size, dec));
    }
    next(m, in);
}
void aero_op_inc_Zv(aero_machine *m, const aero_insn *in) { int s = osize(in); set_reg(m, in->reg, s, incdec(m, get_reg(m, in->reg, s), s, 0)); next(m, in); }
void aero_op_dec_Zv(aero_machine *m, const aero_insn *in) { int s = osize(in); set_reg(m, in->reg, s, incdec(m, get_reg(m, in->reg, s), s, 1)); next(m, in); }
void aero_op_inc_Eb(aero_machine *m, const aero_insn *in) { incdec_E(m, in, 1, 0); }
void aero_op_dec_Eb(aero_machine *m, const aero_insn *in) { incdec_E(m, in, 1, 1); }
void aero_op_inc_Ev(aero_machine *m, const aero_insn *in) { incdec_E(m, in, osize(in), 0); }
void aero_op_dec_Ev(aero_machine *m, const aero_insn *in) { incdec_E(m, in, osize(in), 1); }

AERO_INLINE void not_E(aero_machine *m, const aero_insn *in, int size) {
    if (in->mod == 3) {
        set_reg(m, in->rm, size, ~get_reg(m, in->rm, size));
    } else {
        uint32_t lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        lin_wr(m, lin, size, ~lin_rd(m, lin, size) & smask(size));
    }
    next(m, in);
}
void aero_op_not_Eb(aero_machine *m, const aero_insn *in) { not_E(m, in, 1); }
void aero_op_not_Ev(aero_machine *m, const aero_insn *in) { not_E(m, in, osize(in)); }

AERO_INLINE void neg_E(aero_machine *m, const aero_insn *in, int size) {
    if (in->mod == 3) {
        set_reg(m, in->rm, size, alu(m, OP_SUB, 0, get_reg(m, in->rm, size), size));
    } else {
        uint32_t lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        lin_wr(m, lin, size, alu(m, OP_SUB, 0, lin_rd_w(m, lin, size), size));
    }
    next(m, in);
}
void aero_op_neg_Eb(aero_machine *m, const aero_insn *in) { neg_E(m, in, 1); }
void aero_op_neg_Ev(aero_machine *m, const aero_insn *in) { neg_E(m, in, osize(in)); }

/* ---- multiply and divide ---- */

/* Flags after a multiply: CF = OF = `overflow`; SF/ZF/PF from the low half, AF clear
 * (the undefined ones follow Bochs's model of the P6). */
static void mul_flags(aero_machine *m, uint32_t low, int size, int overflow) {
    uint32_t f = szp_flags(low, sidx(size));
    if (overflow) f |= F_CF | F_OF;
    m->cpu.lf_op = LF_NONE;
    m->cpu.eflags = (m->cpu.eflags & ~F_ARITH) | f;
}

AERO_INLINE void mul_op(aero_machine *m, uint32_t src, int size, int is_signed) {
    if (size == 1) {
        uint32_t al = get_r8(m, R_EAX);
        uint32_t r = is_signed ? (uint32_t)((int32_t)(int8_t)al * (int32_t)(int8_t)src) & 0xFFFF : al * src;
        set_r16(m, R_EAX, (uint16_t)r);
        int of = is_signed ? ((int32_t)(int16_t)r != (int32_t)(int8_t)r) : (r >> 8) != 0;
        mul_flags(m, r & 0xFF, 1, of);
    } else if (size == 2) {
        uint32_t ax = get_r16(m, R_EAX);
        uint32_t r = is_signed ? (uint32_t)((int32_t)(int16_t)ax * (int32_t)(int16_t)src) : ax * src;
        set_r16(m, R_EAX, (uint16_t)r);
        set_r16(m, R_EDX, (uint16_t)(r >> 16));
        int of = is_signed ? ((int32_t)r != (int32_t)(int16_t)r) : (r >> 16) != 0;
        mul_flags(m, r & 0xFFFF, 2, of);
    } else {
        uint32_t eax = m->cpu.r[R_EAX];
        uint64_t r = is_signed ? (uint64_t)((int64_t)(int32_t)eax * (int64_t)(int32_t)src) : (uint64_t)eax * src;
        m->cpu.r[R_EAX] = (uint32_t)r;
        m->cpu.r[R_EDX] = (uint32_t)(r >> 32);
        int of = is_signed ? ((int64_t)r != (int64_t)(int32_t)r) : (r >> 32) != 0;
        mul_flags(m, (uint32_t)r, 4, of);
    }
}
void aero_op_mul_Eb(aero_machine *m, const aero_insn *in) { mul_op(m, get_E(m, in, 1), 1, 0); next(m, in); }
void aero_op_mul_Ev(aero_machine *m, const aero_insn *in) { int s = osize(in); mul_op(m, get_E(m, in, s), s, 0); next(m, in); }
void aero_op_imul_Eb(aero_machine *m, const aero_insn *in) { mul_op(m, get_E(m, in, 1), 1, 1); next(m, in); }
void aero_op_imul_Ev(aero_machine *m, const aero_insn *in) { int s = osize(in); mul_op(m, get_E(m, in, s), s, 1); next(m, in); }

/* Two- and three-operand IMUL: G = a * b, truncated to the operand size. */
AERO_INLINE void imul3(aero_machine *m, const aero_insn *in, uint32_t a, uint32_t b) {
    int size = osize(in);
    int64_t r = (int64_t)(int32_t)sext(a, size) * (int64_t)(int32_t)sext(b, size);
    uint32_t low = (uint32_t)r & smask(size);
    int of = r != (int64_t)(int32_t)sext(low, size);
    set_reg(m, in->reg, size, low);
    mul_flags(m, low, size, of);
    next(m, in);
}
void aero_op_imul_GvEv(aero_machine *m, const aero_insn *in) { int s = osize(in); imul3(m, in, get_reg(m, in->reg, s), get_E(m, in, s)); }
void aero_op_imul_GvEvIz(aero_machine *m, const aero_insn *in) { imul3(m, in, get_E(m, in, osize(in)), in->imm); }
void aero_op_imul_GvEvIb(aero_machine *m, const aero_insn *in) { imul3(m, in, get_E(m, in, osize(in)), in->imm); }

/* DIV/IDIV: #DE on a zero divisor or a quotient that does not fit; flags unchanged. */
AERO_INLINE void div_op(aero_machine *m, uint32_t src, int size, int is_signed) {
    if (src == 0) aero_fault(m, EXC_DE, 0, 0);
    if (size == 1) {
        uint32_t ax = get_r16(m, R_EAX);
        if (is_signed) {
            int32_t n = (int16_t)ax, d = (int8_t)src;
            int32_t q = n / d, r = n % d;
            if (q > 127 || q < -128) aero_fault(m, EXC_DE, 0, 0);
            set_r16(m, R_EAX, (uint16_t)(((uint32_t)r & 0xFF) << 8 | ((uint32_t)q & 0xFF)));
        } else {
            uint32_t q = ax / src, r = ax % src;
            if (q > 0xFF) aero_fault(m, EXC_DE, 0, 0);
            set_r16(m, R_EAX, (uint16_t)(r << 8 | q));
        }
    } else if (size == 2) {
        uint32_t n = (uint32_t)get_r16(m, R_EDX) << 16 | get_r16(m, R_EAX);
        if (is_signed) {
            int32_t d = (int16_t)src;
            int64_t q = (int64_t)(int32_t)n / d, r = (int64_t)(int32_t)n % d;
            if (q > 32767 || q < -32768) aero_fault(m, EXC_DE, 0, 0);
            set_r16(m, R_EAX, (uint16_t)q);
            set_r16(m, R_EDX, (uint16_t)r);
        } else {
            uint32_t q = n / src, r = n % src;
            if (q > 0xFFFF) aero_fault(m, EXC_DE, 0, 0);
            set_r16(m, R_EAX, (uint16_t)q);
            set_r16(m, R_EDX, (uint16_t)r);
        }
    } else {
        uint64_t n = (uint64_t)m->cpu.r[R_EDX] << 32 | m->cpu.r[R_EAX];
        if (is_signed) {
            int64_t sn = (int64_t)n, d = (int32_t)src;
            if (sn == INT64_MIN && d == -1) aero_fault(m, EXC_DE, 0, 0);
            int64_t q = sn / d, r = sn % d;
            if (q > INT32_MAX || q < INT32_MIN) aero_fault(m, EXC_DE, 0, 0);
            m->cpu.r[R_EAX] = (uint32_t)q;
            m->cpu.r[R_EDX] = (uint32_t)r;
        } else {
            uint64_t q = n / src, r = n % src;
            if (q > 0xFFFFFFFFu) aero_fault(m, EXC_DE, 0, 0);
            m->cpu.r[R_EAX] = (uint32_t)q;
            m->cpu.r[R_EDX] = (uint32_t)r;
        }
    }
}
void aero_op_div_Eb(aero_machine *m, const aero_insn *in) { div_op(m, get_E(m, in, 1), 1, 0); next(m, in); }
void aero_op_div_Ev(aero_machine *m, const aero_insn *in) { int s = osize(in); div_op(m, get_E(m, in, s), s, 0); next(m, in); }
void aero_op_idiv_Eb(aero_machine *m, const aero_insn *in) { div_op(m, get_E(m, in, 1), 1, 1); next(m, in); }
void aero_op_idiv_Ev(aero_machine *m, const aero_insn *in) { int s = osize(in); div_op(m, get_E(m, in, s), s, 1); next(m, in); }

/* ---- shifts and rotates ---- */

/* Shift/rotate group 2, operation `op` (ModRM reg) of a by count; returns the result and
 * updates flags. A masked count of zero changes nothing, flags included. */
static uint32_t shift(aero_machine *m, int op, uint32_t a, uint32_t count, int size) {
    uint32_t bits = (uint32_t)size * 8, mask = smask(size), sign = ssign(size);
    count &= 0x1F;
    if (count == 0) return a;
    uint32_t f = get_flags(m) & ~F_ARITH;
    uint32_t old = m->cpu.eflags & F_ARITH;
    uint32_t r = a, cf = 0, of = 0;
    a &= mask;
    switch (op) {
    case 0: { /* ROL */
        uint32_t c = count % bits;
        r = c ? ((a << c) | (a >> (bits - c))) & mask : a;
        cf = r & 1;
        of = ((r & sign) != 0) ^ cf;
        f |= old & ~(F_CF | F_OF);
        break;
    }
    case 1: { /* ROR */
        uint32_t c = count % bits;
        r = c ? ((a >> c) | (a << (bits - c))) & mask : a;
        cf = (r & sign) != 0;
        of = cf ^ ((r & (sign >> 1)) != 0);
        f |= old & ~(F_CF | F_OF);
        break;
    }
    case 2: { /* RCL */
        uint32_t c = count % (bits + 1);
        uint64_t v = ((uint64_t)((old & F_CF) ? 1 : 0) << bits) | a; /* CF:value, bits+1 wide */
        uint64_t w = ((uint64_t)1 << (bits + 1)) - 1;
        if (c) v = ((v << c) | (v >> (bits + 1 - c))) & w;
        r = (uint32_t)v & mask;
        cf = (uint32_t)(v >> bits) & 1;
        of = ((r & sign) != 0) ^ cf;
        f |= old & ~(F_CF | F_OF);
        break;
    }
    case 3: { /* RCR */
        uint32_t c = count % (bits + 1);
        uint64_t v = ((uint64_t)((old & F_CF) ? 1 : 0) << bits) | a;
        uint64_t w = ((uint64_t)1 << (bits + 1)) - 1;
        if (c) v = ((v >> c) | (v << (bits + 1 - c))) & w;
        r = (uint32_t)v & mask;
        cf = (uint32_t)(v >> bits) & 1;
        of = ((r & sign) != 0) ^ ((r & (sign >> 1)) != 0);
        f |= old & ~(F_CF | F_OF);
        break;
    }
    case 4: case 6: /* SHL/SAL */
        r = count < 32 ? (a << count) & mask : 0;
        cf = count <= bits ? (uint32_t)(((uint64_t)a << count) >> bits) & 1 : 0;
        of = ((r & sign) != 0) ^ cf;
        f |= szp_flags(r, sidx(size));
        break;
    case 5: /* SHR: OF = top two result bits differ, i.e. MSB(a) for 1, 0 beyond (as Bochs) */
        r = (uint32_t)((uint64_t)a >> count) & mask;
        cf = count <= bits ? (uint32_t)((uint64_t)a >> (count - 1)) & 1 : 0;
        of = ((r ^ (r << 1)) & sign) != 0;
        f |= szp_flags(r, sidx(size));
        break;
    default: { /* SAR */
        int64_t sa = (int32_t)sext(a, size);
        uint32_t c = count < bits ? count : bits;
        r = (uint32_t)(sa >> c) & mask;
        cf = (uint32_t)(sa >> (c - 1)) & 1;
        of = 0;
        f |= szp_flags(r, sidx(size));
        break;
    }
    }
    if (cf) f |= F_CF;
    if (of) f |= F_OF;
    m->cpu.eflags = f;
    return r;
}

AERO_INLINE void shift_E(aero_machine *m, const aero_insn *in, int size, uint32_t count) {
    if (in->mod == 3) {
        set_reg(m, in->rm, size, shift(m, in->reg, get_reg(m, in->rm, size), count, size));
    } else {
        uint32_t lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        uint32_t v = lin_rd_w(m, lin, size);
        uint32_t r = shift(m, in->reg, v, count, size);
        lin_wr(m, lin, size, r);
    }
    next(m, in);
}
void aero_op_rot_Eb1(aero_machine *m, const aero_insn *in) { shift_E(m, in, 1, 1); }
void aero_op_rot_Ev1(aero_machine *m, const aero_insn *in) { shift_E(m, in, osize(in), 1); }
void aero_op_rot_EbCL(aero_machine *m, const aero_insn *in) { shift_E(m, in, 1, get_r8(m, R_ECX)); }
void aero_op_rot_EvCL(aero_machine *m, const aero_insn *in) { shift_E(m, in, osize(in), get_r8(m, R_ECX)); }
void aero_op_rot_EbIb(aero_machine *m, const aero_insn *in) { shift_E(m, in, 1, in->imm & 0xFF); }
void aero_op_rot_EvIb(aero_machine *m, const aero_insn *in) { shift_E(m, in, osize(in), in->imm & 0xFF); }

/* SHLD/SHRD (0F A4/A5/AC/AD). 16-bit counts above 16 shift the pattern dest:src:dest,
 * as Intel processors do. */
void aero_op_shxd(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    int left = in->op == 0xA4 || in->op == 0xA5;
    uint32_t count = ((in->op & 1) ? get_r8(m, R_ECX) : in->imm) & 0x1F;
    uint32_t src = get_reg(m, in->reg, size);
    uint32_t lin = 0;
    uint32_t d;
    if (in->mod == 3) {
        d = get_reg(m, in->rm, size);
    } else {
        lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        d = lin_rd_w(m, lin, size);
    }
    if (count) {
        uint32_t r, cf;
        if (size == 4) {
            if (left) {
                r = (uint32_t)((((uint64_t)d << 32) | src) << count >> 32);
                cf = (d >> (32 - count)) & 1;
            } else {
                r = (uint32_t)((((uint64_t)src << 32) | d) >> count);
                cf = (d >> (count - 1)) & 1;
            }
        } else {
            uint64_t v = ((uint64_t)d << 32) | ((uint64_t)src << 16) | d;
            if (left) {
                r = (uint32_t)((v << count) >> 32) & 0xFFFF;
                cf = (uint32_t)(v >> (48 - count)) & 1;
            } else {
                r = (uint32_t)(v >> count) & 0xFFFF;
                cf = (uint32_t)(v >> (count - 1)) & 1;
            }
        }
        uint32_t f = (get_flags(m) & ~F_ARITH) | szp_flags(r, sidx(size));
        if (cf) f |= F_CF;
        if ((r ^ d) & ssign(size)) f |= F_OF;
        if (in->mod != 3) lin_wr(m, lin, size, r); /* a #PF here must leave EFLAGS alone */
        m->cpu.eflags = f;
        if (in->mod == 3) set_reg(m, in->rm, size, r);
    }
    next(m, in);
}

/* ---- bit test and scan ---- */

/* BT/BTS/BTR/BTC; kind 0-3 from the opcode or the group reg field. Register bit offsets
 * address memory beyond the operand (signed); immediate ones wrap within it. */
static void bit_op(aero_machine *m, const aero_insn *in, int kind, uint32_t offset, int from_reg) {
    int size = osize(in);
    uint32_t bits = (uint32_t)size * 8;
    uint32_t v, lin = 0, bit;
    if (in->mod == 3) {
        bit = offset & (bits - 1);
        v = get_reg(m, in->rm, size);
    } else {
        uint32_t off = ea(m, in);
        if (from_reg) {
            int32_t so = (int32_t)sext(offset, size);
            int32_t words = so >> (size == 4 ? 5 : 4);
            off += (uint32_t)(words * size);
            if (!in->asz) off &= 0xFFFF;
        }
        bit = offset & (bits - 1);
        lin = kind ? seg_lin_w(m, in->seg, off, (uint32_t)size) : seg_lin(m, in->seg, off, (uint32_t)size);
        v = kind ? lin_rd_w(m, lin, size) : lin_rd(m, lin, size);
    }
    uint32_t f = get_flags(m) & ~F_CF;
    if ((v >> bit) & 1) f |= F_CF;
    m->cpu.eflags = f;
    uint32_t nv = v;
    switch (kind) {
    case 1: nv = v | (1u << bit); break;
    case 2: nv = v & ~(1u << bit); break;
    case 3: nv = v ^ (1u << bit); break;
    default: break;
    }
    if (kind) {
        if (in->mod == 3) set_reg(m, in->rm, size, nv);
        else lin_wr(m, lin, size, nv);
    }
    next(m, in);
}
void aero_op_bt_EvGv(aero_machine *m, const aero_insn *in) {
    static const uint8_t kinds[4] = {0, 1, 2, 3}; /* A3 BT, AB BTS, B3 BTR, BB BTC */
    int kind = kinds[(in->op >> 3) & 3];
    bit_op(m, in, kind, get_reg(m, in->reg, osize(in)), 1);
}
void aero_op_bt_EvIb(aero_machine *m, const aero_insn *in) { bit_op(m, in, in->reg - 4, in->imm & 0xFF, 0); }

/* BSF/BSR: source zero sets ZF and leaves the destination unchanged (as P6 hardware). */
static void bit_scan(aero_machine *m, const aero_insn *in, int reverse) {
    int size = osize(in);
    uint32_t v = get_E(m, in, size);
    uint32_t f = get_flags(m) & ~F_ARITH;
    if (v == 0) {
        f |= F_ZF;
    } else {
        uint32_t idx = reverse ? 31u - (uint32_t)__builtin_clz(v) : (uint32_t)__builtin_ctz(v);
        set_reg(m, in->reg, size, idx);
        f |= szp_flags(idx, sidx(size)) & ~F_ZF;
    }
    m->cpu.eflags = f;
    next(m, in);
}
void aero_op_bsf(aero_machine *m, const aero_insn *in) { bit_scan(m, in, 0); }
void aero_op_bsr(aero_machine *m, const aero_insn *in) { bit_scan(m, in, 1); }

/* ---- conditional set and move ---- */

void aero_op_setcc(aero_machine *m, const aero_insn *in) {
    set_E(m, in, 1, (uint32_t)aero_cond(m, in->op & 15));
    next(m, in);
}
void aero_op_cmovcc(aero_machine *m, const aero_insn *in) {
    int size = osize(in);
    uint32_t v = get_E(m, in, size); /* the source is read (and may fault) either way */
    if (aero_cond(m, in->op & 15)) set_reg(m, in->reg, size, v);
    next(m, in);
}

/* ---- exchange-and-compare family ---- */

AERO_INLINE void cmpxchg(aero_machine *m, const aero_insn *in, int size) {
    uint32_t acc = get_reg(m, R_EAX, size);
    uint32_t lin = 0, d;
    if (in->mod == 3) {
        d = get_reg(m, in->rm, size);
    } else {
        lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        d = lin_rd_w(m, lin, size);
    }
    (void)alu(m, OP_CMP, acc, d, size);
    if (acc == d) {
        uint32_t src = get_reg(m, in->reg, size);
        if (in->mod == 3) set_reg(m, in->rm, size, src);
        else lin_wr(m, lin, size, src);
    } else {
        /* The destination is written back unchanged (a locked read-modify-write). */
        if (in->mod != 3) lin_wr(m, lin, size, d);
        set_reg(m, R_EAX, size, d);
    }
    next(m, in);
}
void aero_op_cmpxchg_EbGb(aero_machine *m, const aero_insn *in) { cmpxchg(m, in, 1); }
void aero_op_cmpxchg_EvGv(aero_machine *m, const aero_insn *in) { cmpxchg(m, in, osize(in)); }

void aero_op_cmpxchg8b(aero_machine *m, const aero_insn *in) {
    uint32_t off = ea(m, in);
    uint32_t lin = seg_lin_w(m, in->seg, off, 8);
    uint32_t lo = lin_rd(m, lin, 4), hi = lin_rd(m, lin + 4, 4);
    aero_probe_write(m, lin, 8); /* CMPXCHG8B writes either way: fault before EDX:EAX changes */
    uint32_t f = get_flags(m) & ~F_ZF;
    aero_probe_write(m, lin, 8);
    if (lo == m->cpu.r[R_EAX] && hi == m->cpu.r[R_EDX]) {
        lin_wr(m, lin, 4, m->cpu.r[R_EBX]);
        lin_wr(m, lin + 4, 4, m->cpu.r[R_ECX]);
        f |= F_ZF;
    } else {
        lin_wr(m, lin, 4, lo);
        lin_wr(m, lin + 4, 4, hi);
        m->cpu.r[R_EAX] = lo;
        m->cpu.r[R_EDX] = hi;
    }
    m->cpu.eflags = f;
    next(m, in);
}

AERO_INLINE void xadd(aero_machine *m, const aero_insn *in, int size) {
    uint32_t src = get_reg(m, in->reg, size);
    if (in->mod == 3) {
        uint32_t d = get_reg(m, in->rm, size);
        uint32_t r = alu(m, OP_ADD, d, src, size);
        set_reg(m, in->reg, size, d);
        set_reg(m, in->rm, size, r);
    } else {
        uint32_t lin = seg_lin_w(m, in->seg, ea(m, in), (uint32_t)size);
        uint32_t d = lin_rd_w(m, lin, size);
        uint32_t r = alu(m, OP_ADD, d, src, size);
        lin_wr(m, lin, size, r);
        set_reg(m, in->reg, size, d);
    }
    next(m, in);
}
void aero_op_xadd_EbGb(aero_machine *m, const aero_insn *in) { xadd(m, in, 1); }
void aero_op_xadd_EvGv(aero_machine *m, const aero_insn *in) { xadd(m, in, osize(in)); }

/* ---- decimal adjust ---- */

void aero_op_daa(aero_machine *m, const aero_insn *in) {
    uint32_t f = get_flags(m);
    uint32_t al = get_r8(m, R_EAX), old_al = al, old_cf = f & F_CF;
    f &= ~(F_ARITH);
    if ((al & 0xF) > 9 || (m->cpu.eflags & F_AF)) {
        al += 6;
        f |= F_AF;
        if (old_cf || al > 0xFF) f |= F_CF;
    }
    if (old_al > 0x99 || old_cf) {
        al += 0x60;
        f |= F_CF;
    }
    al &= 0xFF;
    set_r8(m, R_EAX, (uint8_t)al);
    m->cpu.eflags = f | szp_flags(al, 0);
    next(m, in);
}

void aero_op_das(aero_machine *m, const aero_insn *in) {
    uint32_t f = get_flags(m);
    uint32_t al = get_r8(m, R_EAX), old_al = al, old_cf = f & F_CF;
    f &= ~(F_ARITH);
    if ((al & 0xF) > 9 || (m->cpu.eflags & F_AF)) {
        if (old_cf || al < 6) f |= F_CF;
        al -= 6;
        f |= F_AF;
    }
    if (old_al > 0x99 || old_cf) {
        al -= 0x60;
        f |= F_CF;
    }
    al &= 0xFF;
    set_r8(m, R_EAX, (uint8_t)al);
    m->cpu.eflags = f | szp_flags(al, 0);
    next(m, in);
}

/* AAA/AAS: AX +/- 0x106 as on the i386 and later. */
static void ascii_adjust(aero_machine *m, const aero_insn *in, int sub) {
    uint32_t f = get_flags(m);
    uint32_t ax = get_r16(m, R_EAX);
    f &= ~F_ARITH;
    if ((ax & 0xF) > 9 || (m->cpu.eflags & F_AF)) {
        ax = sub ? ax - 0x106 : ax + 0x106;
        f |= F_AF | F_CF;
    }
    ax &= 0xFF0F;
    set_r16(m, R_EAX, (uint16_t)ax);
    m->cpu.eflags = f | (szp_flags(ax & 0xFF, 0) & ~F_AF);
    next(m, in);
}
void aero_op_aaa(aero_machine *m, const aero_insn *in) { ascii_adjust(m, in, 0); }
void aero_op_aas(aero_machine *m, const aero_insn *in) { ascii_adjust(m, in, 1); }

void aero_op_aam(aero_machine *m, const aero_insn *in) {
    uint32_t base = in->imm & 0xFF;
    if (base == 0) aero_fault(m, EXC_DE, 0, 0);
    uint32_t al = get_r8(m, R_EAX);
    uint32_t ah = al / base;
    al %= base;
    set_r16(m, R_EAX, (uint16_t)(ah << 8 | al));
    m->cpu.eflags = (get_flags(m) & ~F_ARITH) | szp_flags(al, 0);
    next(m, in);
}

void aero_op_aad(aero_machine *m, const aero_insn *in) {
    uint32_t base = in->imm & 0xFF;
    uint32_t al = get_r8(m, R_EAX), ah = get_r8(m, R_EAX + 4);
    uint32_t r = (al + ah * base) & 0xFF;
    set_r16(m, R_EAX, (uint16_t)r);
    m->cpu.eflags = (get_flags(m) & ~F_ARITH) | szp_flags(r, 0);
    next(m, in);
}

/* ---- forms specialised at decode time (fastpath.c) ----
 * 32-bit operand size in 32-bit code: EIP advances without a wrap; the memory forms have
 * 32-bit addressing. The register forms (_r32) have mod = 3, the memory forms (_m32) not.
 * Whatever their fast path cannot finish without a call (a TLB miss, a segment check that
 * needs the slow path, a carry that needs aero_lazy_cf) goes to the generic handler before
 * anything has changed, so the fast path saves no registers. */
/* One of the eight operations, 32 bits, with the carry-in c (ADC/SBB only); the lazy flags
 * set unless FLAGS is 0 (a prefix form whose flags are dead). */
AERO_INLINE uint32_t alu32(aero_machine *m, const int op, const int flags, uint32_t a, uint32_t b,
                           uint32_t c) {
    uint32_t r, lf;
    switch (op) {
    case OP_ADD: r = a + b; lf = LF_ADD; break;
    case OP_OR: r = a | b; lf = LF_LOGIC; break;
    case OP_ADC: r = a + b + c; lf = c ? LF_ADC : LF_ADD; break;
    case OP_SBB: r = a - b - c; lf = c ? LF_SBB : LF_SUB; break;
    case OP_AND: r = a & b; lf = LF_LOGIC; break;
    case OP_SUB: case OP_CMP: r = a - b; lf = LF_SUB; break;
    default: r = a ^ b; lf = LF_LOGIC; break;
    }
    if (flags) set_lazy(m, lf, 2, a, b, r);
    return r;
}
/* The carry-in of ADC/SBB (0 for the others); 0 when it needs the generic handler. */
#define CARRY_IN(OP, c) ((OP) != OP_ADC && (OP) != OP_SBB ? ((c) = 0, 1) : fast_cf(m, &(c)))
/* A register form: register d op b into register d (not for CMP); 0 for the generic handler. */
AERO_INLINE int alu_r32(aero_machine *m, const int op, const int flags, const uint32_t d, uint32_t b) {
    uint32_t c;
    if (!CARRY_IN(op, c)) return 0;
    uint32_t r = alu32(m, op, flags, m->cpu.r[d], b, c);
    if (op != OP_CMP) m->cpu.r[d] = r;
    return 1;
}
/* The register operands are read into locals before any store, which may alias *in. */
#define ALU_REG_BODIES(name, OP, F)                                                               \
    AERO_INLINE int name##_EvGv_r32_body##F(aero_machine *m, const aero_insn *in) {               \
        const uint32_t d = in->rm, s = in->reg;                                                   \
        return alu_r32(m, OP, F, d, m->cpu.r[s]);                                                 \
    }                                                                                             \
    AERO_INLINE int name##_GvEv_r32_body##F(aero_machine *m, const aero_insn *in) {               \
        const uint32_t d = in->reg, s = in->rm;                                                   \
        return alu_r32(m, OP, F, d, m->cpu.r[s]);                                                 \
    }                                                                                             \
    AERO_INLINE int name##_EvI_r32_body##F(aero_machine *m, const aero_insn *in) {                \
        const uint32_t d = in->rm, imm = in->imm;                                                 \
        return alu_r32(m, OP, F, d, imm);                                                         \
    }                                                                                             \
    AERO_INLINE int name##_eAXIz_32_body##F(aero_machine *m, const aero_insn *in) {               \
        return alu_r32(m, OP, F, R_EAX, in->imm);                                                 \
    }
/* The memory forms: a TLB miss, a segment slow path or a carry that needs aero_lazy_cf goes
 * to the generic handler before anything has changed, so the fast path saves no registers. */
#define ALU_MEM_BODIES(name, OP)                                                                  \
    AERO_INLINE int name##_GvEv_m32_body(aero_machine *m, const aero_insn *in) {                  \
        uint32_t c;                                                                               \
        const uint8_t *p = fast_rd_ptr(m, in->seg, ea32(m, in), 4);                               \
        if (!p || !CARRY_IN(OP, c)) return 0;                                                     \
        const uint32_t d = in->reg;                                                               \
        uint32_t r = alu32(m, OP, 1, m->cpu.r[d], load_le(p, 4), c);                              \
        if (OP != OP_CMP) m->cpu.r[d] = r;                                                        \
        return 1;                                                                                 \
    }                                                                                             \
    AERO_INLINE int name##_EvGv_m32_body(aero_machine *m, const aero_insn *in) {                  \
        uint32_t c;                                                                               \
        uint8_t *p = OP == OP_CMP ? fast_rd_ptr(m, in->seg, ea32(m, in), 4)                       \
                                  : fast_rw_ptr(m, in->seg, ea32(m, in), 4);                      \
        if (!p || !CARRY_IN(OP, c)) return 0;                                                     \
        uint32_t r = alu32(m, OP, 1, load_le(p, 4), m->cpu.r[in->reg], c);                        \
        if (OP != OP_CMP) store_le(p, 4, r);                                                      \
        return 1;                                                                                 \
    }                                                                                             \
    AERO_INLINE int name##_EvI_m32_body(aero_machine *m, const aero_insn *in) {                   \
        uint32_t c;                                                                               \
        uint8_t *p = OP == OP_CMP ? fast_rd_ptr(m, in->seg, ea32(m, in), 4)                       \
                                  : fast_rw_ptr(m, in->seg, ea32(m, in), 4);                      \
        if (!p || !CARRY_IN(OP, c)) return 0;                                                     \
        uint32_t r = alu32(m, OP, 1, load_le(p, 4), in->imm, c);                                  \
        if (OP != OP_CMP) store_le(p, 4, r);                                                      \
        return 1;                                                                                 \
    }

/* Every form in its three variants (DEF_FORMS); the register forms also without flags
 * (_nf_de, _nf_dl). The immediate forms take both 81 and 83 (the decoder sign-extended
 * the imm8). */
#define DEF_ALU_FAST(name, OP)                                                                    \
    ALU_REG_BODIES(name, OP, 1)                                                                   \
    ALU_REG_BODIES(name, OP, 0)                                                                   \
    ALU_MEM_BODIES(name, OP)                                                                      \
    DEF_FORMS(name##_EvGv_r32, aero_op_##name##_EvGv, name##_EvGv_r32_body1)                      \
    DEF_FORMS(name##_GvEv_r32, aero_op_##name##_GvEv, name##_GvEv_r32_body1)                      \
    DEF_FORMS(name##_EvI_r32, aero_op_##name##_EvIz, name##_EvI_r32_body1)                        \
    DEF_FORMS(name##_eAXIz_32, aero_op_##name##_eAXIz, name##_eAXIz_32_body1)                     \
    DEF_PREFIX_FORMS(name##_EvGv_r32_nf, aero_op_##name##_EvGv, name##_EvGv_r32_body0)            \
    DEF_PREFIX_FORMS(name##_GvEv_r32_nf, aero_op_##name##_GvEv, name##_GvEv_r32_body0)            \
    DEF_PREFIX_FORMS(name##_EvI_r32_nf, aero_op_##name##_EvIz, name##_EvI_r32_body0)              \
    DEF_PREFIX_FORMS(name##_eAXIz_32_nf, aero_op_##name##_eAXIz, name##_eAXIz_32_body0)           \
    DEF_FORMS(name##_GvEv_m32, aero_op_##name##_GvEv, name##_GvEv_m32_body)                       \
    DEF_FORMS(name##_EvGv_m32, aero_op_##name##_EvGv, name##_EvGv_m32_body)                       \
    DEF_FORMS(name##_EvI_m32, aero_op_##name##_EvIz, name##_EvI_m32_body)

DEF_ALU_FAST(add, OP_ADD)
DEF_ALU_FAST(or, OP_OR)
DEF_ALU_FAST(adc, OP_ADC)
DEF_ALU_FAST(sbb, OP_SBB)
DEF_ALU_FAST(and, OP_AND)
DEF_ALU_FAST(sub, OP_SUB)
DEF_ALU_FAST(xor, OP_XOR)
DEF_ALU_FAST(cmp, OP_CMP)

AERO_INLINE int test_r32_body(aero_machine *m, const aero_insn *in, const int flags) {
    if (flags) test_op(m, m->cpu.r[in->rm], m->cpu.r[in->reg], 4);
    return 1;
}
/* INC/DEC keep CF: its value goes into the lazy state (lf_b). */
AERO_INLINE int incdec_r32_body(aero_machine *m, const aero_insn *in, const int dec, const int flags) {
    const uint32_t d = in->reg;
    uint32_t cf = 0, a = m->cpu.r[d], r = dec ? a - 1 : a + 1;
    if (flags) {
        if (!fast_cf(m, &cf)) return 0;
        set_lazy(m, dec ? LF_DEC : LF_INC, 2, a, cf, r);
    }
    m->cpu.r[d] = r;
    return 1;
}
#define TEST_BODY(F) AERO_INLINE int test_body##F(aero_machine *m, const aero_insn *in) { return test_r32_body(m, in, F); }
#define INC_BODY(F) AERO_INLINE int inc_body##F(aero_machine *m, const aero_insn *in) { return incdec_r32_body(m, in, 0, F); }
#define DEC_BODY(F) AERO_INLINE int dec_body##F(aero_machine *m, const aero_insn *in) { return incdec_r32_body(m, in, 1, F); }
TEST_BODY(1) TEST_BODY(0) INC_BODY(1) INC_BODY(0) DEC_BODY(1) DEC_BODY(0)
DEF_FORMS(test_EvGv_r32, aero_op_test_EvGv, test_body1)
DEF_FORMS(inc_Zv_32, aero_op_inc_Zv, inc_body1)
DEF_FORMS(dec_Zv_32, aero_op_dec_Zv, dec_body1)
DEF_PREFIX_FORMS(test_EvGv_r32_nf, aero_op_test_EvGv, test_body0)
DEF_PREFIX_FORMS(inc_Zv_32_nf, aero_op_inc_Zv, inc_body0)
DEF_PREFIX_FORMS(dec_Zv_32_nf, aero_op_dec_Zv, dec_body0)
