# Hardware task switching between 32-bit TSSs: JMP to a TSS and back, CALL through a task gate
# and IRET back (NT, back link, busy bits), INT n through an IDT task gate, and a #GP with an
# error code taken by a task through an IDT task gate. Task A is the boot task (TSS_SEL),
# B and C have their own TSSs and stacks. Expected values: SDM Vol. 3A 7.3 "Task Switching"
# and 7.4 "Task Linking" (Table 7-2: the busy flag, NT and the previous task link for JMP,
# CALL, interrupts and IRET), 6.12.2 "Interrupt Tasks" (the error code on the new task's
# stack); CR0.TS is set by every task switch (2.5 "Control Registers").
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .include "sys32.inc"
        .code16
        .set TSSB, 0x40
        .set TGATE, 0x48                # task gate to TSS B
        .set TSSC, 0x50
        .set TSSB_BASE, 0x2100
        .set TSSC_BASE, 0x2200
        .set B_COUNT, 0x600
        .set C_ERR, 0x604
        .set C_LINK, 0x608
        .set C_NT, 0x60C
        .set F_NT, 0x4000

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        ENTER_PM32 0x90000
        PUTS32 "sys_tasks\n"
        call sys_init
        movl $TSSB_BASE, %edi
        movl $task_b, %eax
        movl $0x60000, %ebx
        movl $0xB0B0B0B0, %ecx
        call make_tss
        movl $TSSC_BASE, %edi
        movl $task_c, %eax
        movl $0x50000, %ebx
        movl $0xC0C0C0C0, %ecx
        call make_tss
        SYS_DESC SYS_GDT+TSSB, TSSB_BASE, 0x67, 0x89, 0
        SYS_DESC SYS_GDT+TSSC, TSSC_BASE, 0x67, 0x89, 0
        SYS_TASKGATE SYS_GDT+TGATE, TSSB, 0x85
        SYS_TASKGATE IDT_BASE+0x40*8, TSSB, 0x85
        SYS_TASKGATE IDT_BASE+13*8, TSSC, 0x85
        movl $0, B_COUNT

        # 1. JMP to TSS B; B jumps back here.
        movl $0xA0A0A0A0, %eax
        ljmp $TSSB, $0
        CHECK32 "jmp back to a: eax restored from tss a", %eax, 0xA0A0A0A0
        strw %ax
        movzwl %ax, %eax
        CHECK32 "jmp back to a: tr", %eax, TSS_SEL
        movzbl SYS_GDT+TSSB+5, %eax
        CHECK32 "jmp back to a: tss b available again", %eax, 0x89
        movl %cr0, %eax
        andl $8, %eax
        CHECK32 "task switch sets cr0.ts", %eax, 8
        clts

        # 2. CALL through the task gate; B returns with IRET.
        lcall $TGATE, $0
        pushfl
        popl %eax
        andl $F_NT, %eax
        CHECK32 "iret back to a: nt clear", %eax, 0
        movzbl SYS_GDT+TSSB+5, %eax
        CHECK32 "iret: tss b no longer busy", %eax, 0x89
        movzbl SYS_GDT+TSS_SEL+5, %eax
        CHECK32 "iret: tss a busy", %eax, 0x8B
        movl TSSB_BASE+0x24, %eax
        andl $F_NT, %eax
        CHECK32 "iret: nt cleared in b's saved eflags", %eax, 0

        # 3. INT 40h through an IDT task gate.
        int $0x40
        CHECK32 "int 40h through a task gate: b ran three times", B_COUNT, 3
        movzwl TSSB_BASE, %eax
        CHECK32 "int 40h: b's back link is a", %eax, TSS_SEL

        # 4. #GP(selector) through an IDT task gate to task C.
        movw $0x7F8, %ax                # beyond the GDT limit (0x7F)
gp_insn:
        movw %ax, %ds
gp_resume:
        CHECK32 "#gp through a task gate: error code on c's stack", C_ERR, 0x7F8
        CHECK32 "#gp task c: back link is a", C_LINK, TSS_SEL
        CHECK32 "#gp task c: nt set", C_NT, F_NT
        movw %ds, %ax
        movzwl %ax, %eax
        CHECK32 "#gp: ds unchanged in a", %eax, FLAT_DS
        FINISH32

# EDI = TSS base, EAX = EIP, EBX = ESP, ECX = EAX of a new ring-0 task (flat selectors).
make_tss:
        pushl %eax
        pushl %ecx
        pushl %edi
        movl $(0x68 / 4), %ecx
        xorl %eax, %eax
        rep stosl
        popl %edi
        popl %ecx
        popl %eax
        movl %eax, 0x20(%edi)
        movl $2, 0x24(%edi)
        movl %ecx, 0x28(%edi)
        movl %ebx, 0x38(%edi)
        movl $FLAT_DS, 0x48(%edi)
        movl $FLAT_CS, 0x4C(%edi)
        movl $FLAT_DS, 0x50(%edi)
        movl $FLAT_DS, 0x54(%edi)
        movl $FLAT_DS, 0x58(%edi)
        movl $FLAT_DS, 0x5C(%edi)
        movw $0x68, 0x66(%edi)
        ret

# ---- task B ----
task_b:
        CHECK32 "task b: eax from its tss", %eax, 0xB0B0B0B0
        strw %ax
        movzwl %ax, %eax
        CHECK32 "task b: tr", %eax, TSSB
        movzbl SYS_GDT+TSS_SEL+5, %eax
        CHECK32 "jmp: tss a no longer busy", %eax, 0x89
        movzbl SYS_GDT+TSSB+5, %eax
        CHECK32 "jmp: tss b busy", %eax, 0x8B
        pushfl
        popl %eax
        andl $F_NT, %eax
        CHECK32 "jmp: nt clear in b", %eax, 0
        incl B_COUNT
        ljmp $TSS_SEL, $0
        # Resumed by A's CALL through the task gate.
        pushfl
        popl %eax
        andl $F_NT, %eax
        CHECK32 "call: nt set in b", %eax, F_NT
        movzwl TSSB_BASE, %eax
        CHECK32 "call: b's back link is a", %eax, TSS_SEL
        movzbl SYS_GDT+TSS_SEL+5, %eax
        CHECK32 "call: tss a stays busy", %eax, 0x8B
        incl B_COUNT
        iretl
        # Resumed by INT 40h.
        pushfl
        popl %eax
        andl $F_NT, %eax
        CHECK32 "int 40h: nt set in b", %eax, F_NT
        incl B_COUNT
        iretl

# ---- task C: the #GP handler task ----
task_c:
        popl %eax                       # the error code, pushed on this task's stack
        movl %eax, C_ERR
        movzwl TSSC_BASE, %eax
        movl %eax, C_LINK
        pushfl
        popl %eax
        andl $F_NT, %eax
        movl %eax, C_NT
        movl $gp_resume, SYS_TSS+0x20   # A resumes after the faulting instruction
        iretl
