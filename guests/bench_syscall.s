# System calls with paging: user code at CPL 3 runs `int $0x80` ITERS times through a DPL-3
# interrupt gate into a ring-0 handler (a stack switch through the TSS each way) that adds
# EAX into a kernel counter and returns a value with IRET. Paging is on: 4 KB pages
# identity-map the first 4 MB, user-accessible. Per iteration: 4 user instructions, the INT,
# 6 handler instructions and the IRET. `int $0x81` (also DPL 3) ends the run in ring 0.
        .code32
        .include "bench.inc"
        .set KCODE, 0x08
        .set KDATA, 0x10
        .set UCODE, 0x1B
        .set UDATA, 0x23
        .set TSSSEL, 0x28
        BENCH_START
        cld
        # Page tables: PD[0] -> PT (0-4 MB, present, writable, user).
        movl $pd, %edi
        movl $2048, %ecx
        xorl %eax, %eax
        rep stosl
        movl $pt, %eax
        orl $7, %eax
        movl %eax, pd
        movl $pt, %edi
        movl $7, %eax
1:      movl %eax, (%edi)
        addl $4, %edi
        addl $4096, %eax
        cmpl $pt + 4096, %edi
        jb 1b
        # TSS: the ring-0 stack for entries from ring 3.
        movl $bench_stack_top, tss + 4
        movl $KDATA, tss + 8
        movw $104, tss + 102
        movl $tss, %eax
        movw %ax, gdt_tss + 2
        shrl $16, %eax
        movb %al, gdt_tss + 4
        movb %ah, gdt_tss + 7
        # IDT gates 0x80 (the call) and 0x81 (the exit): 32-bit interrupt gates, DPL 3.
        movl $syscall, %eax
        movw %ax, idt + 0x80 * 8
        movw $KCODE, idt + 0x80 * 8 + 2
        movw $0xEE00, idt + 0x80 * 8 + 4
        shrl $16, %eax
        movw %ax, idt + 0x80 * 8 + 6
        movl $sysexit, %eax
        movw %ax, idt + 0x81 * 8
        movw $KCODE, idt + 0x81 * 8 + 2
        movw $0xEE00, idt + 0x81 * 8 + 4
        shrl $16, %eax
        movw %ax, idt + 0x81 * 8 + 6
        lgdt gdt_ptr
        lidt idt_ptr
        ljmp $KCODE, $2f
2:      movw $KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %fs
        movw %ax, %gs
        movw $TSSSEL, %ax
        ltr %ax
        movl $pd, %eax
        movl %eax, %cr3
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        # To ring 3 (IF clear, IOPL 0).
        pushl $UDATA
        pushl $user_stack_top
        pushl $0x002
        pushl $UCODE
        pushl $user
        iret

user:   movw $UDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movl $ITERS, %ecx
        xorl %edi, %edi
3:      movl %ecx, %eax
        int $0x80
        addl %eax, %edi
        decl %ecx
        jnz 3b
        int $0x81

# The system call: counter += EAX; return EAX = counter (low bits).
syscall:
        pushl %ebx
        movl %ss:counter, %ebx
        addl %eax, %ebx
        movl %ebx, %ss:counter
        movl %ebx, %eax
        popl %ebx
        iret

sysexit:
        BENCH_END

        .section .data
        .balign 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF        # 08 ring-0 code
        .quad 0x00CF92000000FFFF        # 10 ring-0 data
        .quad 0x00CFFA000000FFFF        # 18 ring-3 code
        .quad 0x00CFF2000000FFFF        # 20 ring-3 data
gdt_tss:
        .quad 0x0000890000000067        # 28 32-bit TSS (base filled in)
gdt_end:
        .balign 4
        .word 0
gdt_ptr:
        .word gdt_end - gdt - 1
        .long gdt
        .word 0
idt_ptr:
        .word 256 * 8 - 1
        .long idt
counter:
        .long 0

        .section .bss
        .balign 4096
pd:     .skip 4096
pt:     .skip 4096
idt:    .skip 256 * 8
tss:    .skip 104
        .balign 16
        .skip 4096
user_stack_top:
