# From real mode to flat 32-bit protected mode and back: LGDT, CR0.PE, a far jump to 32-bit
# code, flat segment loads, an IDT, a #GP from a selector outside the GDT, then back to real
# mode through a 16-bit code segment.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set GP_COUNT, RT_SCRATCH
        .set GP_EIP, RT_SCRATCH + 4
        .set GP_CODE, RT_SCRATCH + 8

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        PUTS16 "real mode\n"
        movl %cr0, %eax
        andl $1, %eax
        CHECK16 "cr0.pe clear in real mode", %eax, 0

        ENTER_PM32 0x90000
        PUTS32 "protected mode\n"
        movl %cr0, %eax
        andl $0x80000001, %eax
        CHECK32 "cr0.pe set, paging off", %eax, 1
        movw %cs, %ax
        movzwl %ax, %eax
        CHECK32 "cs is the flat code selector", %eax, 0x08
        movw %ss, %ax
        movzwl %ax, %eax
        CHECK32 "ss is the flat data selector", %eax, 0x10

        # Flat: linear = offset, far above the 1 MB real-mode reach.
        movl $0x5AA5F00F, 0x200000
        movl 0x200000, %eax
        CHECK32 "flat access above 1 MB", %eax, 0x5AA5F00F

        sgdtl 0x600
        movzwl 0x600, %eax
        CHECK32 "sgdt limit", %eax, 39
        movl 0x602, %eax
        CHECK32 "sgdt base", %eax, pm32_gdt

        # 32-bit code: a 32-bit immediate and 32-bit addressing without prefixes.
        movl $pm_code_bytes, %esi
        movzbl (%esi), %eax
        CHECK32 "32-bit default operand size (b8 imm32)", %eax, 0xB8

        # A selector beyond the GDT limit (5 descriptors: limit 39) -> #GP(selector).
        SET_GATE32 13, gp_handler
        movl $0, GP_COUNT
        movl $0xFFFFFFFF, GP_CODE
        movw $0x48, %ax
gp_fault:
        movw %ax, %es
gp_resume:
        movw %es, %ax
        movzwl %ax, %eax
        CHECK32 "es unchanged by the faulting load", %eax, FLAT_DS
        CHECK32 "selector outside the gdt raises #gp", GP_COUNT, 1
        CHECK32 "#gp error code is the selector", GP_CODE, 0x48
        CHECK32 "#gp saved eip is the faulting instruction", GP_EIP, gp_fault

        # A software interrupt through a 32-bit interrupt gate: it clears IF and pushes
        # EFLAGS, CS and EIP; IRET restores them.
        SET_GATE32 0x40, int40_handler
        movl $0, RT_SCRATCH + 12
        pushl $0x803
        popfl
        int $0x40
int40_return:
        CHECKF32 "iret restores eflags (OF, CF)", 0x8D5, 0x801
        CHECK32 "int 40h pushed cs", RT_SCRATCH+16, FLAT_CS
        CHECK32 "int 40h pushed the return eip", RT_SCRATCH+12, int40_return
        CHECK32 "int 40h pushed eflags (OF, bit 1, CF)", RT_SCRATCH+20, 0x803

        # Back to real mode: 16-bit code segment, clear PE, far jump to a real-mode CS.
        ljmp $0x18, $pm16
        .code16
pm16:
        movw $0x20, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl %cr0, %eax
        andl $0xFFFFFFFE, %eax
        movl %eax, %cr0
        ljmp $0, $real_again
real_again:
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw $0x7C00, %sp
        lidtl %cs:real_idt
        PUTS16 "real mode again\n"
        movl %cr0, %eax
        andl $1, %eax
        CHECK16 "cr0.pe clear again", %eax, 0
        movw %cs, %ax
        movzwl %ax, %eax
        CHECK16 "cs is 0", %eax, 0
        FINISH16

        .code32
gp_handler:
        pushl %eax
        movl 4(%esp), %eax
        movl %eax, GP_CODE
        movl 8(%esp), %eax
        movl %eax, GP_EIP
        incl GP_COUNT
        movl $gp_resume, 8(%esp)
        popl %eax
        addl $4, %esp
        iretl

int40_handler:
        pushl %eax
        movl 4(%esp), %eax
        movl %eax, RT_SCRATCH + 12
        movl 8(%esp), %eax
        movl %eax, RT_SCRATCH + 16
        movl 12(%esp), %eax
        andl $0x0FFF, %eax
        movl %eax, RT_SCRATCH + 20
        xorl %eax, %eax                 # clears OF and CF: IRET must bring them back
        popl %eax
        iretl

pm_code_bytes:
        movl $0x12345678, %eax

        .section .rodata
        .balign 4
real_idt:
        .word 0x3FF
        .long 0
