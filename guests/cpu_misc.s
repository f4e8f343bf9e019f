# CMPXCHG, CMPXCHG8B, XADD, BSWAP, CPUID and the EFLAGS bits that identify a CPUID-capable
# processor, LAHF/SAHF, sign and zero extension, LEA and XCHG. Expected values follow the
# SDM: CMPXCHG compares the accumulator with the destination (flags as CMP), stores the
# source on equality and loads the accumulator otherwise; XADD computes SRC+DEST, then
# SRC = old DEST and DEST = the sum (so XADD r,r with one register doubles it); EFLAGS
# bits 3, 5 and 15 read as 0 and bit 1 as 1; EFLAGS.ID (21) and AC (18) are writable.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set MEM, 0x3000
        .set ARITH, 0x8D5

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        ENTER_PM32 0x90000
        PUTS32 "cpu_misc\n"

        # ---- CMPXCHG ----
        movl $5, MEM
        movl $5, %eax
        movl $9, %ecx
        cmpxchgl %ecx, MEM
        CHECKF32 "cmpxchg equal: ZF", ARITH, 0x044
        CHECK32 "cmpxchg equal: destination = source", MEM, 9
        CHECK32 "cmpxchg equal: eax kept", %eax, 5
        movl $4, %eax
        movl $7, %ecx
        cmpxchgl %ecx, MEM
        CHECKF32 "cmpxchg unequal: flags of 4-9 (SF AF CF)", ARITH, 0x091
        CHECK32 "cmpxchg unequal: eax = destination", %eax, 9
        CHECK32 "cmpxchg unequal: destination kept", MEM, 9
        movb $0x33, %al
        movb $0x33, %bl
        movb $0x44, %cl
        cmpxchgb %cl, %bl
        movzbl %bl, %ebx
        CHECK32 "cmpxchg8 register destination", %ebx, 0x44

        # ---- CMPXCHG8B ----
        movl $0x11111111, MEM
        movl $0x22222222, MEM+4
        movl $0x11111111, %eax
        movl $0x22222222, %edx
        movl $0xAAAAAAAA, %ebx
        movl $0xBBBBBBBB, %ecx
        cmpxchg8b MEM
        CHECKF32 "cmpxchg8b equal: ZF", 0x40, 0x40
        CHECK32 "cmpxchg8b equal: low = ebx", MEM, 0xAAAAAAAA
        CHECK32 "cmpxchg8b equal: high = ecx", MEM+4, 0xBBBBBBBB
        xorl %eax, %eax
        xorl %edx, %edx
        cmpxchg8b MEM
        CHECKF32 "cmpxchg8b unequal: ZF clear", 0x40, 0
        CHECK32 "cmpxchg8b unequal: eax = low", %eax, 0xAAAAAAAA
        CHECK32 "cmpxchg8b unequal: edx = high", %edx, 0xBBBBBBBB

        # ---- XADD, BSWAP, XCHG ----
        movl $10, MEM
        movl $3, %eax
        xaddl %eax, MEM
        CHECK32 "xadd: destination = sum", MEM, 13
        CHECK32 "xadd: source = old destination", %eax, 10
        CHECKF32 "xadd flags of 10+3 (none)", ARITH, 0
        movl $7, %eax
        xaddl %eax, %eax
        CHECK32 "xadd eax,eax doubles", %eax, 14
        movl $0xFFFFFFFF, %ecx
        movl $1, %edx
        xaddl %edx, %ecx
        CHECKF32 "xadd ffffffff+1 flags (ZF AF PF CF)", ARITH, 0x055
        movl $0x12345678, %eax
        bswapl %eax
        CHECK32 "bswap", %eax, 0x78563412
        movl $0x80000001, %ebx
        bswapl %ebx
        CHECK32 "bswap ebx", %ebx, 0x01000080
        movl $1, %eax
        movl $2, MEM
        xchgl %eax, MEM
        CHECK32 "xchg mem: eax", %eax, 2
        CHECK32 "xchg mem: memory", MEM, 1

        # ---- EFLAGS ----
        pushl $0x0000802A               # reserved bits 1, 3, 5, 15 written as 1/1/1/1
        popfl
        pushfl
        popl %eax
        CHECK32 "eflags reserved bits: 1 set, 3 5 15 clear", %eax, 0x00000002
        pushfl
        popl %ecx
        movl %ecx, %eax
        xorl $0x00200000, %eax
        pushl %eax
        popfl
        pushfl
        popl %eax
        xorl %ecx, %eax
        CHECK32 "eflags.id can be toggled (cpuid present)", %eax, 0x00200000
        pushl %ecx
        popfl
        pushfl
        popl %ecx
        movl %ecx, %eax
        xorl $0x00040000, %eax
        pushl %eax
        popfl
        pushfl
        popl %eax
        xorl %ecx, %eax
        CHECK32 "eflags.ac can be toggled (486 and later)", %eax, 0x00040000
        pushl %ecx
        popfl
        movl $0xFFFF, %eax
        sahf                            # AH=FF: SF ZF AF PF CF set, bits 1/3/5 fixed
        movb $0, %ah
        lahf
        movzbl %ah, %eax
        CHECK32 "sahf/lahf round trip", %eax, 0xD7

        # ---- extension, LEA ----
        movb $0x80, %al
        movsbl %al, %eax
        CHECK32 "movsx byte", %eax, 0xFFFFFF80
        movl $0xFFFF, %ecx
        movzwl %cx, %eax
        CHECK32 "movzx word", %eax, 0xFFFF
        movl $0x00008000, %eax
        cwtl
        CHECK32 "cwde", %eax, 0xFFFF8000
        movl $0x80000000, %eax
        cltd
        CHECK32 "cdq", %edx, 0xFFFFFFFF
        movl $0x100, %eax
        movl $3, %ecx
        leal 0x10(%eax,%ecx,4), %edx
        CHECK32 "lea base+index*4+disp", %edx, 0x11C
        leaw 0x10(%eax,%ecx,4), %dx
        movzwl %dx, %edx
        CHECK32 "lea 16-bit destination", %edx, 0x11C

        # ---- CPUID ----
        xorl %eax, %eax
        cpuid
        movl %ebx, MEM
        movl %edx, MEM+4
        movl %ecx, MEM+8
        movb $0, MEM+12
        xorl %ecx, %ecx
        cmpl $1, %eax
        jb 1f
        incl %ecx
1:      CHECK32 "cpuid 0: leaf 1 exists", %ecx, 1
        PUTS32 "cpuid vendor "
        movl $MEM, %esi
        call rt32_puts
        PUTS32 "\n"
        movl $1, %eax
        cpuid
        movl %eax, %ebx
        shrl $8, %ebx
        andl $0xF, %ebx
        xorl %ecx, %ecx
        cmpl $6, %ebx
        jb 2f
        incl %ecx
2:      CHECK32 "cpuid 1: family 6 or later (i686)", %ecx, 1
        andl $0x00008110, %edx
        CHECK32 "cpuid 1: tsc, cx8 and cmov advertised", %edx, 0x00008110
        FINISH32
