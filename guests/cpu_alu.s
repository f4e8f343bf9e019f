# ALU results and flags, BCD adjustment, and all sixteen conditions through SETcc, CMOVcc
# and Jcc. Expected values are derived from the Intel SDM's definitions:
#   CF=0x001 PF=0x004 AF=0x010 ZF=0x040 SF=0x080 OF=0x800
#   PF is set when the low byte of the result has an even number of one bits.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set ARITH, 0x8D5               # OF SF ZF AF PF CF
        .set LOGIC, 0x8C5               # AF is undefined after logic instructions
        .set SZPC, 0x0C5                # OF is undefined after DAA/DAS
        .set SZP, 0x0C4                 # AAM/AAD define only SF ZF PF

# Run SETcc, CMOVcc and Jcc for all 16 conditions after `cmp $b, a` and check the masks.
.macro COND_STATE a, b, mask
        xorl %ebx, %ebx                 # SETcc mask
        xorl %esi, %esi                 # CMOVcc mask
        xorl %edi, %edi                 # Jcc mask
        movl $1, %ebp
        movl $\a, %eax
        cmpl $\b, %eax
        .set bit, 0
        .irp cc, o,no,b,ae,e,ne,be,a,s,ns,p,np,l,ge,le,g
        set\cc %dl
        movzbl %dl, %edx
        movl $0, %ecx
        cmov\cc %ebp, %ecx
        j\cc 1f
        jmp 2f
1:      leal (1 << bit)(%edi), %edi     # LEA: no flags touched
2:      pushfl
        shll $bit, %edx
        orl %edx, %ebx
        shll $bit, %ecx
        orl %ecx, %esi
        popfl
        .set bit, bit + 1
        .endr
        CHECK32 "setcc after cmp \a,\b", %ebx, \mask
        CHECK32 "cmovcc after cmp \a,\b", %esi, \mask
        CHECK32 "jcc after cmp \a,\b", %edi, \mask
.endm

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        ENTER_PM32 0x90000
        PUTS32 "cpu_alu\n"

        # ---- add / adc / sub / sbb / neg / inc / dec / cmp ----
        movl $0x7FFFFFFF, %eax
        addl $1, %eax                   # signed overflow; nibble carry; low byte 00
        CHECK32 "add 7fffffff+1", %eax, 0x80000000
        CHECKF32 "add 7fffffff+1 flags (OF SF AF PF)", ARITH, 0x894
        movl $0xFFFFFFFF, %eax
        addl $1, %eax
        CHECKF32 "add ffffffff+1 flags (ZF AF PF CF)", ARITH, 0x055
        xorl %eax, %eax
        subl $1, %eax
        CHECK32 "sub 0-1", %eax, 0xFFFFFFFF
        CHECKF32 "sub 0-1 flags (SF AF PF CF)", ARITH, 0x095
        movl $0x80000000, %eax
        subl $1, %eax
        CHECKF32 "sub 80000000-1 flags (OF AF PF)", ARITH, 0x814
        movl $0x12345678, %eax
        stc
        adcl $0x11111111, %eax
        CHECK32 "adc with carry in", %eax, 0x2345678A
        CHECKF32 "adc flags (none)", ARITH, 0
        movb $0x10, %al
        stc
        sbbb $0x0F, %al
        movzbl %al, %eax
        CHECK32 "sbb 10-0f-1", %eax, 0
        movb $0x10, %al
        stc
        sbbb $0x0F, %al
        CHECKF32 "sbb 10-0f-1 flags (ZF AF PF)", ARITH, 0x054
        xorl %eax, %eax
        negl %eax
        CHECKF32 "neg 0 flags (ZF PF)", ARITH, 0x044
        movl $1, %eax
        negl %eax
        CHECKF32 "neg 1 flags (SF AF PF CF)", ARITH, 0x095
        movl $0x80000000, %eax
        negl %eax
        CHECK32 "neg 80000000", %eax, 0x80000000
        CHECKF32 "neg 80000000 flags (OF SF PF CF)", ARITH, 0x885
        stc
        movl $0xFFFFFFFF, %eax
        incl %eax
        CHECKF32 "inc keeps CF (ZF AF PF CF)", ARITH, 0x055
        clc
        movl $0x80000000, %eax
        decl %eax
        CHECKF32 "dec 80000000 flags (OF AF PF)", ARITH, 0x814
        movl $3, %eax
        cmpl $5, %eax
        CHECK32 "cmp leaves the operand", %eax, 3
        CHECKF32 "cmp 3,5 flags (SF AF CF)", ARITH, 0x091
        movl $0x1234FFFF, %eax
        addw $1, %ax
        CHECK32 "16-bit add keeps the upper half", %eax, 0x12340000
        CHECKF32 "16-bit add flags (ZF AF PF CF)", ARITH, 0x055
        movb $0x7F, %al
        addb $1, %al
        CHECKF32 "8-bit add 7f+1 flags (OF SF AF)", ARITH, 0x890
        movl $0x000000FF, %ebx
        movb $0x01, %bh
        addb %bl, %bh                   # BH = 0x00 with carry
        movzwl %bx, %eax
        CHECK32 "8-bit add to a high byte register", %eax, 0x00FF

        # ---- logic ----
        movl $0xF0F0F0F0, %eax
        andl $0x0FF00FF0, %eax
        CHECK32 "and", %eax, 0x00F000F0
        CHECKF32 "and flags (PF)", LOGIC, 0x004
        stc
        xorl %eax, %eax
        CHECKF32 "xor clears CF (ZF PF)", LOGIC, 0x044
        movl $0x80000000, %eax
        orl $1, %eax
        CHECKF32 "or flags (SF)", LOGIC, 0x080
        movb $0x80, %al
        testb $0x80, %al
        CHECKF32 "test flags (SF)", LOGIC, 0x080
        movl $0x0F0F0F0F, %eax
        notl %eax
        CHECK32 "not", %eax, 0xF0F0F0F0

        # ---- BCD ----
        movb $0x15, %al
        addb $0x27, %al                 # 3C
        daa                             # low nibble C > 9: +6 -> 42, AF
        movzbl %al, %ecx
        CHECK32 "daa 15+27", %ecx, 0x42
        CHECKF32 "daa 15+27 flags (AF PF)", (SZPC|0x10), 0x014
        movb $0x99, %al
        addb $0x01, %al                 # 9A
        daa                             # +6 -> A0, then +60 -> 00 with CF
        movzbl %al, %ecx
        CHECK32 "daa 99+01", %ecx, 0x00
        CHECKF32 "daa 99+01 flags (ZF AF PF CF)", (SZPC|0x10), 0x055
        movb $0x42, %al
        subb $0x27, %al                 # 1B, AF
        das                             # -6 -> 15
        movzbl %al, %ecx
        CHECK32 "das 42-27", %ecx, 0x15
        CHECKF32 "das 42-27 flags (AF)", (SZPC|0x10), 0x010
        movb $0x10, %al
        subb $0x20, %al                 # F0, CF
        das                             # -60 -> 90, CF
        movzbl %al, %ecx
        CHECK32 "das 10-20", %ecx, 0x90
        CHECKF32 "das 10-20 flags (SF PF CF)", (SZPC|0x10), 0x085
        movl $0x0008, %eax
        addb $9, %al                    # 11, AF
        aaa                             # AL+6, AH+1, AL&=0F
        CHECK32 "aaa 8+9", %eax, 0x0107
        CHECKF32 "aaa 8+9 flags (AF CF)", 0x11, 0x11
        movl $0x0005, %eax
        addb $3, %al
        aaa
        CHECK32 "aaa 5+3 (no adjustment)", %eax, 0x0008
        CHECKF32 "aaa 5+3 flags (none)", 0x11, 0
        movl $0x0302, %eax
        subb $5, %al                    # FD, AF
        aas                             # AL-6, AH-1, AL&=0F
        CHECK32 "aas 2-5", %eax, 0x0207
        CHECKF32 "aas 2-5 flags (AF CF)", 0x11, 0x11
        movl $0x003F, %eax
        aam                             # 63 = 6*10 + 3
        CHECK32 "aam 63", %eax, 0x0603
        CHECKF32 "aam 63 flags (PF)", SZP, 0x004
        movl $0x003F, %eax
        .byte 0xD4, 0x10                # aam 16
        CHECK32 "aam base 16", %eax, 0x030F
        movl $0x0605, %eax
        aad                             # 6*10 + 5 = 65
        CHECK32 "aad 0605", %eax, 0x0041
        CHECKF32 "aad 0605 flags (PF)", SZP, 0x004
        movl $0x0305, %eax
        .byte 0xD5, 0x10                # aad 16: 3*16 + 5
        CHECK32 "aad base 16", %eax, 0x0035

        # ---- the sixteen conditions ----
        # Each state sets the flags with one CMP; bit n of the mask is condition n
        # (O NO B AE E NE BE A S NS P NP L GE LE G).
        # cmp 3,5:              CF SF AF      -> 0x5966
        # cmp 7fffffff,ffffffff OF SF PF CF   -> 0xA565
        # cmp 5,5:              ZF PF         -> 0x665A
        # cmp 80000000,1:       OF PF AF      -> 0x56A9
        COND_STATE 3, 5, 0x5966
        COND_STATE 0x7FFFFFFF, 0xFFFFFFFF, 0xA565
        COND_STATE 5, 5, 0x665A
        COND_STATE 0x80000000, 1, 0x56A9

        FINISH32
