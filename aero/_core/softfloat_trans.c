/* aero core: the x87 transcendental functions in integer arithmetic.
 *
 * Evaluation uses "wide" numbers: a sign, an exponent and a 128-bit significand (about 125
 * correct bits after the series below), then one rounding to the 64-bit result in the current
 * rounding mode. Series are Taylor/atanh series after argument reduction:
 *   sin, cos, tan: x - k * pi66/2 computed exactly (the P6 reduces with a 66-bit pi, so its
 *                  results near multiples of pi/2 follow that pi, not the true one), then
 *                  Taylor series on |r| <= pi/4;
 *   2^x - 1:       expm1(x ln 2) by its Taylor series (|x ln 2| <= 0.35 after taking out the
 *                  integer part of x);
 *   log2:          ln(m) = 2 atanh((m - 1)/(m + 1)) with m in [sqrt(1/2), sqrt(2));
 *   atan:          atan(t) = atan(k/8) + atan((t - k/8)/(1 + t k/8)), |u| <= 1/16.
 * The constants were computed with exact rational / 120-digit decimal arithmetic and are
 * truncated to 128 bits.
 */
#include "softfloat.h"

#define BIAS 16383

/* value = m x 2^(exp - 127); m = 0 or bit 127 set. */
typedef struct xf {
    int sign;
    int32_t exp;
    sf_u128 m;
} xf;

static int clz128(sf_u128 v) {
    uint64_t hi = (uint64_t)(v >> 64);
    if (hi) return __builtin_clzll(hi);
    uint64_t lo = (uint64_t)v;
    return lo ? 64 + __builtin_clzll(lo) : 128;
}
static xf xnorm(xf a) {
    if (a.m == 0) { a.exp = 0; return a; }
    int s = clz128(a.m);
    a.m <<= s;
    a.exp -= s;
    return a;
}
static xf xmake(int sign, int32_t exp, uint64_t hi, uint64_t lo) {
    xf r = {sign, exp, ((sf_u128)hi << 64) | lo};
    return r;
}
static xf xzero(void) { xf r = {0, 0, 0}; return r; }
static xf xint(int64_t v) {
    xf r = {v < 0, 127, (sf_u128)(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v)};
    return xnorm(r);
}
static xf xneg(xf a) { a.sign ^= 1; return a; }
static xf xldexp(xf a, int32_t n) { if (a.m) a.exp += n; return a; }

static xf xmul(xf a, xf b) {
    if (!a.m || !b.m) return xzero();
    uint64_t ah = (uint64_t)(a.m >> 64), al = (uint64_t)a.m, bh = (uint64_t)(b.m >> 64), bl = (uint64_t)b.m;
    sf_u128 hh = (sf_u128)ah * bh, hl = (sf_u128)ah * bl, lh = (sf_u128)al * bh, ll = (sf_u128)al * bl;
    sf_u128 mid = (hl & UINT64_MAX) + (lh & UINT64_MAX) + (ll >> 64);
    sf_u128 hi = hh + (hl >> 64) + (lh >> 64) + (mid >> 64);
    xf r = {a.sign ^ b.sign, a.exp + b.exp + 1, hi};
    return xnorm(r);
}

static xf xadd(xf a, xf b) {
    if (!a.m) return b;
    if (!b.m) return a;
    if (a.exp < b.exp || (a.exp == b.exp && a.m < b.m)) { xf t = a; a = b; b = t; }
    int32_t d = a.exp - b.exp;
    sf_u128 A = a.m >> 1, B = d + 1 >= 128 ? 0 : b.m >> (d + 1);
    /* Bits of the smaller operand shifted out: a sum is then truncated (below the exact
     * value, as every other truncation here), but a difference would be above it, so the
     * subtrahend is rounded up instead. to_sf's forced low bit then sees the right side of
     * a rounding boundary, e.g. cos(r) = 1 - r^2/2 for |r| below 2^-64. */
    int lost = d + 1 >= 128 ? b.m != 0 : (b.m & (((sf_u128)1 << (d + 1)) - 1)) != 0;
    if (a.sign != b.sign && lost) B++;
    xf r;
    r.sign = a.sign;
    r.exp = a.exp + 1;
    r.m = a.sign == b.sign ? A + B : A - B;
    return xnorm(r);
}
static xf xsub(xf a, xf b) { return xadd(a, xneg(b)); }

static xf xdiv(xf a, xf b) {
    if (!a.m) return xzero();
    sf_u128 r = a.m, q = 0;
    if (r >= b.m) { q = 1; r -= b.m; }
    for (int i = 0; i < 127; i++) {
        int carry = (int)(r >> 127);
        r <<= 1;
        q <<= 1;
        if (carry || r >= b.m) { r -= b.m; q |= 1; }
    }
    xf out = {a.sign ^ b.sign, a.exp - b.exp, q};
    return xnorm(out);
}
static xf xdiv_small(xf a, uint32_t n) {
    xf r = {a.sign, a.exp, a.m / n};
    return xnorm(r);
}

static xf from_sf(sf80 a) {
    int32_t e;
    uint64_t s;
    if ((a.se & 0x7FFF) == 0 && a.sig == 0) return xzero();
    aero_sf_unpack(a, &e, &s);
    xf r = {sf_sign(a), e - BIAS, (sf_u128)s << 64};
    return r;
}
static sf80 to_sf(sf_env *env, xf a) {
    if (!a.m) return sf_make((uint16_t)(a.sign << 15), 0);
    /* Low bit forced on: the wide value is never exact, so the rounding sees it inexact. */
    sf_env e2 = *env;
    e2.prec = 64;
    sf80 r = aero_sf_round_pack(&e2, a.sign, a.exp + BIAS, (uint64_t)(a.m >> 64), (uint64_t)a.m | 1);
    env->flags = e2.flags;
    return r;
}

static const xf X_PI = {0, 1, ((sf_u128)0xC90FDAA22168C234ull << 64) | 0xC4C6628B80DC1CD1ull};
static const xf X_LN2 = {0, -1, ((sf_u128)0xB17217F7D1CF79ABull << 64) | 0xC9E3B39803F2F6AFull};
static const xf X_LOG2E = {0, 0, ((sf_u128)0xB8AA3B295C17F0BBull << 64) | 0xBE87FED0691D3E88ull};
static const struct { int32_t exp; uint64_t hi, lo; } atan_k8[9] = {
    {0, 0, 0},
    {-4, 0xFEADD4D5617B6E32ull, 0xC897989F3E888EF7ull},
    {-3, 0xFADBAFC96406EB15ull, 0x6DC79EF5F7A217E5ull},
    {-2, 0xB7B0CA0F26F78473ull, 0x8AA32122DCFE4483ull},
    {-2, 0xED63382B0DDA7B45ull, 0x6FE445ECBC3A8D03ull},
    {-1, 0x8F005D5EF7F59F9Bull, 0x5C835E1665C43747ull},
    {-1, 0xA4BC7D1934F70924ull, 0x19A87F2A457DAC9Eull},
    {-1, 0xB8053E2BC2319E73ull, 0xCB2DA55210A4443Dull},
    {-1, 0xC90FDAA22168C234ull, 0xC4C6628B80DC1CD1ull},
};
/* pi rounded to 66 significant bits, as an integer: pi66 = PI66 x 2^-64. */
#define PI66 (((sf_u128)0x3ull << 64) | 0x243F6A8885A308D3ull)

/* Is the term negligible next to the sum (more than 130 bits below)? */
static int tiny(xf term, xf sum) { return !term.m || (sum.m && term.exp < sum.exp - 130); }

/* sin(r) and cos(r) for |r| <= pi/4 by their Taylor series. */
static void sincos_series(xf r, xf *s, xf *c) {
    xf r2 = xmul(r, r);
    xf t = r, sum = r;
    for (uint32_t n = 2; n < 80; n += 2) {
        t = xneg(xdiv_small(xmul(t, r2), n * (n + 1)));
        if (tiny(t, sum)) { sum = xadd(sum, t); break; } /* (its sign still counts) */
        sum = xadd(sum, t);
    }
    *s = sum;
    t = xint(1);
    sum = t;
    for (uint32_t n = 1; n < 80; n += 2) {
        t = xneg(xdiv_small(xmul(t, r2), n * (n + 1)));
        if (tiny(t, sum)) { sum = xadd(sum, t); break; } /* (its sign still counts) */
        sum = xadd(sum, t);
    }
    *c = sum;
}

/* Reduce x (finite, |x| < 2^63) by multiples of pi66/2: x = k pi66/2 + r, |r| <= pi66/4;
 * returns k mod 4. r is exact. */
static int reduce(sf80 a, xf *r) {
    int32_t e;
    uint64_t s;
    aero_sf_unpack(a, &e, &s);
    int32_t E = e - BIAS;
    if (E < -1) { *r = from_sf(a); return 0; }
    /* x / (pi66/2) = s x 2^(E - 63) / (PI66 x 2^-65) = (s << (E + 2)) / PI66. */
    sf_u128 N = (sf_u128)s << (E + 2);
    sf_u128 k = N / PI66, rem = N % PI66;
    int neg = 0;
    if (rem > PI66 / 2) { rem = PI66 - rem; k++; neg = 1; }
    xf out = {sf_sign(a) ^ neg, 127 - 65, rem};
    *r = xnorm(out);
    int q = (int)(k & 3);
    return sf_sign(a) ? (4 - q) & 3 : q;
}

/* NaN / unsupported / infinity handling of the one-operand functions: returns 1 with *out
 * set when a is not finite. */
static int special1(sf_env *env, sf80 a, sf80 *out) {
    int c = aero_sf_class(a);
    if (c == SFC_UNSUPPORTED || c == SFC_INF) { env->flags |= SF_IE; *out = sf_indefinite(); return 1; }
    if (c == SFC_QNAN || c == SFC_SNAN) { *out = aero_sf_propagate_nan(env, a, a); return 1; }
    if (c == SFC_DENORMAL) env->flags |= SF_DE;
    return 0;
}

static int out_of_range(sf80 a) { return (a.se & 0x7FFF) >= BIAS + 63 && (a.se & 0x7FFF) != 0x7FFF; }

int aero_sf_sin_cos(sf_env *env, sf80 a, sf80 *sin_out, sf80 *cos_out, int which) {
    if (out_of_range(a)) return 1;
    if (special1(env, a, sin_out)) { *cos_out = *sin_out; return 0; }
    if (aero_sf_class(a) == SFC_ZERO) { *sin_out = a; *cos_out = aero_sf_from_i64(1); return 0; }
    xf r, s, c;
    int q = reduce(a, &r);
    sincos_series(r, &s, &c);
    xf so[4] = {s, c, xneg(s), xneg(c)}, co[4] = {c, xneg(s), xneg(c), s};
    sf_env es = *env, ec = *env;
    *sin_out = to_sf(&es, so[q]);
    *cos_out = to_sf(&ec, co[q]);
    if (which == SF_SINCOS_COS) env->flags = ec.flags;
    else if (which == SF_SINCOS_SIN) env->flags = es.flags;
    else env->flags = es.flags | (ec.flags & ~SF_C1);
    return 0;
}

int aero_sf_tan(sf_env *env, sf80 a, sf80 *out) {
    if (out_of_range(a)) return 1;
    if (special1(env, a, out)) return 0;
    if (aero_sf_class(a) == SFC_ZERO) { *out = a; return 0; }
    xf r, s, c;
    int q = reduce(a, &r);
    sincos_series(r, &s, &c);
    *out = to_sf(env, (q & 1) ? xneg(xdiv(c, s)) : xdiv(s, c));
    return 0;
}

/* expm1(y) for |y| < 1 by its Taylor series. */
static xf expm1_series(xf y) {
    xf t = y, sum = y;
    for (uint32_t n = 2; n < 80; n++) {
        t = xdiv_small(xmul(t, y), n);
        if (tiny(t, sum)) { sum = xadd(sum, t); break; } /* (its sign still counts) */
        sum = xadd(sum, t);
    }
    return sum;
}

sf80 aero_sf_f2xm1(sf_env *env, sf80 a) {
    sf80 out;
    int c = aero_sf_class(a);
    if (c == SFC_INF) return sf_sign(a) ? aero_sf_from_i64(-1) : a;
    if (special1(env, a, &out)) return out;
    if (c == SFC_ZERO) return a;
    int32_t e;
    uint64_t s;
    aero_sf_unpack(a, &e, &s);
    int32_t E = e - BIAS;
    if (E < 0) return to_sf(env, expm1_series(xmul(from_sf(a), X_LN2)));
    /* Outside [-1, 1] (undefined on the P6): 2^n (1 + expm1(f ln2)) - 1, x = n + f. */
    if (E > 15) {
        if (sf_sign(a)) return to_sf(env, xint(-1));
        env->flags |= SF_OE | SF_PE;
        return aero_sf_round_pack(env, 0, 0x7FFF + 100, 0x8000000000000000ull, 0);
    }
    int64_t n = (int64_t)(s >> (63 - E));
    if (sf_sign(a)) n = -n;
    xf f = xsub(from_sf(a), xint(n));
    xf p = xadd(xint(1), expm1_series(xmul(f, X_LN2)));
    return to_sf(env, xsub(xldexp(p, (int32_t)n), xint(1)));
}

/* ln(x) for positive finite x. */
static xf ln_x(xf x) {
    int32_t n = x.exp;
    xf m = x;
    m.exp = 0; /* m in [1, 2) */
    /* sqrt(2) = 1.6A09E667F3BCC908B2FB... : above it, halve. */
    if (m.m > (((sf_u128)0xB504F333F9DE6484ull << 64) | 0x597D89B3754ABE9Full)) { m.exp = -1; n++; }
    xf one = xint(1);
    xf t = xdiv(xsub(m, one), xadd(m, one));
    xf t2 = xmul(t, t), p = t, sum = t;
    for (uint32_t k = 3; k < 200; k += 2) {
        p = xmul(p, t2);
        xf term = xdiv_small(p, k);
        if (tiny(term, sum)) { sum = xadd(sum, term); break; } /* (its sign still counts) */
        sum = xadd(sum, term);
    }
    sum = xldexp(sum, 1);
    return xadd(sum, xmul(xint(n), X_LN2));
}

/* ln(1 + x) for x > -1, accurate for tiny x: 2 atanh(x / (2 + x)). */
static xf ln1p_x(xf x) {
    xf t = xdiv(x, xadd(xint(2), x));
    xf t2 = xmul(t, t), p = t, sum = t;
    for (uint32_t k = 3; k < 400; k += 2) {
        p = xmul(p, t2);
        xf term = xdiv_small(p, k);
        if (tiny(term, sum)) { sum = xadd(sum, term); break; } /* (its sign still counts) */
        sum = xadd(sum, term);
    }
    return xldexp(sum, 1);
}

/* Special cases of y * log2(x) shared by FYL2X and FYL2XP1 (x given as 1 + x for the
 * latter: xc is the class of the logarithm's argument relative to 1). Returns 1 with *out. */
static int log_nan(sf_env *env, sf80 y, sf80 x, sf80 *out) {
    int cx = aero_sf_class(x), cy = aero_sf_class(y);
    if (cx == SFC_UNSUPPORTED || cy == SFC_UNSUPPORTED) { env->flags |= SF_IE; *out = sf_indefinite(); return 1; }
    if (cx == SFC_QNAN || cx == SFC_SNAN || cy == SFC_QNAN || cy == SFC_SNAN) {
        *out = aero_sf_propagate_nan(env, x, y);
        return 1;
    }
    if (cx == SFC_DENORMAL || cy == SFC_DENORMAL) env->flags |= SF_DE;
    return 0;
}

static sf80 signed_inf(int sign) { return sf_make((uint16_t)((sign << 15) | 0x7FFF), 0x8000000000000000ull); }

sf80 aero_sf_yl2x(sf_env *env, sf80 y, sf80 x) {
    sf80 out;
    if (log_nan(env, y, x, &out)) return out;
    int cx = aero_sf_class(x), cy = aero_sf_class(y);
    if (sf_sign(x) && cx != SFC_ZERO) { env->flags |= SF_IE; return sf_indefinite(); }
    if (cx == SFC_ZERO) {
        if (cy == SFC_ZERO) { env->flags |= SF_IE; return sf_indefinite(); }
        if (cy != SFC_INF) env->flags |= SF_ZE;
        return signed_inf(!sf_sign(y));
    }
    if (cx == SFC_INF) {
        if (cy == SFC_ZERO) { env->flags |= SF_IE; return sf_indefinite(); }
        return signed_inf(sf_sign(y));
    }
    int32_t xe;
    uint64_t xs;
    aero_sf_unpack(x, &xe, &xs);
    int pow2 = xs == 0x8000000000000000ull; /* log2 is the exponent, exactly */
    xf lx = pow2 ? xint(xe - BIAS) : xmul(ln_x(from_sf(x)), X_LOG2E);
    if (cy == SFC_INF) {
        if (!lx.m) { env->flags |= SF_IE; return sf_indefinite(); }
        return signed_inf(sf_sign(y) ^ lx.sign);
    }
    if (cy == SFC_ZERO || !lx.m) return sf_make((uint16_t)((sf_sign(y) ^ (lx.m ? lx.sign : 0)) << 15), 0);
    /* log2 of a power of two is exact: round the product as exact. */
    xf p = xmul(from_sf(y), lx);
    if (pow2) {
        sf_env e2 = *env;
        e2.prec = 64;
        sf80 r = aero_sf_round_pack(&e2, p.sign, p.exp + BIAS, (uint64_t)(p.m >> 64), (uint64_t)p.m);
        env->flags = e2.flags;
        return r;
    }
    return to_sf(env, p);
}

sf80 aero_sf_yl2xp1(sf_env *env, sf80 y, sf80 x) {
    sf80 out;
    if (log_nan(env, y, x, &out)) return out;
    int cx = aero_sf_class(x), cy = aero_sf_class(y);
    xf X = from_sf(x);
    if (cx == SFC_INF || (sf_sign(x) && xadd(X, xint(1)).m && xadd(X, xint(1)).sign)) {
        if (!sf_sign(x) && cy != SFC_ZERO) return signed_inf(sf_sign(y));
        env->flags |= SF_IE;
        return sf_indefinite();
    }
    if (sf_sign(x) && !xadd(X, xint(1)).m) { /* x = -1: log2(0) */
        if (cy == SFC_ZERO) { env->flags |= SF_IE; return sf_indefinite(); }
        if (cy != SFC_INF) env->flags |= SF_ZE;
        return signed_inf(!sf_sign(y));
    }
    if (cx == SFC_ZERO) {
        if (cy == SFC_INF) { env->flags |= SF_IE; return sf_indefinite(); }
        return sf_make((uint16_t)((sf_sign(y) ^ sf_sign(x)) << 15), 0);
    }
    xf l = xmul(ln1p_x(X), X_LOG2E);
    if (cy == SFC_INF) return signed_inf(sf_sign(y) ^ l.sign);
    if (cy == SFC_ZERO) return sf_make((uint16_t)((sf_sign(y) ^ l.sign) << 15), 0);
    return to_sf(env, xmul(from_sf(y), l));
}

/* atan(t) for 0 <= t <= 1. */
static xf atan01(xf t) {
    /* k = round(8 t) */
    int k = 0;
    if (t.m) {
        xf t8 = xldexp(t, 3);
        if (t8.exp >= 0) {
            sf_u128 fixed = t8.m >> (127 - t8.exp - 1); /* 8t in units of 1/2 */
            k = (int)((fixed + 1) >> 1);
        }
    }
    if (k > 8) k = 8;
    xf c = xint(k), base = xzero();
    c = xldexp(c, -3);
    xf u = t;
    if (k) {
        u = xdiv(xsub(t, c), xadd(xint(1), xmul(t, c)));
        base = xmake(0, atan_k8[k].exp, atan_k8[k].hi, atan_k8[k].lo);
    }
    xf u2 = xmul(u, u), p = u, sum = u;
    for (uint32_t n = 3; n < 200; n += 2) {
        p = xneg(xmul(p, u2));
        xf term = xdiv_small(p, n);
        if (tiny(term, sum)) { sum = xadd(sum, term); break; } /* (its sign still counts) */
        sum = xadd(sum, term);
    }
    return xadd(base, sum);
}

sf80 aero_sf_atan2(sf_env *env, sf80 y, sf80 x) {
    sf80 out;
    if (log_nan(env, y, x, &out)) return out;
    int cx = aero_sf_class(x), cy = aero_sf_class(y), sy = sf_sign(y), sx = sf_sign(x);
    xf pi = X_PI, half = xldexp(X_PI, -1);
    xf a;
    if (cy == SFC_ZERO) {
        if (!sx) return y;
        a = pi;
    } else if (cx == SFC_ZERO) {
        a = half;
    } else if (cy == SFC_INF) {
        if (cx == SFC_INF) a = sx ? xmul(X_PI, xldexp(xint(3), -2)) : xldexp(X_PI, -2);
        else a = half;
    } else if (cx == SFC_INF) {
        if (!sx) return sf_make((uint16_t)(sy << 15), 0);
        a = pi;
    } else {
        xf Y = from_sf(y), X = from_sf(x);
        Y.sign = X.sign = 0;
        int swap = Y.exp > X.exp || (Y.exp == X.exp && Y.m > X.m);
        a = swap ? xsub(half, atan01(xdiv(X, Y))) : atan01(xdiv(Y, X));
        if (sx) a = xsub(pi, a);
    }
    a.sign = sy;
    return to_sf(env, a);
}
