# MUL, IMUL (one-, two- and three-operand), DIV and IDIV at 8, 16 and 32 bits, and the
# divide error: #DE is a fault, so the saved CS:IP is the DIV itself and no register has
# changed. It is caught once through the real-mode IVT and once through a protected-mode
# IDT gate. Products and quotients follow the SDM's definitions (IDIV truncates toward zero;
# MUL/IMUL set CF=OF when the upper half is significant).
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set DE_COUNT, RT_SCRATCH
        .set DE_IP, RT_SCRATCH + 4
        .set DE_CS, RT_SCRATCH + 8
        .set DE_RESUME, RT_SCRATCH + 12
        .set CFOF, 0x801

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        PUTS16 "cpu_muldiv\n"

        # ---- #DE in real mode, through IVT entry 0 ----
        SET_IVT16 0, de16_handler
        movl $0, DE_COUNT
        movw $de16_back1, DE_RESUME
        movl $0x1234, %eax
        xorl %edx, %edx
        xorl %ecx, %ecx
de16_div1:
        divl %ecx                       # divide by zero
de16_back1:
        CHECK16 "real mode: div by zero raises #de", DE_COUNT, 1
        CHECK16 "real mode: #de saved ip is the div", DE_IP, de16_div1
        CHECK16 "real mode: #de saved cs", DE_CS, 0
        CHECK16 "real mode: eax unchanged by the fault", %eax, 0x1234
        movw $de16_back2, DE_RESUME
        movw $0xFF80, %ax               # -128 / -1 = 128 does not fit in AL
        movb $0xFF, %cl
de16_div2:
        idivb %cl
de16_back2:
        CHECK16 "real mode: idiv -128/-1 overflow raises #de", DE_COUNT, 2
        CHECK16 "real mode: second #de saved ip", DE_IP, de16_div2
        movzwl %ax, %eax
        CHECK16 "real mode: ax unchanged by the fault", %eax, 0xFF80

        # 16-bit forms in real mode.
        movw $0xFFFF, %ax
        movw $0xFFFF, %cx
        mulw %cx
        CHECKF16 "mul16 upper half set: CF OF", CFOF, CFOF
        shll $16, %edx
        movw %ax, %dx
        CHECK16 "mul16 ffff*ffff", %edx, 0xFFFE0001
        movw $0xFFFF, %dx               # DX:AX = -1000
        movw $0xFC18, %ax
        movw $3, %cx
        idivw %cx
        shll $16, %edx
        movw %ax, %dx
        CHECK16 "idiv16 -1000/3 (rem:quot)", %edx, 0xFFFFFEB3

        ENTER_PM32 0x90000

        # ---- multiply ----
        movl $0x12345678, %eax
        movl $0x9ABCDEF0, %ecx
        mull %ecx
        CHECK32 "mul32 low", %eax, 0x242D2080
        CHECK32 "mul32 high", %edx, 0x0B00EA4E
        CHECKF32 "mul32 upper half set: CF OF", CFOF, CFOF
        movl $1000, %eax
        movl $1000, %ecx
        mull %ecx
        CHECK32 "mul32 1000*1000", %eax, 1000000
        CHECKF32 "mul32 fits: CF OF clear", CFOF, 0
        movb $0x80, %al
        movb $2, %cl
        mulb %cl
        movzwl %ax, %eax
        CHECK32 "mul8 80*2", %eax, 0x0100
        CHECKF32 "mul8 upper half set: CF OF", CFOF, CFOF
        movl $-3, %eax
        movl $7, %ecx
        imull %ecx
        CHECK32 "imul32 -3*7 low", %eax, 0xFFFFFFEB
        CHECK32 "imul32 -3*7 high (sign extension)", %edx, 0xFFFFFFFF
        CHECKF32 "imul32 -3*7 fits: CF OF clear", CFOF, 0
        movb $0x80, %al
        movb $0xFF, %cl
        imulb %cl                       # -128 * -1 = 128: AX=0080, not a sign extension
        movzwl %ax, %eax
        CHECK32 "imul8 -128*-1", %eax, 0x0080
        CHECKF32 "imul8 -128*-1 overflows AL: CF OF", CFOF, CFOF
        movl $0x40000000, %eax
        movl $4, %ecx
        imull %ecx, %eax                # two-operand: truncated to 32 bits
        CHECK32 "imul r32,r32 truncates", %eax, 0
        CHECKF32 "imul r32,r32 overflow: CF OF", CFOF, CFOF
        movl $100, %ecx
        imull $-5, %ecx, %eax           # three-operand, imm8 sign-extended
        CHECK32 "imul r32,r32,imm8", %eax, 0xFFFFFE0C
        CHECKF32 "imul r32,r32,imm8 fits: CF OF clear", CFOF, 0
        movl $0x10000, %ecx
        imull $0x10000, %ecx, %eax      # 2^32: truncated to 0
        CHECK32 "imul r32,r32,imm32 truncates", %eax, 0
        movw $-300, %cx
        movw $300, %ax
        imulw %cx, %ax                  # -90000 does not fit 16 bits
        movzwl %ax, %eax
        CHECK32 "imul r16,r16 truncates", %eax, ((-90000) & 0xFFFF)

        # ---- divide ----
        movl $1, %edx
        xorl %eax, %eax
        movl $0x10, %ecx
        divl %ecx                       # 2^32 / 16
        CHECK32 "div32 2^32/16 quotient", %eax, 0x10000000
        CHECK32 "div32 2^32/16 remainder", %edx, 0
        xorl %edx, %edx
        movl $100, %eax
        movl $7, %ecx
        divl %ecx
        CHECK32 "div32 100/7 quotient", %eax, 14
        CHECK32 "div32 100/7 remainder", %edx, 2
        movl $-100, %eax
        cltd
        movl $7, %ecx
        idivl %ecx
        CHECK32 "idiv32 -100/7 quotient (toward zero)", %eax, 0xFFFFFFF2
        CHECK32 "idiv32 -100/7 remainder (sign of dividend)", %edx, 0xFFFFFFFE
        movl $100, %eax
        cltd
        movl $-7, %ecx
        idivl %ecx
        CHECK32 "idiv32 100/-7 quotient", %eax, 0xFFFFFFF2
        CHECK32 "idiv32 100/-7 remainder", %edx, 2
        movl $0xABCD03E8, %eax          # AX = 1000
        movb $0x10, %cl
        divb %cl                        # AL = 62, AH = 8
        CHECK32 "div8 1000/16 (AH=rem, AL=quot, upper EAX kept)", %eax, 0xABCD083E

        # ---- #DE in protected mode, through IDT gate 0 ----
        SET_GATE32 0, de32_handler
        movl $0, DE_COUNT
        movl $de32_back1, DE_RESUME
        movl $0x10, %edx                # quotient 0x10_0000_0000 / 0x10 > 32 bits
        xorl %eax, %eax
        movl $0x10, %ecx
de32_div1:
        divl %ecx
de32_back1:
        CHECK32 "pm: div quotient overflow raises #de", DE_COUNT, 1
        CHECK32 "pm: #de saved eip is the div", DE_IP, de32_div1
        CHECK32 "pm: #de saved cs", DE_CS, FLAT_CS
        CHECK32 "pm: edx unchanged by the fault", %edx, 0x10
        movl $de32_back2, DE_RESUME
        movl $0x80000000, %eax          # -2^31 / -1 overflows
        cltd
        movl $-1, %ecx
de32_div2:
        idivl %ecx
de32_back2:
        CHECK32 "pm: idiv -2^31/-1 raises #de", DE_COUNT, 2
        CHECK32 "pm: second #de saved eip", DE_IP, de32_div2
        movl $de32_back3, DE_RESUME
        movl $0x0063, %eax
de32_aam:
        .byte 0xD4, 0x00                # aam 0
de32_back3:
        CHECK32 "pm: aam 0 raises #de", DE_COUNT, 3
        CHECK32 "pm: aam 0 saved eip", DE_IP, de32_aam
        CHECK32 "pm: aam 0 leaves eax", %eax, 0x0063
        FINISH32

        .code16
de16_handler:
        pushw %bp
        movw %sp, %bp
        pushw %ds
        pushl %eax
        pushw $0
        popw %ds
        incl DE_COUNT
        movzwl 2(%bp), %eax
        movl %eax, DE_IP
        movzwl 4(%bp), %eax
        movl %eax, DE_CS
        movw DE_RESUME, %ax
        movw %ax, 2(%bp)
        popl %eax
        popw %ds
        popw %bp
        iret

        .code32
de32_handler:
        pushl %eax
        incl DE_COUNT
        movl 4(%esp), %eax
        movl %eax, DE_IP
        movl 8(%esp), %eax
        movl %eax, DE_CS
        movl DE_RESUME, %eax
        movl %eax, 4(%esp)
        popl %eax
        iretl
