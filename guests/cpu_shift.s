# Shifts and rotates (SHL/SHR/SAR/ROL/ROR/RCL/RCR, SHLD/SHRD) with their CF and OF rules
# and count masking, and the bit instructions (BT/BTS/BTR/BTC on registers and on memory
# bit strings, BSF/BSR). Expected values follow the SDM:
#   count is masked to 5 bits; a masked count of 0 changes no flags;
#   RCL/RCR rotate through CF: 9/17/33-bit rotations (count mod 9 for bytes, mod 17 for words);
#   for count 1: SHL/ROL/RCL OF = MSB(result) ^ CF, SHR OF = MSB(original), SAR OF = 0,
#   ROR OF = the two top bits of the result XORed, RCR OF = MSB(original) ^ CF(original);
#   BT with a register offset addresses a bit string (offset may be negative or beyond the
#   operand); with an immediate offset it is taken modulo the operand size.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set CFOF, 0x801
        .set SZPCO, 0x8C5
        .set ARITH, 0x8D5
        .set BITS, 0x3000

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        ENTER_PM32 0x90000
        PUTS32 "cpu_shift\n"

        movl $0x80000001, %eax
        shll $1, %eax
        CHECK32 "shl 80000001,1", %eax, 0x00000002
        CHECKF32 "shl 80000001,1 flags (OF CF)", SZPCO, 0x801
        movl $0x80000001, %eax
        shrl $1, %eax
        CHECK32 "shr 80000001,1", %eax, 0x40000000
        CHECKF32 "shr 80000001,1 flags (OF PF CF)", SZPCO, 0x805
        movl $0x80000001, %eax
        sarl $1, %eax
        CHECK32 "sar 80000001,1", %eax, 0xC0000000
        CHECKF32 "sar 80000001,1 flags (SF PF CF)", SZPCO, 0x085
        movl $0x12345678, %eax
        shll $4, %eax
        CHECK32 "shl 12345678,4", %eax, 0x23456780
        CHECKF32 "shl 12345678,4 flags (CF = bit 28)", 0x0C5, 0x001
        movl $0x80000000, %eax
        sarl $31, %eax
        CHECK32 "sar 80000000,31", %eax, 0xFFFFFFFF
        movl $0x80000000, %eax
        shrl $31, %eax
        CHECK32 "shr 80000000,31", %eax, 1
        movl $1, %eax
        movb $33, %cl
        shll %cl, %eax
        CHECK32 "shl count masked to 5 bits (33 -> 1)", %eax, 2
        pushl $0x8D7
        popfl
        movl $0x80, %eax
        movb $32, %cl
        shll %cl, %eax
        CHECK32 "shl by 32 (masked to 0) leaves the operand", %eax, 0x80
        CHECKF32 "shl by 32 (masked to 0) leaves the flags", ARITH, 0x8D5
        pushl $0x002
        popfl
        movb $0, %cl
        sarl %cl, %eax
        CHECKF32 "sar by 0 leaves the flags", ARITH, 0

        movl $0x80000001, %eax
        roll $1, %eax
        CHECK32 "rol 80000001,1", %eax, 0x00000003
        CHECKF32 "rol 80000001,1 flags (OF CF)", CFOF, 0x801
        movl $0x80000001, %eax
        rorl $1, %eax
        CHECK32 "ror 80000001,1", %eax, 0xC0000000
        CHECKF32 "ror 80000001,1 flags (CF)", CFOF, 0x001
        movb $0x81, %al
        rolb $9, %al                    # 9 & 31 = 9, mod 8 = 1
        movzbl %al, %ecx
        CHECK32 "rol8 81,9", %ecx, 0x03
        CHECKF32 "rol8 81,9 CF", 0x1, 0x1
        movw $0x0001, %ax
        rorw $1, %ax
        movzwl %ax, %eax
        CHECK32 "ror16 0001,1", %eax, 0x8000

        stc
        movl $0x80000000, %eax
        rcll $1, %eax
        CHECK32 "rcl 80000000,1 with CF=1", %eax, 0x00000001
        CHECKF32 "rcl 80000000,1 flags (OF CF)", CFOF, 0x801
        clc
        movl $1, %eax
        rcrl $1, %eax
        CHECK32 "rcr 1,1 with CF=0", %eax, 0
        CHECKF32 "rcr 1,1 flags (CF)", CFOF, 0x001
        stc
        movb $0x81, %al
        rclb $9, %al                    # 9 mod 9 = 0: nothing changes
        movzbl %al, %ecx
        CHECK32 "rcl8 by 9 is a full rotation", %ecx, 0x81
        CHECKF32 "rcl8 by 9 keeps CF", 0x1, 0x1
        stc
        movw $0x8001, %ax
        rclw $3, %ax                    # 17-bit rotation of 1:8001 by 3
        movzwl %ax, %ecx
        CHECK32 "rcl16 8001,3 with CF=1", %ecx, 0x000E
        CHECKF32 "rcl16 8001,3 CF", 0x1, 0
        stc
        movb $0x01, %al
        rcrb $1, %al
        movzbl %al, %ecx
        CHECK32 "rcr8 01,1 with CF=1", %ecx, 0x80
        CHECKF32 "rcr8 01,1 CF", 0x1, 0x1

        movl $0x12345678, %eax
        movl $0x9ABCDEF0, %edx
        shldl $8, %edx, %eax
        CHECK32 "shld 12345678,9abcdef0,8", %eax, 0x3456789A
        CHECKF32 "shld CF is bit 24 of the destination", 0x1, 0
        movl $0x12345678, %eax
        movb $8, %cl
        shrdl %cl, %edx, %eax
        CHECK32 "shrd 12345678,9abcdef0,cl=8", %eax, 0xF0123456
        CHECKF32 "shrd CF is bit 7 of the destination", 0x1, 0
        movl $0x12345678, %eax
        movb $0, %cl
        shldl %cl, %edx, %eax
        CHECK32 "shld by 0 leaves the operand", %eax, 0x12345678
        movw $0x1234, %ax
        movw $0xABCD, %dx
        shldw $4, %dx, %ax
        movzwl %ax, %ecx
        CHECK32 "shld16 1234,abcd,4", %ecx, 0x234A
        CHECKF32 "shld16 CF is bit 12", 0x1, 0x1
        movl $0x80000001, %eax
        movl $0x00000001, %edx
        shrdl $1, %edx, %eax
        CHECK32 "shrd 80000001,1,1", %eax, 0xC0000000
        CHECKF32 "shrd by 1 flags (OF CF)", CFOF, 0x001

        # ---- bit tests ----
        movl $0xFF, %eax
        btrl $3, %eax
        CHECK32 "btr reg,3", %eax, 0xF7
        CHECKF32 "btr reg,3 CF = old bit", 0x1, 0x1
        movl $2, %eax
        movl $33, %ecx
        btl %ecx, %eax                  # register operand: offset mod 32 = 1
        CHECKF32 "bt reg,reg offset taken mod 32", 0x1, 0x1
        btsl $31, %eax
        CHECK32 "bts reg,31", %eax, 0x80000002
        btcl $1, %eax
        CHECK32 "btc reg,1", %eax, 0x80000000

        movl $0, BITS
        movl $0, BITS + 4
        movl $35, %ecx
        btsl %ecx, BITS                 # bit 3 of the dword at BITS+4
        CHECKF32 "bts mem,reg=35 CF = old bit", 0x1, 0
        CHECK32 "bts mem,reg=35 sets bit 3 of the next dword", BITS+4, 0x8
        CHECK32 "bts mem,reg=35 leaves the first dword", BITS, 0
        btl %ecx, BITS
        CHECKF32 "bt mem,reg=35", 0x1, 0x1
        btl $35, BITS                   # immediate: 35 mod 32 = bit 3 of BITS itself
        CHECKF32 "bt mem,imm=35 is bit 3 of the first dword", 0x1, 0
        btcl %ecx, BITS
        CHECKF32 "btc mem,reg=35 CF", 0x1, 0x1
        CHECK32 "btc mem,reg=35 clears it again", BITS+4, 0
        movl $-1, %ecx
        btsl %ecx, BITS + 4             # bit -1: bit 7 of the byte before = bit 31 of BITS
        CHECK32 "bts mem,reg=-1 reaches the previous dword", BITS, 0x80000000
        btrl %ecx, BITS + 4
        CHECKF32 "btr mem,reg=-1 CF", 0x1, 0x1
        CHECK32 "btr mem,reg=-1 clears it", BITS, 0
        movw $0, BITS
        movw $17, %cx
        btsw %cx, BITS                  # 16-bit: bit 1 of the word at BITS+2
        CHECK32 "bts16 mem,reg=17", BITS, 0x00020000

        movl $0x00F00000, %eax
        bsfl %eax, %ecx
        CHECK32 "bsf 00f00000", %ecx, 20
        CHECKF32 "bsf nonzero ZF clear", 0x40, 0
        bsrl %eax, %ecx
        CHECK32 "bsr 00f00000", %ecx, 23
        movl $0x80000000, %eax
        bsrl %eax, %ecx
        CHECK32 "bsr 80000000", %ecx, 31
        movl $1, %eax
        bsfl %eax, %ecx
        CHECK32 "bsf 1", %ecx, 0
        movw $0x8000, %ax
        bsfw %ax, %cx
        movzwl %cx, %ecx
        CHECK32 "bsf16 8000", %ecx, 15
        xorl %eax, %eax
        bsfl %eax, %ecx
        CHECKF32 "bsf 0 sets ZF", 0x40, 0x40
        bsrl %eax, %ecx
        CHECKF32 "bsr 0 sets ZF", 0x40, 0x40
        FINISH32
