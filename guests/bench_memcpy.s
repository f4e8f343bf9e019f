# Memory copy with MOV loads and stores: 16 KB per pass, 8 bytes per inner iteration
# (2 loads, 2 stores, 2 adds, dec, jnz), ITERS passes.
        .code32
        .include "bench.inc"
        .set SRC, 0x200000
        .set DST, 0x300000
        BENCH_START
        movl $ITERS, %ebp
2:      movl $SRC, %esi
        movl $DST, %edi
        movl $2048, %ecx
1:      movl (%esi), %eax
        movl 4(%esi), %ebx
        movl %eax, (%edi)
        movl %ebx, 4(%edi)
        addl $8, %esi
        addl $8, %edi
        decl %ecx
        jnz 1b
        decl %ebp
        jnz 2b
        BENCH_END
