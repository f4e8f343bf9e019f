# Output without end: one byte to the debug console (port 0xE9) every second instruction,
# for ever. A stress guest for the recorder and for replay in bounded memory: a trace of it
# holds one output event per two ticks.
        .code16
        .section .text.entry, "ax"
        .globl _start
_start:
        cli
        movw $0xE9, %dx
        movb $'x', %al
1:      outb %al, %dx
        jmp 1b
