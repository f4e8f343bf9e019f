# The x87: arithmetic in every rounding mode and precision, loads and stores of every format
# (integer overflow to the integer indefinite, packed BCD), compares (FCOM, FUCOMI, FTST,
# FXAM), FPREM/FPREM1 quotient bits, FRNDINT, FSCALE, FXTRACT, the constants, FCMOVcc,
# masked exception flags and responses, FSAVE/FRSTOR. Expected values are exact: the true
# result rounded as the SDM defines (computed with rational arithmetic, see tests/fpuenv.py).
# Left out because QEMU (7.2) differs from the SDM there, tested in tests/test_fpu.py instead:
# C1 as the round-up indicator, C1 = 0 after FCOM, FPREM1's quotient bits (of the rounded
# quotient). FSIN/FCOS/FPTAN are left out too: QEMU computes them in host double precision.
#   FSW: IE=1 DE=2 ZE=4 OE=8 UE=10 PE=20 SF=40 ES=80 C0=100 C1=200 C2=400 C3=4000
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set CC, 0x4700                 # C3 C2 C1 C0
        .set FLAGS, 0x3F

# The 64-bit value at res.
.macro CHKQ name, lo, hi
        CHECK32 "\name (low)", res, \lo
        CHECK32 "\name (high)", res + 4, \hi
.endm
# The 80-bit value at res.
.macro CHKT name, lo, hi, se
        CHECK32 "\name (low)", res, \lo
        CHECK32 "\name (high)", res + 4, \hi
        movzwl res + 8, %eax
        CHECK32 "\name (sign, exponent)", %eax, \se
.endm
# (FSW & mask) after the last instruction.
.macro CHKSW name, mask, want
        fnstsw %ax
        andl $(\mask), %eax
        CHECK32 "\name", %eax, \want
.endm
# Load the control word: rounding control rc, precision control pc, all masked.
.macro FCW rc, pc
        movw $(0x3F | 0x40 | (\pc << 8) | (\rc << 10)), cw
        fldcw cw
.endm

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        ENTER_PM32 0x90000
        PUTS32 "cpu_fpu\n"
        movl %cr0, %eax                 # x87 present: EM = 0, TS = 0, NE = 0 (FERR# unused:
        andl $~0xC, %eax                # every exception below stays masked)
        movl %eax, %cr0

        # ---- initialization ----
        fninit
        fnstcw cw
        movzwl cw, %eax
        CHECK32 "fninit control word", %eax, 0x037F
        CHKSW "fninit status word", 0xFFFF, 0
        fnstenv env
        movzwl env + 8, %eax
        CHECK32 "fninit tag word (all empty)", %eax, 0xFFFF

        # ---- arithmetic, precision and rounding ----
        fld1
        fidivl three                    # 1/3
        CHKSW "1/3 flags: PE", FLAGS, 0x20
        fstpt res
        CHKT "1/3 extended", 0xAAAAAAAB, 0xAAAAAAAA, 0x3FFD
        FCW 0, 0                        # 24-bit precision
        fld1
        fidivl three
        fstpt res
        CHKT "1/3 at 24 bits", 0, 0xAAAAAB00, 0x3FFD
        FCW 0, 2                        # 53-bit precision
        fld1
        fidivl three
        fstpt res
        CHKT "1/3 at 53 bits", 0xAAAAA800, 0xAAAAAAAA, 0x3FFD
        .irp rc, 0, 1, 2, 3
        FCW \rc, 3
        fldl two
        fidivl three
        fstpl res
        .if \rc == 2
        CHKQ "2/3 to double, rc \rc", 0x55555556, 0x3FE55555
        .else
        CHKQ "2/3 to double, rc \rc", 0x55555555, 0x3FE55555
        .endif
        .endr
        FCW 3, 3                        # chop
        fldl two
        fchs
        fidivl three
        fstps res
        CHECK32 "-2/3 to single, chop", res, 0xBF2AAAAA
        FCW 0, 3
        fldl two
        fsqrt
        fstpt res
        CHKT "sqrt(2)", 0xF9DE6484, 0xB504F333, 0x3FFF
        fldl two
        fldl two
        fmulp
        faddl two
        fsubl half                      # 2*2 + 2 - 0.5 = 5.5
        fdivl half                      # 11
        fistpl res
        CHECK32 "2*2+2-0.5 / 0.5", res, 11

        # ---- integer stores: rounding and overflow ----
        FCW 0, 3
        fldl m2p5
        fistps res                      # -2.5 to nearest even
        movswl res, %eax
        CHECK32 "fist -2.5 nearest", %eax, -2
        FCW 1, 3
        fldl m2p5
        fistpl res
        CHECK32 "fist -2.5 down", res, -3
        FCW 2, 3
        fldl m2p5
        fistpl res
        CHECK32 "fist -2.5 up", res, -2
        FCW 0, 3
        fninit
        fildl big                       # 2^31 - 1
        fiaddl one
        fistl res                       # 2^31: invalid, the integer indefinite
        CHECK32 "fist 2^31 overflow", res, 0x80000000
        CHKSW "fist overflow flags: IE", FLAGS, 0x01
        fistpll res
        CHKQ "fistp m64 2^31", 0x80000000, 0
        fnclex
        fildll q_min                    # -2^63 loads exactly
        fistpll res
        CHKQ "fild/fistp m64 -2^63", 0, 0x80000000
        CHKSW "no flags", FLAGS, 0

        # ---- packed BCD ----
        fbld bcd_in
        fld %st(0)
        fbstp res
        CHECK32 "fbld/fbstp bytes 0-3", res, 0x87654321
        CHECK32 "fbld/fbstp bytes 4-7", res + 4, 0x00000009
        movzwl res + 8, %eax
        CHECK32 "fbld/fbstp bytes 8-9", %eax, 0x8099
        fistpll res                     # -990000000987654321
        CHKQ "fbld value", 0x8D7E974F, 0xF242D03E
        fldl big10
        fbstp res                       # 1e18 does not fit: the BCD indefinite
        movzwl res + 8, %eax
        CHECK32 "fbstp 1e18: indefinite", %eax, 0xFFFF
        CHECK32 "fbstp 1e18: indefinite byte 7", res + 4, 0xC0000000
        fnclex

        # ---- compares ----
        fninit
        fldl two
        fld1
        fcom %st(1)                     # 1 < 2
        CHKSW "fcom 1 < 2", CC, 0x100
        fcomi %st(1), %st
        CHECKF32 "fcomi 1 < 2", 0x8D5, 0x01
        fxch
        fcomp %st(1)                    # 2 > 1
        CHKSW "fcomp 2 > 1", CC, 0
        ftst                            # 1 > 0
        CHKSW "ftst 1", CC, 0
        fldz
        fchs
        ftst                            # -0 = 0
        CHKSW "ftst -0", CC, 0x4000
        fxam
        CHKSW "fxam -0 (zero, sign)", CC, 0x4200
        fcompp
        fldl qnan
        fld1
        fucomi %st(1), %st
        CHECKF32 "fucomi with a QNaN: unordered", 0x8D5, 0x45
        CHKSW "fucomi with a QNaN: no IE", FLAGS, 0
        fcom %st(1)
        CHKSW "fcom with a QNaN: unordered, IE", (CC & ~0x200) | FLAGS, 0x4501
        fcompp
        fnclex
        fldl inf
        fxam
        CHKSW "fxam +inf", CC, 0x0500
        fstp %st(0)
        fxam
        CHKSW "fxam empty", CC & ~0x200, 0x4100
        fld1
        ficoml three
        CHKSW "ficom 1 < 3", CC, 0x100
        fstp %st(0)

        # ---- FCMOVcc ----
        fld1
        fldz
        stc
        fcmovb %st(1), %st
        fistpl res
        CHECK32 "fcmovb taken", res, 1
        fldz
        clc
        fcmovb %st(1), %st
        fistpl res
        CHECK32 "fcmovb not taken", res, 0
        fstp %st(0)

        # ---- FPREM, FPREM1, FRNDINT, FSCALE, FXTRACT ----
        fildl five
        fildl seventeen
        fprem                           # 17 = 3*5 + 2
        CHKSW "fprem quotient 3: C3 C1", CC, 0x4200
        fistl res
        CHECK32 "fprem 17 mod 5", res, 2
        fstp %st(0)
        fildl eighteen
        fprem1                          # 18 = 4*5 - 2
        fistpl res
        CHECK32 "fprem1 18 rem 5", res, -2
        fstp %st(0)
        fldl m2p5
        frndint
        fistpl res
        CHECK32 "frndint -2.5", res, -2
        fildl five
        fldl half
        fscale                          # 0.5 * 2^5
        fistpl res
        CHECK32 "fscale 0.5 by 5", res, 16
        fstp %st(0)
        fildl forty
        fxtract                         # 40 = 1.25 * 2^5
        fmull four
        fistpl res
        CHECK32 "fxtract significand", res, 5
        fistpl res
        CHECK32 "fxtract exponent", res, 5

        # ---- constants by rounding mode ----
        FCW 0, 3
        fldpi
        fstpt res
        CHKT "fldpi nearest", 0x2168C235, 0xC90FDAA2, 0x4000
        FCW 3, 3
        fldpi
        fstpt res
        CHKT "fldpi chop", 0x2168C234, 0xC90FDAA2, 0x4000
        fldl2e
        fstpt res
        CHKT "fldl2e chop", 0x5C17F0BB, 0xB8AA3B29, 0x3FFF
        FCW 0, 3
        fldln2
        fstpt res
        CHKT "fldln2 nearest", 0xD1CF79AC, 0xB17217F7, 0x3FFE
        fldlg2
        fstpt res
        CHKT "fldlg2 nearest", 0xFBCFF799, 0x9A209A84, 0x3FFD
        fldl2t
        fstpt res
        CHKT "fldl2t nearest", 0xCD1B8AFE, 0xD49A784B, 0x4000

        # ---- masked exceptions ----
        fninit
        fld1
        fldz
        fdivr %st(1), %st               # 1/0
        fstpt res
        CHKT "1/0 masked: +inf", 0, 0x80000000, 0x7FFF
        CHKSW "1/0 flags: ZE", FLAGS, 0x04
        fnclex
        fldz
        fdiv %st(0), %st                # 0/0
        fstpt res
        CHKT "0/0 masked: indefinite", 0, 0xC0000000, 0xFFFF
        CHKSW "0/0 flags: IE", FLAGS, 0x01
        fnclex
        fchs
        fsqrt                           # sqrt(-1)
        CHKSW "sqrt(-1) flags: IE", FLAGS, 0x01
        fstp %st(0)
        fnclex
        fldt huge
        fmul %st(0), %st                # overflow
        fstpt res
        CHKT "overflow masked: +inf", 0, 0x80000000, 0x7FFF
        CHKSW "overflow flags: OE PE", FLAGS, 0x28
        fnclex
        fldt tiny
        fmul %st(0), %st                # underflow to zero
        fstpt res
        CHKT "underflow masked: +0", 0, 0, 0
        CHKSW "underflow flags: UE PE", FLAGS, 0x30
        fnclex

        # ---- FSAVE / FRSTOR ----
        fninit
        fld1
        fldpi
        fnsave area
        fnstsw %ax
        movzwl area + 8, %ebx           # the tag word: R7 valid, R6 valid, rest empty
        CHECK32 "fsave tag word", %ebx, 0x0FFF
        movzwl area + 4, %ebx
        CHECK32 "fsave status word: TOP 6", %ebx, 0x3000
        CHECK32 "fsave reinitializes", %eax, 0
        frstor area
        fstpt res
        CHKT "frstor pi", 0x2168C235, 0xC90FDAA2, 0x4000
        fistpl res
        CHECK32 "frstor 1", res, 1

        FINISH32

        .section .rodata
        .balign 8
two:    .double 2.0
half:   .double 0.5
four:   .double 4.0
m2p5:   .double -2.5
big10:  .double 1e18
qnan:   .quad 0x7FF8000000000000
inf:    .quad 0x7FF0000000000000
q_min:  .quad 0x8000000000000000
huge:   .byte 0, 0, 0, 0, 0, 0, 0, 0x80, 0xFE, 0x7F    # 2^16383
tiny:   .byte 0, 0, 0, 0, 0, 0, 0, 0x80, 0x01, 0x00    # 2^-16382
bcd_in: .byte 0x21, 0x43, 0x65, 0x87, 0x09, 0, 0, 0, 0x99, 0x80
        .balign 4
one:    .long 1
three:  .long 3
five:   .long 5
seventeen: .long 17
eighteen: .long 18
forty:  .long 40
big:    .long 0x7FFFFFFF

        .data
        .balign 16
res:    .space 16
cw:     .space 4
env:    .space 28
area:   .space 108
