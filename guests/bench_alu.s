# Register ALU loop: 10 instructions per iteration (add/xor/sub/inc/or/cmp/adc/and/dec/jnz).
        .code32
        .include "bench.inc"
        BENCH_START
        movl $ITERS, %ecx
        xorl %eax, %eax
        movl $1, %ebx
        movl $2, %edx
        movl $3, %esi
        xorl %edi, %edi
1:      addl %ebx, %eax
        xorl %eax, %edx
        subl %esi, %ebx
        incl %esi
        orl %edx, %edi
        cmpl %eax, %edx
        adcl $0, %edi
        andl $0x7FFFFFFF, %edi
        decl %ecx
        jnz 1b
        BENCH_END
