# String instructions, per pass: REP STOSD and REP MOVSD over 16 KB, a LODSB summing loop
# over 1 KB, and a REPNE SCASB over 4 KB that finds nothing. Every REP iteration is one
# instruction (one tick).
        .code32
        .include "bench.inc"
        .set SRC, 0x200000
        .set DST, 0x300000
        BENCH_START
        cld
        xorl %ebx, %ebx
        movl $ITERS, %ebp
2:      movl $DST, %edi
        movl %ebp, %eax
        andl $0x7F7F7F7F, %eax          # no 0xFF byte: the SCASB below never matches
        movl $4096, %ecx
        rep stosl
        movl $DST, %esi
        movl $SRC, %edi
        movl $4096, %ecx
        rep movsl
        movl $SRC, %esi
        movl $1024, %ecx
        xorl %eax, %eax
1:      lodsb
        addl %eax, %ebx
        loop 1b
        movl $SRC, %edi
        movl $4096, %ecx
        movb $0xFF, %al
        repne scasb
        decl %ebp
        jnz 2b
        BENCH_END
