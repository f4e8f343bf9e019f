# The stack: PUSH/POP forms (immediates, ESP itself, memory addressed through ESP, segment
# registers), PUSHA/POPA at 16 and 32 bits, ENTER/LEAVE with nesting levels 0, 1 and 2,
# near calls and returns with an immediate, indirect calls and jumps, far calls and returns.
# Expected layouts follow the SDM's operation sections:
#   PUSHA pushes AX CX DX BX SP(original) BP SI DI; POPA skips the saved SP;
#   PUSH ESP pushes the value before the push; POP m32 addressed through ESP computes the
#   address after ESP has been incremented;
#   ENTER size,level: push EBP; t = ESP; level-1 times EBP -= 4, push [EBP]; if level > 0
#   push t; EBP = t; ESP -= size.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set STK, 0x70000               # pm stack top for the layout checks (below the guest's
                                        # code is 0x7C00 and up, so keep clear of it)

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        PUTS16 "cpu_stack\n"

        # ---- real mode, 16-bit ----
        movw $0x1111, %ax
        movw $0x2222, %cx
        movw $0x3333, %dx
        movw $0x4444, %bx
        movw $0x5555, %bp
        movw $0x6666, %si
        movw $0x7777, %di
        movw %sp, %fs:RT_SCRATCH        # FS=0 after START16
        pushaw
        movw %sp, %bx
        movzwl %ss:14(%bx), %eax
        CHECK16 "pusha: ax at the top of the frame", %eax, 0x1111
        movzwl %ss:6(%bx), %eax
        movzwl %fs:RT_SCRATCH, %edx
        subl %edx, %eax
        CHECK16 "pusha: the saved sp is the original sp", %eax, 0
        movzwl %ss:0(%bx), %eax
        CHECK16 "pusha: di at the bottom", %eax, 0x7777
        movw $0xDEAD, %ss:6(%bx)        # POPA must not load SP from the frame
        xorw %ax, %ax
        xorw %di, %di
        popaw
        movzwl %di, %eax
        CHECK16 "popa restores di", %eax, 0x7777
        movzwl %sp, %eax
        CHECK16 "popa ignores the saved sp", %eax, 0x7C00

        movw %sp, %si
        enterw $4, $0
        movzwl %bp, %eax
        movzwl %si, %edx
        subl %edx, %eax
        CHECK16 "enter16 4,0: bp = sp-2", %eax, -2 & 0xFFFFFFFF
        movzwl %sp, %eax
        movzwl %bp, %edx
        subl %edx, %eax
        CHECK16 "enter16 4,0: sp = bp-4", %eax, -4 & 0xFFFFFFFF
        leavew
        movzwl %sp, %eax
        CHECK16 "leave16 restores sp", %eax, 0x7C00
        movzwl %bp, %eax
        CHECK16 "leave16 restores bp", %eax, 0x5555

        # Far call and far return with an immediate in real mode.
        pushw $0xBEEF                   # an argument for RETF 2 to remove
        lcall $0, $far16
far16_ret:
        movzwl %sp, %eax
        CHECK16 "retf 2 pops the argument", %eax, 0x7C00
        CHECK16 "lcall pushed cs:ip", %ebx, far16_ret

        ENTER_PM32 STK

        # ---- protected mode, 32-bit ----
        pushl $-1                       # 6A FF: sign-extended imm8
        popl %eax
        CHECK32 "push imm8 is sign-extended", %eax, 0xFFFFFFFF
        movl %esp, %edx
        pushl %esp
        popl %eax
        CHECK32 "push esp pushes the old value", %eax, STK
        pushl $0x1111
        pushl $0x2222
        popl (%esp)                     # address computed after the pop: overwrites 0x1111
        popl %eax
        CHECK32 "pop (esp) uses the incremented esp", %eax, 0x2222
        movl %esp, %eax
        CHECK32 "stack balanced after pop (esp)", %eax, STK
        pushw $0x1234
        movl %esp, %eax
        popw %cx
        CHECK32 "push imm16 with an operand-size prefix moves esp by 2", %eax, STK-2
        pushl %ds
        movl %esp, %eax
        popl %ecx
        CHECK32 "push ds moves esp by 4", %eax, STK-4
        movzwl %cx, %ecx
        CHECK32 "push ds stores the selector", %ecx, FLAT_DS
        pushl $FLAT_DS
        popl %es
        movw %es, %ax
        movzwl %ax, %eax
        CHECK32 "pop es loads the selector", %eax, FLAT_DS

        movl $0x11111111, %eax
        movl $0x22222222, %ecx
        movl $0x33333333, %edx
        movl $0x44444444, %ebx
        movl $0x55555555, %ebp
        movl $0x66666666, %esi
        movl $0x77777777, %edi
        pushal
        movl %esp, %eax
        CHECK32 "pushad moves esp by 32", %eax, STK-32
        CHECK32 "pushad: eax at the top", STK-4, 0x11111111
        CHECK32 "pushad: saved esp", STK-20, STK
        CHECK32 "pushad: edi at the bottom", STK-32, 0x77777777
        movl $0, STK-20
        xorl %eax, %eax
        xorl %ebx, %ebx
        popal
        CHECK32 "popad restores eax", %eax, 0x11111111
        CHECK32 "popad restores ebx", %ebx, 0x44444444
        movl %esp, %eax
        CHECK32 "popad ignores the saved esp", %eax, STK

        # ENTER with nesting levels.
        movl $0x6000, %ebp              # an outer frame whose display holds one pointer
        movl $0xDEAD0001, 0x6000-4
        enterl $16, $0
        CHECK32 "enter 16,0: ebp", %ebp, STK-4
        movl %esp, %eax
        CHECK32 "enter 16,0: esp", %eax, STK-4-16
        CHECK32 "enter 16,0: saved ebp", STK-4, 0x6000
        leavel
        movl %esp, %eax
        CHECK32 "leave: esp", %eax, STK
        CHECK32 "leave: ebp", %ebp, 0x6000
        enterl $8, $1
        CHECK32 "enter 8,1: ebp", %ebp, STK-4
        CHECK32 "enter 8,1: frame pointer pushed", STK-8, STK-4
        movl %esp, %eax
        CHECK32 "enter 8,1: esp", %eax, STK-8-8
        leavel
        enterl $0, $2
        CHECK32 "enter 0,2: ebp", %ebp, STK-4
        CHECK32 "enter 0,2: outer display entry copied", STK-8, 0xDEAD0001
        CHECK32 "enter 0,2: frame pointer pushed", STK-12, STK-4
        movl %esp, %eax
        CHECK32 "enter 0,2: esp", %eax, STK-12
        leavel

        # Near calls: RET imm16 removes arguments; indirect calls and jumps.
        pushl $1
        pushl $2
        call add_args
        CHECK32 "call/ret 8: result", %eax, 3
        movl %esp, %edx
        CHECK32 "call/ret 8: arguments removed", %edx, STK
        movl $add_one, %ecx
        movl $41, %eax
        call *%ecx
        CHECK32 "call through a register", %eax, 42
        call *call_table+4
        CHECK32 "call through memory", %eax, 43
        movl $1, %ebx
        jmp *jump_table(,%ebx,4)
        CHECK32 "jmp through a table skipped this", $0, 1
jump_target:
        CHECK32 "jmp through a table", %ebx, 1

        # Far call and far return in protected mode.
        lcall $FLAT_CS, $far32
far32_ret:
        CHECK32 "lcall pushed eip", %ebx, far32_ret
        CHECK32 "lcall pushed cs", %ecx, FLAT_CS
        movl %esp, %eax
        CHECK32 "lret restored esp", %eax, STK
        FINISH32

        .code16
far16:
        movw %sp, %bx
        movzwl %ss:(%bx), %ebx          # the return IP
        lretw $2
        .code32
far32:
        movl (%esp), %ebx
        movl 4(%esp), %ecx
        lretl

add_args:
        movl 4(%esp), %eax
        addl 8(%esp), %eax
        ret $8
add_one:
        incl %eax
        ret

        .section .rodata
        .balign 4
call_table:
        .long 0, add_one
jump_table:
        .long 0, jump_target
