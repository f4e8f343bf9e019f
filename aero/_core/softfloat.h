/* aero core: software floating point for the x87 (80-bit extended precision).
 *
 * Integer arithmetic only: no float, double or long double, no libm, so that every host
 * computes the same bits. Values are the x87's register format (sf80); every operation
 * rounds once, from the exact result (or, for the transcendental functions, from a result
 * with about 120 correct bits), in the rounding mode and precision of its sf_env, and
 * reports the exceptions it raised in env->flags with the x87's masked responses already
 * applied to the returned value. The caller (fpu.c) decides from the masks whether the
 * result may be stored.
 */
#ifndef AERO_SOFTFLOAT_H
#define AERO_SOFTFLOAT_H

#include <stdint.h>

/* 128-bit unsigned arithmetic (GCC and Clang on 64-bit hosts; the platform code uses it too). */
__extension__ typedef unsigned __int128 sf_u128;

/* An x87 register: sign and 15-bit biased exponent, explicit-integer-bit significand. */
typedef struct sf80 {
    uint64_t sig; /* significand, bit 63 the explicit integer bit J */
    uint16_t se;  /* bit 15 sign, bits 0-14 biased exponent (bias 16383) */
} sf80;

/* Exception flags: the low six bits are the status-word flags; SF_C1 is "rounded up". */
#define SF_IE 0x01u  /* invalid operation */
#define SF_DE 0x02u  /* denormal operand */
#define SF_ZE 0x04u  /* zero divide */
#define SF_OE 0x08u  /* overflow */
#define SF_UE 0x10u  /* underflow */
#define SF_PE 0x20u  /* precision (inexact) */
#define SF_C1 0x200u /* the result's magnitude was rounded up */

/* Rounding control (FCW bits 10-11). */
enum { SF_RN = 0, SF_RD = 1, SF_RU = 2, SF_RZ = 3 };

typedef struct sf_env {
    uint32_t rc;    /* SF_RN / SF_RD / SF_RU / SF_RZ */
    uint32_t prec;  /* significand bits results are rounded to: 24, 53 or 64 */
    uint32_t masks; /* FCW exception masks (bits 0-5): choose masked or unmasked
                       overflow/underflow responses */
    uint32_t flags; /* SF_* raised so far (accumulates) */
} sf_env;

/* Operand classes. Pseudo-denormals count as denormals; unnormals, pseudo-NaNs and
 * pseudo-infinities are SFC_UNSUPPORTED (invalid operands since the 80387). */
enum { SFC_ZERO, SFC_NORMAL, SFC_DENORMAL, SFC_INF, SFC_QNAN, SFC_SNAN, SFC_UNSUPPORTED };

#define SF_INDEFINITE_SE 0xFFFFu
#define SF_INDEFINITE_SIG 0xC000000000000000ull

static inline sf80 sf_make(uint16_t se, uint64_t sig) { sf80 r; r.sig = sig; r.se = se; return r; }
static inline sf80 sf_indefinite(void) { return sf_make(SF_INDEFINITE_SE, SF_INDEFINITE_SIG); }
static inline int sf_sign(sf80 a) { return a.se >> 15; }
int aero_sf_class(sf80 a);
static inline int sf_is_nan(sf80 a) { int c = aero_sf_class(a); return c == SFC_QNAN || c == SFC_SNAN; }

/* Round (sign, exponent, significand sig0:sig1) to env->prec bits and pack. The value is
 * sig0.sig1 x 2^(exp - 16383) with the binary point after bit 63 of sig0; sig0 bit 63 must
 * be set (or sig0 = sig1 = 0). Applies the x87's overflow and underflow responses (masked:
 * infinity / largest finite, denormal; unmasked: exponent wrapped by 24576). */
sf80 aero_sf_round_pack(sf_env *env, int sign, int32_t exp, uint64_t sig0, uint64_t sig1);

/* Arithmetic. Invalid operations return the QNaN indefinite (or the propagated NaN). */
sf80 aero_sf_add(sf_env *env, sf80 a, sf80 b);
sf80 aero_sf_sub(sf_env *env, sf80 a, sf80 b);
sf80 aero_sf_mul(sf_env *env, sf80 a, sf80 b);
sf80 aero_sf_div(sf_env *env, sf80 a, sf80 b);
sf80 aero_sf_sqrt(sf_env *env, sf80 a);
/* FRNDINT: round to an integer in env->rc (precision is not applied). */
sf80 aero_sf_round_int(sf_env *env, sf80 a);
/* FSCALE: a x 2^trunc(b). */
sf80 aero_sf_scale(sf_env *env, sf80 a, sf80 b);
/* FPREM (ieee = 0, truncating quotient) and FPREM1 (ieee = 1, nearest): the (partial)
 * remainder; *cc gets C2 (partial) and the quotient bits as FSW C0/C3/C1 (bits 8, 14, 9). */
sf80 aero_sf_rem(sf_env *env, sf80 a, sf80 b, int ieee, uint32_t *cc);

/* Comparison for FCOM (quiet = 0: any NaN is invalid) and FUCOM (quiet = 1: only SNaNs).
 * Returns -1 (a < b), 0 (equal), 1 (a > b) or 2 (unordered). */
int aero_sf_compare(sf_env *env, sf80 a, sf80 b, int quiet);

/* Conversions. Integers load exactly. Stores round in env->rc; invalid (NaN, infinity,
 * out of range) sets SF_IE and returns the integer indefinite (the most negative value). */
sf80 aero_sf_from_i64(int64_t v);
int64_t aero_sf_to_int(sf_env *env, sf80 a, int bits);
/* Binary32 / binary64 loads (SNaN: IE and quieted; denormals: DE) and stores (rounded to the
 * format's precision and range; masked overflow and underflow responses as for registers,
 * unmasked ones raise the flag and leave the result undefined: the caller stores nothing). */
sf80 aero_sf_from_f32(sf_env *env, uint32_t v);
sf80 aero_sf_from_f64(sf_env *env, uint64_t v);
uint32_t aero_sf_to_f32(sf_env *env, sf80 a);
uint64_t aero_sf_to_f64(sf_env *env, sf80 a);
/* 18-digit packed BCD (10 bytes, byte 9 bit 7 the sign). */
sf80 aero_sf_from_bcd(const uint8_t bcd[10]);
void aero_sf_to_bcd(sf_env *env, sf80 a, uint8_t out[10]);

/* A constant given with 128 bits of significand (value = hi:lo / 2^127 x 2^(exp - 16383)),
 * rounded to 64 bits in env->rc (FLDPI, FLDL2T, ...). */
sf80 aero_sf_const(sf_env *env, int sign, int32_t exp, uint64_t hi, uint64_t lo);

/* The transcendental functions (softfloat_trans.c). trig: |a| >= 2^63 is out of range:
 * they return 1 and compute nothing (the caller sets C2). */
/* which: the flags (and C1) reported are those of rounding the sine (SF_SINCOS_SIN), the
 * cosine (SF_SINCOS_COS), or both with the sine's C1 (SF_SINCOS_BOTH, FSINCOS). */
enum { SF_SINCOS_SIN, SF_SINCOS_COS, SF_SINCOS_BOTH };
int aero_sf_sin_cos(sf_env *env, sf80 a, sf80 *sin_out, sf80 *cos_out, int which);
int aero_sf_tan(sf_env *env, sf80 a, sf80 *out);
sf80 aero_sf_atan2(sf_env *env, sf80 y, sf80 x);   /* FPATAN: atan(y / x) with the quadrant */
sf80 aero_sf_f2xm1(sf_env *env, sf80 a);           /* 2^a - 1 */
sf80 aero_sf_yl2x(sf_env *env, sf80 y, sf80 x);    /* y * log2(x) */
sf80 aero_sf_yl2xp1(sf_env *env, sf80 y, sf80 x);  /* y * log2(x + 1) */

/* Shared by softfloat.c and softfloat_trans.c. */
/* NaN propagation for two operands (x87 rules): returns the quieted NaN to deliver. */
sf80 aero_sf_propagate_nan(sf_env *env, sf80 a, sf80 b);
/* Unpack a finite nonzero value: *sig normalized (bit 63 set), *exp its biased exponent
 * (below 1 for denormals). */
void aero_sf_unpack(sf80 a, int32_t *exp, uint64_t *sig);

#endif
