# Call-heavy recursion: fib(15) by the naive recursion (CALL/RET/PUSH/POP/XCHG), ITERS times.
        .code32
        .include "bench.inc"
        BENCH_START
        xorl %ebx, %ebx
        movl $ITERS, %ebp
2:      movl $15, %eax
        call fib
        addl %eax, %ebx
        decl %ebp
        jnz 2b
        BENCH_END

# EAX = n -> EAX = fib(n); clobbers EDX.
fib:    cmpl $2, %eax
        jb 1f
        pushl %eax
        decl %eax
        call fib
        xchgl %eax, (%esp)
        subl $2, %eax
        call fib
        popl %edx
        addl %edx, %eax
1:      ret
