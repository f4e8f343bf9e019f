/* aero core: software 80-bit floating point (see softfloat.h). Integer arithmetic only. */
#include "softfloat.h"

#define EXP_MAX 0x7FFF
#define BIAS 16383
#define WRAP 24576 /* exponent adjustment of unmasked overflow / underflow results */

static int clz64(uint64_t v) { return v ? __builtin_clzll(v) : 64; }
static int clz128(sf_u128 v) {
    uint64_t hi = (uint64_t)(v >> 64);
    return hi ? clz64(hi) : 64 + clz64((uint64_t)v);
}
/* Shift right, ORing every bit shifted out into bit 0 (sticky). */
static sf_u128 shr_jam128(sf_u128 v, int n) {
    if (n <= 0) return v;
    if (n >= 128) return v != 0;
    return (v >> n) | ((v & (((sf_u128)1 << n) - 1)) != 0);
}

int aero_sf_class(sf80 a) {
    uint32_t e = a.se & EXP_MAX;
    int j = (int)(a.sig >> 63);
    if (e == 0) return a.sig == 0 ? SFC_ZERO : SFC_DENORMAL;
    if (e == EXP_MAX) {
        if (!j) return SFC_UNSUPPORTED;
        if ((a.sig << 1) == 0) return SFC_INF;
        return (a.sig >> 62) & 1 ? SFC_QNAN : SFC_SNAN;
    }
    return j ? SFC_NORMAL : SFC_UNSUPPORTED;
}

void aero_sf_unpack(sf80 a, int32_t *exp, uint64_t *sig) {
    int32_t e = a.se & EXP_MAX;
    if (e == 0) e = 1; /* denormals and pseudo-denormals: 2^(1 - bias) */
    int s = clz64(a.sig);
    *sig = a.sig << s;
    *exp = e - s;
}

static sf80 inf(int sign) { return sf_make((uint16_t)((sign << 15) | EXP_MAX), 0x8000000000000000ull); }
static sf80 zero(int sign) { return sf_make((uint16_t)(sign << 15), 0); }

sf80 aero_sf_propagate_nan(sf_env *env, sf80 a, sf80 b) {
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    int an = ca == SFC_QNAN || ca == SFC_SNAN, bn = cb == SFC_QNAN || cb == SFC_SNAN;
    if (ca == SFC_SNAN || cb == SFC_SNAN) env->flags |= SF_IE;
    const uint64_t q = 0x4000000000000000ull;
    sf80 r;
    if (an && bn) {
        if (ca == SFC_QNAN && cb == SFC_SNAN) r = a;
        else if (cb == SFC_QNAN && ca == SFC_SNAN) r = b;
        else if ((a.sig | q) != (b.sig | q)) r = (a.sig | q) > (b.sig | q) ? a : b;
        else r = sf_sign(a) ? b : a; /* equal significands: the positive one */
    } else {
        r = an ? a : b;
    }
    r.sig |= q;
    return r;
}

/* Invalid operation: IE and the QNaN indefinite. */
static sf80 invalid(sf_env *env) {
    env->flags |= SF_IE;
    return sf_indefinite();
}

/* Operand screening common to the arithmetic operations: unsupported encodings and NaNs
 * give their result (returns 1); denormal operands raise DE. */
static int screen2(sf_env *env, sf80 a, sf80 b, sf80 *out) {
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    if (ca == SFC_UNSUPPORTED || cb == SFC_UNSUPPORTED) { *out = invalid(env); return 1; }
    if (ca == SFC_QNAN || ca == SFC_SNAN || cb == SFC_QNAN || cb == SFC_SNAN) {
        *out = aero_sf_propagate_nan(env, a, b);
        return 1;
    }
    if (ca == SFC_DENORMAL || cb == SFC_DENORMAL) env->flags |= SF_DE;
    return 0;
}

/* ---- rounding ---- */

/* Round the 128-bit significand v (bit 127 = integer position when normal) at `prec` bits
 * in env->rc; sets PE / C1. Returns the rounded value; *carry = 1 when it overflowed to
 * 2^128 (then the returned value is 2^127 and the exponent must grow). */
static sf_u128 round_sig(sf_env *env, int sign, sf_u128 v, int prec, int *carry, int *inexact) {
    int drop = 128 - prec;
    sf_u128 lsb = (sf_u128)1 << drop, half = lsb >> 1, rem = v & (lsb - 1);
    int inc = 0;
    *carry = 0;
    *inexact = rem != 0;
    if (rem) {
        switch (env->rc) {
        case SF_RN: inc = rem > half || (rem == half && (v & lsb)); break;
        case SF_RD: inc = sign; break;
        case SF_RU: inc = !sign; break;
        default: inc = 0; break;
        }
    }
    v -= rem;
    if (inc) {
        env->flags |= SF_C1;
        v += lsb;
        if (v == 0) { *carry = 1; v = (sf_u128)1 << 127; }
    }
    return v;
}

/* Generic rounding to a format with `prec` significand bits, exponent bias `bias` and
 * largest biased exponent emax (the all-ones one excluded). wrap: the unmasked
 * overflow/underflow exponent adjustment (0: none, the caller stores nothing). On return
 * *oexp is the packed biased exponent (0 for denormals and zero) and the result's
 * significand is in the top `prec` bits of the returned value (integer bit at 127). */
static sf_u128 round_format(sf_env *env, int sign, int32_t exp, sf_u128 v, int prec, int32_t emax,
                            int32_t wrap, int32_t *oexp) {
    int carry, inexact;
    if (v == 0) { *oexp = 0; return 0; }
    int s = clz128(v);
    v <<= s;
    exp -= s;
    if (exp <= 0) {
        if (!(env->masks & SF_UE)) {
            env->flags |= SF_UE;
            if (!wrap) { *oexp = 0; return 0; }
            exp += wrap;
        }
        if (exp <= 0) {
            /* Masked (tininess is detected before rounding), or still tiny after the wrap
             * (FSCALE by a huge amount): denormalize, then round. */
            v = shr_jam128(v, 1 - exp);
            v = round_sig(env, sign, v, prec, &carry, &inexact);
            if (carry) v = (sf_u128)1 << 127; /* cannot happen below 2^127 */
            if (inexact) env->flags |= SF_UE | SF_PE;
            *oexp = (v >> 127) ? 1 : 0;
            return v;
        }
    }
    v = round_sig(env, sign, v, prec, &carry, &inexact);
    if (carry) exp++;
    if (inexact) env->flags |= SF_PE;
    if (exp > emax) {
        if (!(env->masks & SF_OE)) {
            env->flags |= SF_OE;
            if (!wrap) { *oexp = 0; return 0; }
            exp -= wrap;
        }
        if (exp > emax) { /* masked, or still too large after the wrap: infinity or max */
            env->flags |= SF_OE | SF_PE;
            int to_inf = env->rc == SF_RN || (env->rc == SF_RU && !sign) || (env->rc == SF_RD && sign);
            if (to_inf) {
                env->flags |= SF_C1;
                *oexp = emax + 1;
                return (sf_u128)1 << 127;
            }
            env->flags &= ~SF_C1;
            *oexp = emax;
            return ~(sf_u128)0 << (128 - prec);
        }
    }
    *oexp = exp;
    return v;
}

sf80 aero_sf_round_pack(sf_env *env, int sign, int32_t exp, uint64_t sig0, uint64_t sig1) {
    sf_u128 v = ((sf_u128)sig0 << 64) | sig1;
    int32_t e;
    v = round_format(env, sign, exp, v, (int)env->prec, EXP_MAX - 1, WRAP, &e);
    return sf_make((uint16_t)((sign << 15) | (e & EXP_MAX)), (uint64_t)(v >> 64));
}

/* Round a 128-bit significand with its integer bit at 127 (value = v / 2^127 x 2^(exp - bias)). */
static sf80 pack128(sf_env *env, int sign, int32_t exp, sf_u128 v) {
    return aero_sf_round_pack(env, sign, exp, (uint64_t)(v >> 64), (uint64_t)v);
}

/* ---- arithmetic ---- */

static sf80 add_sub(sf_env *env, sf80 a, sf80 b, int negate) {
    sf80 r;
    if (screen2(env, a, b, &r)) return r;
    int sa = sf_sign(a), sb = sf_sign(b) ^ negate;
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    if (ca == SFC_INF || cb == SFC_INF) {
        if (ca == SFC_INF && cb == SFC_INF && sa != sb) return invalid(env);
        return ca == SFC_INF ? inf(sa) : inf(sb);
    }
    if (ca == SFC_ZERO && cb == SFC_ZERO) {
        if (sa == sb) return zero(sa);
        return zero(env->rc == SF_RD);
    }
    int32_t ea, eb;
    uint64_t ma, mb;
    if (cb == SFC_ZERO) { aero_sf_unpack(a, &ea, &ma); return pack128(env, sa, ea, (sf_u128)ma << 64); }
    if (ca == SFC_ZERO) { aero_sf_unpack(b, &eb, &mb); return pack128(env, sb, eb, (sf_u128)mb << 64); }
    aero_sf_unpack(a, &ea, &ma);
    aero_sf_unpack(b, &eb, &mb);
    /* Two free bits on top, 62 guard bits below: value = A x 2^(e + 2 - bias - 127). */
    sf_u128 A = (sf_u128)ma << 62, B = (sf_u128)mb << 62;
    int32_t e;
    if (ea >= eb) { e = ea; B = shr_jam128(B, ea - eb); }
    else { e = eb; A = shr_jam128(A, eb - ea); }
    sf_u128 S;
    int sign;
    if (sa == sb) {
        S = A + B;
        sign = sa;
    } else if (A >= B) {
        S = A - B;
        sign = sa;
    } else {
        S = B - A;
        sign = sb;
    }
    if (S == 0) return zero(env->rc == SF_RD);
    return pack128(env, sign, e + 2, S);
}

sf80 aero_sf_add(sf_env *env, sf80 a, sf80 b) { return add_sub(env, a, b, 0); }
sf80 aero_sf_sub(sf_env *env, sf80 a, sf80 b) { return add_sub(env, a, b, 1); }

sf80 aero_sf_mul(sf_env *env, sf80 a, sf80 b) {
    sf80 r;
    if (screen2(env, a, b, &r)) return r;
    int sign = sf_sign(a) ^ sf_sign(b);
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    if (ca == SFC_INF || cb == SFC_INF) {
        if (ca == SFC_ZERO || cb == SFC_ZERO) return invalid(env);
        return inf(sign);
    }
    if (ca == SFC_ZERO || cb == SFC_ZERO) return zero(sign);
    int32_t ea, eb;
    uint64_t ma, mb;
    aero_sf_unpack(a, &ea, &ma);
    aero_sf_unpack(b, &eb, &mb);
    sf_u128 P = (sf_u128)ma * mb; /* value = P x 2^(ea + eb - 2 bias - 126) */
    return pack128(env, sign, ea + eb - BIAS + 1, P);
}

sf80 aero_sf_div(sf_env *env, sf80 a, sf80 b) {
    sf80 r;
    if (screen2(env, a, b, &r)) return r;
    int sign = sf_sign(a) ^ sf_sign(b);
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    if (ca == SFC_INF) return cb == SFC_INF ? invalid(env) : inf(sign);
    if (cb == SFC_INF) return zero(sign);
    if (cb == SFC_ZERO) {
        if (ca == SFC_ZERO) return invalid(env);
        env->flags |= SF_ZE;
        return inf(sign);
    }
    if (ca == SFC_ZERO) return zero(sign);
    int32_t ea, eb;
    uint64_t ma, mb;
    aero_sf_unpack(a, &ea, &ma);
    aero_sf_unpack(b, &eb, &mb);
    sf_u128 N = (sf_u128)ma << 64;
    sf_u128 Q = N / mb, R = N % mb; /* Q in [2^63, 2^65) */
    for (int i = 0; i < 2; i++) { /* two more quotient bits: Q ~ ma/mb x 2^66 */
        R <<= 1;
        Q <<= 1;
        if (R >= mb) { R -= mb; Q |= 1; }
    }
    int s = clz128(Q);
    sf_u128 V = (Q << s) | (R != 0);
    return pack128(env, sign, ea - eb + BIAS + 61 - s, V);
}

/* Integer square root of a 128-bit value: floor root and remainder. */
static uint64_t isqrt128(sf_u128 x, sf_u128 *rem) {
    uint64_t r = 0;
    for (int i = 63; i >= 0; i--) {
        uint64_t t = r | (1ull << i);
        if ((sf_u128)t * t <= x) r = t;
    }
    *rem = x - (sf_u128)r * r;
    return r;
}

sf80 aero_sf_sqrt(sf_env *env, sf80 a) {
    int c = aero_sf_class(a);
    if (c == SFC_UNSUPPORTED) return invalid(env);
    if (c == SFC_QNAN || c == SFC_SNAN) return aero_sf_propagate_nan(env, a, a);
    if (c == SFC_ZERO) return a;
    if (sf_sign(a)) return invalid(env);
    if (c == SFC_INF) return a;
    if (c == SFC_DENORMAL) env->flags |= SF_DE;
    int32_t ea;
    uint64_t ma;
    aero_sf_unpack(a, &ea, &ma);
    int32_t E = ea - BIAS;
    int odd = E & 1;
    sf_u128 X = (sf_u128)ma << (odd ? 64 : 63);
    sf_u128 rem;
    uint64_t root = isqrt128(X, &rem);
    int32_t k = odd ? (E - 127) / 2 : (E - 126) / 2; /* both exact */
    sf_u128 V = ((sf_u128)root << 64) | (rem > root ? 0x8000000000000000ull : 0) | (rem != 0);
    return pack128(env, 0, k + 63 + BIAS, V);
}

sf80 aero_sf_round_int(sf_env *env, sf80 a) {
    int c = aero_sf_class(a);
    if (c == SFC_UNSUPPORTED) return invalid(env);
    if (c == SFC_QNAN || c == SFC_SNAN) return aero_sf_propagate_nan(env, a, a);
    if (c == SFC_ZERO || c == SFC_INF) return a;
    if (c == SFC_DENORMAL) env->flags |= SF_DE;
    int32_t e;
    uint64_t m;
    aero_sf_unpack(a, &e, &m);
    int32_t E = e - BIAS;
    if (E >= 63) return a;
    int sign = sf_sign(a);
    sf_u128 X = shr_jam128((sf_u128)m << 64, 63 - E); /* integer part in the high half */
    uint64_t ip = (uint64_t)(X >> 64), frac = (uint64_t)X;
    if (frac) {
        env->flags |= SF_PE;
        int inc = 0;
        switch (env->rc) {
        case SF_RN: inc = frac > 0x8000000000000000ull || (frac == 0x8000000000000000ull && (ip & 1)); break;
        case SF_RD: inc = sign; break;
        case SF_RU: inc = !sign; break;
        default: break;
        }
        if (inc) { ip++; env->flags |= SF_C1; }
    }
    if (ip == 0) return zero(sign);
    int s = clz64(ip);
    return sf_make((uint16_t)((sign << 15) | (BIAS + 63 - s)), ip << s);
}

sf80 aero_sf_scale(sf_env *env, sf80 a, sf80 b) {
    sf80 r;
    if (screen2(env, a, b, &r)) return r;
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    if (cb == SFC_INF) {
        if (sf_sign(b)) {
            if (ca == SFC_INF) return invalid(env);
            return zero(sf_sign(a));
        }
        if (ca == SFC_ZERO) return invalid(env);
        return inf(sf_sign(a));
    }
    if (ca == SFC_ZERO || ca == SFC_INF) return a;
    /* n = trunc(b), clamped: anything beyond +-2^17 overflows or underflows anyway. */
    int32_t n = 0;
    if (cb != SFC_ZERO) {
        int32_t eb;
        uint64_t mb;
        aero_sf_unpack(b, &eb, &mb);
        int32_t E = eb - BIAS;
        if (E > 16) n = 1 << 17;
        else if (E >= 0) n = (int32_t)(mb >> (63 - E));
        if (sf_sign(b)) n = -n;
    }
    int32_t ea;
    uint64_t ma;
    aero_sf_unpack(a, &ea, &ma);
    sf_env e2 = *env;
    e2.prec = 64;
    r = pack128(&e2, sf_sign(a), ea + n, (sf_u128)ma << 64);
    env->flags = e2.flags;
    return r;
}

sf80 aero_sf_rem(sf_env *env, sf80 a, sf80 b, int ieee, uint32_t *cc) {
    sf80 r;
    *cc = 0;
    if (screen2(env, a, b, &r)) return r;
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    if (ca == SFC_INF || cb == SFC_ZERO) return invalid(env);
    if (cb == SFC_INF || ca == SFC_ZERO) return a;
    int sign = sf_sign(a);
    int32_t ea, eb;
    uint64_t ma, mb;
    aero_sf_unpack(a, &ea, &ma);
    aero_sf_unpack(b, &eb, &mb);
    int32_t d = ea - eb;
    uint64_t q = 0;
    sf_u128 rem;
    int32_t rexp; /* value of rem = rem x 2^(rexp - bias - 127) */
    if (d >= 64) {
        /* Partial remainder: reduce the exponent difference by a multiple of 32, leaving
         * between 32 and 63 (the SDM's implementation-defined N). */
        int32_t n = 32 + ((d - 32) % 32);
        sf_u128 A = (sf_u128)ma << n;
        q = (uint64_t)(A / mb);
        rem = A % mb;
        rexp = ea - n + 64; /* rem x 2^(ea - n - bias - 63) */
        *cc = 0x400; /* C2: incomplete */
        if (rem == 0) return zero(sign);
        sf_env e2 = *env;
        e2.prec = 64;
        r = pack128(&e2, sign, rexp, rem);
        env->flags = e2.flags & ~SF_C1;
        return r;
    }
    if (d < -1 || (d == -1 && !ieee)) {
        q = 0;
        rem = (sf_u128)ma;
        rexp = ea + 64;
    } else {
        /* Common scale 2^(eb - 1 - bias - 63): A = ma << (d + 1), B = mb << 1. */
        sf_u128 A = (sf_u128)ma << (d + 1), B = (sf_u128)mb << 1;
        sf_u128 Q = A / B;
        rem = A % B;
        if (ieee && (2 * rem > B || (2 * rem == B && (Q & 1)))) {
            Q++;
            rem = B - rem;
            sign ^= 1;
        }
        q = (uint64_t)Q;
        rexp = eb - 1 + 64;
    }
    /* Quotient bits: Q2 -> C0, Q1 -> C3, Q0 -> C1. */
    *cc |= ((q >> 2) & 1 ? 0x100u : 0) | ((q >> 1) & 1 ? 0x4000u : 0) | ((q & 1) ? 0x200u : 0);
    if (rem == 0) return zero(sf_sign(a)); /* an exact remainder has the dividend's sign */
    /* The remainder is exact; only a denormal result can lose bits (masked underflow). */
    sf_env e2 = *env;
    e2.prec = 64;
    r = pack128(&e2, sign, rexp, rem);
    env->flags = e2.flags & ~SF_C1;
    return r;
}

int aero_sf_compare(sf_env *env, sf80 a, sf80 b, int quiet) {
    int ca = aero_sf_class(a), cb = aero_sf_class(b);
    if (ca == SFC_UNSUPPORTED || cb == SFC_UNSUPPORTED) { env->flags |= SF_IE; return 2; }
    if (ca == SFC_QNAN || ca == SFC_SNAN || cb == SFC_QNAN || cb == SFC_SNAN) {
        if (!quiet || ca == SFC_SNAN || cb == SFC_SNAN) env->flags |= SF_IE;
        return 2;
    }
    if (ca == SFC_DENORMAL || cb == SFC_DENORMAL) env->flags |= SF_DE;
    if (ca == SFC_ZERO && cb == SFC_ZERO) return 0;
    int sa = sf_sign(a), sb = sf_sign(b);
    if (ca == SFC_ZERO) return sb ? 1 : -1;
    if (cb == SFC_ZERO) return sa ? -1 : 1;
    if (sa != sb) return sa ? -1 : 1;
    int32_t ea, eb;
    uint64_t ma, mb;
    if (ca == SFC_INF) { ea = 0x10000; ma = 0; } else aero_sf_unpack(a, &ea, &ma);
    if (cb == SFC_INF) { eb = 0x10000; mb = 0; } else aero_sf_unpack(b, &eb, &mb);
    int mag = ea != eb ? (ea > eb ? 1 : -1) : ma != mb ? (ma > mb ? 1 : -1) : 0;
    return sa ? -mag : mag;
}

/* ---- conversions ---- */

sf80 aero_sf_from_i64(int64_t v) {
    if (v == 0) return zero(0);
    int sign = v < 0;
    uint64_t m = sign ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int s = clz64(m);
    return sf_make((uint16_t)((sign << 15) | (BIAS + 63 - s)), m << s);
}

/* Round a to an integer magnitude in env->rc. Returns 0 and *mag, or -1 when it does not
 * fit below 2^64. */
static int to_uint_mag(sf_env *env, sf80 a, uint64_t *mag) {
    int32_t e;
    uint64_t m;
    aero_sf_unpack(a, &e, &m);
    int32_t E = e - BIAS;
    if (E > 63) return -1;
    int sign = sf_sign(a);
    sf_u128 X = shr_jam128((sf_u128)m << 64, 63 - E);
    uint64_t ip = (uint64_t)(X >> 64), frac = (uint64_t)X;
    int inc = 0;
    if (frac) {
        switch (env->rc) {
        case SF_RN: inc = frac > 0x8000000000000000ull || (frac == 0x8000000000000000ull && (ip & 1)); break;
        case SF_RD: inc = sign; break;
        case SF_RU: inc = !sign; break;
        default: break;
        }
    }
    if (inc && ip == UINT64_MAX) return -1;
    *mag = ip + (uint64_t)inc;
    if (frac) env->flags |= SF_PE | (inc ? SF_C1 : 0);
    return 0;
}

int64_t aero_sf_to_int(sf_env *env, sf80 a, int bits) {
    const int64_t indefinite = (int64_t)((uint64_t)1 << (bits - 1)) * -1;
    int c = aero_sf_class(a);
    if (c == SFC_UNSUPPORTED || c == SFC_QNAN || c == SFC_SNAN || c == SFC_INF) {
        env->flags |= SF_IE;
        return indefinite;
    }
    if (c == SFC_ZERO) return 0; /* FIST raises no denormal exception (SDM: #IS, #IA, #P) */
    sf_env e2 = *env;
    uint64_t mag;
    uint64_t limit = (uint64_t)1 << (bits - 1); /* |negative| may reach it, positive not */
    if (to_uint_mag(&e2, a, &mag) != 0 || mag > limit || (mag == limit && !sf_sign(a))) {
        env->flags |= SF_IE;
        return indefinite;
    }
    env->flags = e2.flags;
    return sf_sign(a) ? (int64_t)(0 - mag) : (int64_t)mag;
}

/* Load a binary interchange format: fbits fraction bits, ebits exponent bits. */
static sf80 from_ieee(sf_env *env, uint64_t v, int fbits, int ebits) {
    int sign = (int)(v >> (fbits + ebits)) & 1;
    int32_t emax = (1 << ebits) - 1, bias = (1 << (ebits - 1)) - 1;
    int32_t e = (int32_t)((v >> fbits) & (uint64_t)emax);
    uint64_t f = v & (((uint64_t)1 << fbits) - 1);
    if (e == emax) {
        if (f == 0) return inf(sign);
        sf80 r = sf_make((uint16_t)((sign << 15) | EXP_MAX), 0x8000000000000000ull | (f << (63 - fbits)));
        if (!((f >> (fbits - 1)) & 1)) { env->flags |= SF_IE; r.sig |= 0x4000000000000000ull; }
        return r;
    }
    if (e == 0) {
        if (f == 0) return zero(sign);
        env->flags |= SF_DE;
        int s = clz64(f);
        /* value = f x 2^(1 - bias - fbits) */
        return sf_make((uint16_t)((sign << 15) | (1 - bias - fbits + BIAS + 63 - s)), f << s);
    }
    return sf_make((uint16_t)((sign << 15) | (e - bias + BIAS)),
                   0x8000000000000000ull | (f << (63 - fbits)));
}

sf80 aero_sf_from_f32(sf_env *env, uint32_t v) { return from_ieee(env, v, 23, 8); }
sf80 aero_sf_from_f64(sf_env *env, uint64_t v) { return from_ieee(env, v, 52, 11); }

static uint64_t to_ieee(sf_env *env, sf80 a, int fbits, int ebits) {
    int sign = sf_sign(a);
    uint64_t emax = ((uint64_t)1 << ebits) - 1;
    int32_t bias = (1 << (ebits - 1)) - 1;
    uint64_t sbit = (uint64_t)sign << (fbits + ebits);
    int c = aero_sf_class(a);
    switch (c) {
    case SFC_UNSUPPORTED:
        env->flags |= SF_IE;
        return ((uint64_t)1 << (fbits + ebits)) | (emax << fbits) | ((uint64_t)1 << (fbits - 1));
    case SFC_SNAN:
        env->flags |= SF_IE;
        /* fall through */
    case SFC_QNAN:
        return sbit | (emax << fbits) | ((uint64_t)1 << (fbits - 1)) |
               ((a.sig & 0x7FFFFFFFFFFFFFFFull) >> (63 - fbits));
    case SFC_INF: return sbit | (emax << fbits);
    case SFC_ZERO: return sbit;
    default: break;
    }
    int32_t e;
    uint64_t m;
    aero_sf_unpack(a, &e, &m);
    int32_t te = e - BIAS + bias, oe;
    sf_u128 v = round_format(env, sign, te, (sf_u128)m << 64, fbits + 1, (int32_t)emax - 1, 0, &oe);
    if (env->flags & ~env->masks & (SF_OE | SF_UE)) return 0; /* unmasked: nothing to store */
    uint64_t frac = (uint64_t)(v >> (127 - fbits)) & (((uint64_t)1 << fbits) - 1);
    return sbit | ((uint64_t)oe << fbits) | frac;
}

uint32_t aero_sf_to_f32(sf_env *env, sf80 a) { return (uint32_t)to_ieee(env, a, 23, 8); }
uint64_t aero_sf_to_f64(sf_env *env, sf80 a) { return to_ieee(env, a, 52, 11); }

sf80 aero_sf_from_bcd(const uint8_t bcd[10]) {
    uint64_t v = 0;
    for (int i = 8; i >= 0; i--) v = v * 100 + (uint64_t)(bcd[i] >> 4) * 10 + (bcd[i] & 15);
    sf80 r = aero_sf_from_i64((int64_t)v);
    if (bcd[9] & 0x80) r.se |= 0x8000;
    return r;
}

void aero_sf_to_bcd(sf_env *env, sf80 a, uint8_t out[10]) {
    int c = aero_sf_class(a);
    uint64_t mag = 0;
    int bad = c == SFC_UNSUPPORTED || c == SFC_QNAN || c == SFC_SNAN || c == SFC_INF;
    if (!bad && c != SFC_ZERO) {
        sf_env e2 = *env;
        if (to_uint_mag(&e2, a, &mag) != 0 || mag > 999999999999999999ull) bad = 1;
        else env->flags = e2.flags;
    }
    if (bad) {
        env->flags |= SF_IE;
        static const uint8_t indef[10] = {0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF};
        for (int i = 0; i < 10; i++) out[i] = indef[i];
        return;
    }
    for (int i = 0; i < 9; i++) {
        uint8_t lo = (uint8_t)(mag % 10);
        mag /= 10;
        uint8_t hi = (uint8_t)(mag % 10);
        mag /= 10;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    out[9] = sf_sign(a) ? 0x80 : 0;
}

sf80 aero_sf_const(sf_env *env, int sign, int32_t exp, uint64_t hi, uint64_t lo) {
    sf_env e2 = *env;
    e2.prec = 64;
    sf80 r = aero_sf_round_pack(&e2, sign, exp, hi, lo);
    env->flags |= e2.flags & SF_PE;
    return r;
}
