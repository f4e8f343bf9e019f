# An input-driven guest with a real bug, for `aero fuzz inputs`: it reads decimal numbers,
# one per line, from COM1 and on an empty line prints how many it has seen, their sum and
# their mean. The mean is sum / count, and nothing checks that count is not zero: an empty
# line before any number divides by zero (#DE, reported by the runtime as
# "UNEXPECTED EXCEPTION 00000000" with RESULT FAIL and exit status 3).
#
# A line with anything but digits prints "?" and is ignored; "q" on a line of its own ends
# the run (RESULT PASS, exit status 1). Output goes to the debug console (port 0xE9).
# Between bytes the CPU sleeps in HLT; COM1's receive interrupt (IRQ 4, vector 0Ch with
# the 8259A at base 08h) wakes it. NMIs are ignored.
        .code16
        .include "rt16.inc"
        .code16

        .set COM1, 0x3F8
        .set COM1_IER, COM1 + 1
        .set COM1_LSR, COM1 + 5
        .set ACC, RT_SCRATCH            # the number being typed
        .set STATE, RT_SCRATCH + 4      # bit 0: a character on this line, 1: a non-digit
        .set COUNT, RT_SCRATCH + 8      # numbers seen
        .set SUM, RT_SCRATCH + 12       # their sum
        .set QUIT, RT_SCRATCH + 16      # the line is exactly "q" so far

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        SET_IVT16 2, ignore_nmi
        SET_IVT16 0x0C, com1_irq
        movl $0, ACC
        movl $0, STATE
        movl $0, COUNT
        movl $0, SUM
        movl $0, QUIT
        # 8259A: edge triggered, vectors 08h-0Fh, only IRQ 4 unmasked.
        movb $0x11, %al
        outb %al, $0x20
        movb $0x08, %al
        outb %al, $0x21
        movb $0x04, %al
        outb %al, $0x21
        movb $0x01, %al
        outb %al, $0x21
        movb $0xEF, %al
        outb %al, $0x21
        movb $0xFF, %al
        outb %al, $0xA1
        # COM1: interrupt on received data; OUT2 gates the interrupt line to the PIC.
        movw $COM1 + 4, %dx
        movb $0x08, %al
        outb %al, %dx
        movw $COM1_IER, %dx
        movb $0x01, %al
        outb %al, %dx
        PUTS16 "stats: numbers, one per line; an empty line prints n, sum and mean\n"

# Take every byte COM1 holds; sleep when there is none (CLI before the test, STI; HLT
# after it, so that an interrupt between the two cannot be slept through).
main_loop:
        cli
        movw $COM1_LSR, %dx
        inb %dx, %al
        testb $0x01, %al
        jnz 1f
        sti
        hlt
        jmp main_loop
1:      sti
        movw $COM1, %dx
        inb %dx, %al
        call on_char
        jmp main_loop

# AL = one received byte.
on_char:
        cmpb $'\r', %al
        je end_of_line
        cmpb $'\n', %al
        je end_of_line
        movb $0, %ah
        cmpb $'q', %al
        jne 1f
        testl $1, STATE
        jnz 1f
        movl $1, QUIT
        jmp 3f
1:      movl $0, QUIT
        cmpb $'0', %al
        jb 2f
        cmpb $'9', %al
        ja 2f
        subb $'0', %al
        movzbl %al, %ecx
        movl ACC, %eax
        imull $10, %eax
        addl %ecx, %eax
        movl %eax, ACC
        orl $1, STATE
        ret
2:      orl $2, STATE
3:      orl $1, STATE
        ret

end_of_line:
        cmpl $0, QUIT
        jne quit
        testl $1, STATE
        jz print_stats
        testl $2, STATE
        jz 1f
        PUTS16 "?\n"
        jmp 2f
1:      incl COUNT
        movl ACC, %eax
        addl %eax, SUM
2:      movl $0, ACC
        movl $0, STATE
        ret

# "n=XXXXXXXX sum=XXXXXXXX mean=XXXXXXXX" (hex). The bug: no check for COUNT = 0.
print_stats:
        PUTS16 "n="
        movl COUNT, %eax
        call rt16_hex32
        PUTS16 " sum="
        movl SUM, %eax
        call rt16_hex32
        PUTS16 " mean="
        movl SUM, %eax
        xorl %edx, %edx
        divl COUNT
        call rt16_hex32
        PUTS16 "\n"
        ret

quit:
        FINISH16

ignore_nmi:
        iret

com1_irq:
        pushw %ax
        movb $0x20, %al
        outb %al, $0x20
        popw %ax
        iret
