# A Multiboot (version 1) ELF kernel. The boot loader enters it in flat 32-bit protected
# mode with EAX = 0x2BADB002 and EBX = the physical address of the multiboot information.
# It checks the boot state, prints the memory map, loads its own GDT, and exits.
#
# Lines starting with "mem" depend on the boot loader (its memory map), not on the CPU.
        .include "rt32.inc"
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003       # page-align modules, provide memory information
        .set MB_BOOTED, 0x2BADB002

        .section .multiboot, "a"
        .balign 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text.entry, "ax"
        .globl _start
_start:
        cli
        movl %eax, %edi                 # keep the boot registers out of the runtime's way
        movl %ebx, %ebp
        movl $stack_top, %esp
        pushfl
        popl %esi                       # EFLAGS at entry

        # The boot loader's selectors must be reloadable: its GDT is in memory.
        movw %ds, %ax
        movw %ax, %ds
        movw %ss, %ax
        movw %ax, %ss

        # Our own GDT, so that the runtime's FLAT_DS is ours.
        lgdt gdt_desc
        ljmp $FLAT_CS, $1f
1:      movw $FLAT_DS, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movl $0, RT_CHECKS
        movl $0, RT_FAILS

        PUTS32 "multiboot kernel\n"
        CHECK32 "eax holds the multiboot magic", %edi, MB_BOOTED
        movl %esi, %eax
        andl $0x00020200, %eax
        CHECK32 "eflags.if and eflags.vm clear", %eax, 0
        movl %cr0, %eax
        andl $0x80000001, %eax
        CHECK32 "cr0.pe set, paging off", %eax, 1

        movl (%ebp), %eax               # flags
        andl $0x41, %eax
        CHECK32 "info flags: memory sizes and memory map", %eax, 0x41

        # mem_lower is conventional memory in KB: at most 640, and a PC has at least 512.
        movl 4(%ebp), %eax
        PUTS32 "mem_lower="
        call rt32_hex32
        PUTS32 " mem_upper="
        movl 8(%ebp), %eax
        call rt32_hex32
        PUTS32 "\n"
        movl 4(%ebp), %eax
        xorl %ecx, %ecx
        cmpl $512, %eax
        jb 2f
        cmpl $640, %eax
        ja 2f
        incl %ecx
2:      CHECK32 "mem_lower between 512 and 640 KB", %ecx, 1
        movl 8(%ebp), %eax
        xorl %ecx, %ecx
        cmpl $1024, %eax
        jb 3f
        incl %ecx
3:      CHECK32 "mem_upper at least 1 MB", %ecx, 1

        # Walk the memory map: entries are (size, base, length, type) with size not
        # counting itself. Print each; look for available RAM that contains 1 MB.
        movl 48(%ebp), %ebx             # mmap_addr
        movl 44(%ebp), %ecx             # mmap_length
        addl %ebx, %ecx                 # end
        xorl %edx, %edx                 # entries containing 1 MB, type 1
        xorl %edi, %edi                 # entries with a size below 20
4:      cmpl %ecx, %ebx
        jae 6f
        cmpl $20, (%ebx)
        jae 5f
        incl %edi
5:      PUTS32 "mmap base="
        movl 8(%ebx), %eax
        call rt32_hex32
        movl 4(%ebx), %eax
        call rt32_hex32
        PUTS32 " length="
        movl 16(%ebx), %eax
        call rt32_hex32
        movl 12(%ebx), %eax
        call rt32_hex32
        PUTS32 " type="
        movl 20(%ebx), %eax
        call rt32_hex32
        PUTS32 "\n"
        cmpl $1, 20(%ebx)
        jne 7f
        cmpl $0, 8(%ebx)                # base below 4 GB
        jne 7f
        cmpl $0x100000, 4(%ebx)         # base <= 1 MB
        ja 7f
        movl 4(%ebx), %eax
        addl 12(%ebx), %eax             # base + length > 1 MB (or carried past 4 GB)
        jc 8f
        cmpl $0x100000, %eax
        jbe 7f
8:      incl %edx
7:      movl (%ebx), %eax
        leal 4(%ebx, %eax), %ebx
        jmp 4b
6:      CHECK32 "memory map entries are at least 20 bytes", %edi, 0
        CHECK32 "memory map has available RAM at 1 MB", %edx, 1

        # The loader zeroes the part of a segment beyond its file size (.bss).
        movl $bss_area, %esi
        movl $(BSS_WORDS), %ecx
        xorl %eax, %eax
9:      orl (%esi), %eax
        addl $4, %esi
        loop 9b
        CHECK32 "bss is zeroed", %eax, 0

        # Code and data linked at 1 MB run where they were linked.
        movl $1f, %eax
1:      CHECK32 "kernel runs at its link address", %eax, 1b
        movl data_word, %eax
        CHECK32 "initialised data loaded", %eax, 0x600DF00D
        FINISH32

        .section .rodata
        .balign 8
gdt:
        .quad 0
        .quad 0x00CF9B000000FFFF        # 0x08: flat 32-bit code
        .quad 0x00CF93000000FFFF        # 0x10: flat 32-bit data
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt

        .section .data
        .balign 4
data_word:
        .long 0x600DF00D

        .section .bss
        .balign 16
        .set BSS_WORDS, 1024
bss_area:
        .skip BSS_WORDS * 4
stack:
        .skip 16384
stack_top:
