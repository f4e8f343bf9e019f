# A 64 KB ROM image. The CPU starts at F000:FFF0 (the reset vector, physical 0xFFFFFFF0),
# which holds a far jump into the ROM's code at F000:_start. The ROM is also visible at
# physical 0xF0000-0xFFFFF, where real-mode code runs from after that far jump.
        .code16
        .include "rt16.inc"

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7000
        PUTS16 "hello from ROM\n"

        movw %cs, %ax
        movzwl %ax, %eax
        CHECK16 "cs is f000 after the far jump", %eax, 0xF000

        movzwl %sp, %eax
        CHECK16 "stack set up", %eax, 0x7000
        pushl $0x12345678
        popl %ebx
        CHECK16 "push and pop through ss:sp", %ebx, 0x12345678

        # The byte at F000:FFF0 is the far jump of the reset vector (opcode EA).
        movw $0xF000, %ax
        movw %ax, %es
        movzbl %es:0xFFF0, %eax
        CHECK16 "reset vector holds a far jump", %eax, 0xEA

        # The ROM ignores writes.
        movl $0, %es:rom_word
        movl %es:rom_word, %eax
        CHECK16 "rom is read-only", %eax, 0xCAFEF00D

        # Segment arithmetic: 1234:0010 is physical 0x12350.
        movw $0x1234, %ax
        movw %ax, %es
        movl $0x11223344, %es:0x10
        movw $0x1235, %ax
        movw %ax, %fs
        movl %fs:0, %eax
        CHECK16 "real-mode segment base is selector*16", %eax, 0x11223344

        # Sum 1..100 = 5050.
        xorl %eax, %eax
        movl $100, %ecx
1:      addl %ecx, %eax
        loop 1b
        CHECK16 "sum 1..100", %eax, 5050

        # A software interrupt through the IVT: the handler returns a value in EBX and the
        # IRET restores FLAGS.
        SET_IVT16 0x30, int30_handler
        xorl %ebx, %ebx
        stc
        int $0x30
        CHECK16 "int 30h handler ran", %ebx, 0x30303030
        CHECKF16 "iret restores flags (CF)", 0x1, 0x1

        FINISH16

int30_handler:
        clc
        movl $0x30303030, %ebx
        iret

        .section .rodata
        .balign 4
rom_word:
        .long 0xCAFEF00D

        .section .reset, "ax"
        ljmp $0xF000, $_start
