/* aero core: lazy arithmetic flags and condition evaluation.
 *
 * Flag-setting ALU operations record (kind, size, a, b, result); the six arithmetic flags
 * are computed only when something reads them. INC/DEC keep the previous CF (recorded
 * in lf_b); ADC/SBB with carry-in 0 are recorded as ADD/SUB.
 */
#include "cpu.h"

#define P4(n) n, n ^ 4, n ^ 4, n
#define P16(n) P4(n), P4(n ^ 4), P4(n ^ 4), P4(n)
#define P64(n) P16(n), P16(n ^ 4), P16(n ^ 4), P16(n)
/* PF for every byte value: 4 when the number of set bits is even. */
const uint8_t aero_parity[256] = {P64(4), P64(0), P64(0), P64(4)};

static const uint32_t size_mask[3] = {0xFFu, 0xFFFFu, 0xFFFFFFFFu};
static const uint32_t size_sign[3] = {0x80u, 0x8000u, 0x80000000u};

uint32_t aero_flags_compute(aero_machine *m) {
    const aero_cpu *c = &m->cpu;
    uint32_t mask = size_mask[c->lf_size], sign = size_sign[c->lf_size];
    uint32_t a = c->lf_a & mask, b = c->lf_b & mask, r = c->lf_res & mask;
    uint32_t f = szp_flags(r, (int)c->lf_size);
    switch (c->lf_op) {
    case LF_ADD:
        if (r < a) f |= F_CF;
        if ((a ^ r) & (b ^ r) & sign) f |= F_OF;
        f |= (a ^ b ^ r) & F_AF;
        break;
    case LF_ADC:
        if (r < a || (r == a)) f |= F_CF; /* with carry-in 1, r == a means b + 1 wrapped */
        if ((a ^ r) & (b ^ r) & sign) f |= F_OF;
        f |= (a ^ b ^ r) & F_AF;
        break;
    case LF_SUB:
        if (a < b) f |= F_CF;
        if ((a ^ b) & (a ^ r) & sign) f |= F_OF;
        f |= (a ^ b ^ r) & F_AF;
        break;
    case LF_SBB:
        if (a < b || (a == b)) f |= F_CF; /* a - b - 1 borrows when a <= b */
        if ((a ^ b) & (a ^ r) & sign) f |= F_OF;
        f |= (a ^ b ^ r) & F_AF;
        break;
    case LF_LOGIC:
        break;
    case LF_INC:
        f |= c->lf_b & F_CF;
        if (r == sign) f |= F_OF;
        if ((r & 0xF) == 0) f |= F_AF;
        break;
    case LF_DEC:
        f |= c->lf_b & F_CF;
        if (r == sign - 1) f |= F_OF;
        if ((r & 0xF) == 0xF) f |= F_AF;
        break;
    default:
        return c->eflags & F_ARITH;
    }
    return f;
}

uint32_t aero_lazy_cf(const aero_machine *m) {
    const aero_cpu *c = &m->cpu;
    uint32_t mask = size_mask[c->lf_size];
    uint32_t a = c->lf_a & mask, b = c->lf_b & mask, r = c->lf_res & mask;
    switch (c->lf_op) {
    case LF_ADD: return r < a;
    case LF_ADC: return r <= a;
    case LF_SUB: return a < b;
    case LF_SBB: return a <= b;
    case LF_INC: case LF_DEC: return c->lf_b & F_CF;
    default: return 0;
    }
}

/* Evaluate condition code cc (0-15, the low nibble of Jcc/SETcc/CMOVcc). */
int aero_cond(aero_machine *m, int cc) {
    const aero_cpu *c = &m->cpu;
    /* Fast paths: ZF and CF straight from the lazy state of the common operations. */
    if (c->lf_op != LF_NONE) {
        uint32_t mask = size_mask[c->lf_size];
        if ((cc >> 1) == 2) return ((c->lf_res & mask) == 0) ^ (cc & 1);
        if ((cc >> 1) == 1 && c->lf_op == LF_SUB)
            return ((c->lf_a & mask) < (c->lf_b & mask)) ^ (cc & 1);
    }
    uint32_t f = get_flags(m);
    int r;
    switch (cc >> 1) {
    case 0: r = (f & F_OF) != 0; break;
    case 1: r = (f & F_CF) != 0; break;
    case 2: r = (f & F_ZF) != 0; break;
    case 3: r = (f & (F_CF | F_ZF)) != 0; break;
    case 4: r = (f & F_SF) != 0; break;
    case 5: r = (f & F_PF) != 0; break;
    case 6: r = ((f & F_SF) != 0) != ((f & F_OF) != 0); break;
    default: r = (f & F_ZF) || (((f & F_SF) != 0) != ((f & F_OF) != 0)); break;
    }
    return r ^ (cc & 1);
}
