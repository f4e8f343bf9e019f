# A ROM that resets the machine for ever: it writes one byte to the debug console, then
# pulses the reset line through the 8042 (command FEh); the CPU starts again at the reset
# vector. A stress guest: each round logs an output and a guest-reset event.
        .code16
        .section .text.entry, "ax"
        .globl _start
_start:
        cli
        movw $0xE9, %dx
        movb $'R', %al
        outb %al, %dx
        movb $0xFE, %al
        outb %al, $0x64
1:      hlt
        jmp 1b

        .section .reset, "ax"
        ljmp $0xF000, $_start
