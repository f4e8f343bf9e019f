# Virtual-8086 mode round trips. (1) IRET from ring 0 into V86 with IOPL 3: INT 21h reaches a
# ring-0 handler through a DPL-3 interrupt gate with the V86 frame (EIP CS EFLAGS ESP SS ES DS
# FS GS) and the data segment registers null, IRET returns; the V86 code prints through the
# TSS I/O bitmap (port 0xE9 allowed, 0x80 denied whatever the IOPL). (2) IOPL 0: CLI, PUSHF
# and HLT are #GP(0) to ring 0. (3) A task switch to a TSS with EFLAGS.VM enters V86 too.
# Expected values: SDM Vol. 3B 20.2 "Virtual-8086 Mode" (20.2.7 sensitive instructions, 20.2.8
# I/O), 20.3.1 "Class 1 — Hardware Interrupts and Exceptions" (Figure 20-2 the ring-0 frame)
# and Vol. 1 18.5.2 "I/O Permission Bit Map".
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .set SYS_TSS_LIMIT, 0x68 + 32   # an I/O bitmap for ports 0-0xFF, then its 0xFF byte
        .include "sys32.inc"
        .code16
        .set TSSV, 0x40
        .set TSSV_BASE, 0x2200
        .set F_VM, 0x20000
        .set V, 0x600
        .set V_F, V                     # 9 dwords: the frame INT 21h pushed
        .set V_SEGS, V + 0x24           # DS ES FS GS in the INT 21h handler
        .set V_AX, V + 0x34             # AX in V86 after INT 21h returned
        .set V_GP_N, V + 0x38           # #GP count, then the opcodes that faulted
        .set V_GP_OPS, V + 0x3C
        .set V_GP_ERR, V + 0x40         # error codes or-ed together
        .set V_EXIT_FL, V + 0x44        # EFLAGS pushed by the exit path
        .set V_EXIT_CS, V + 0x48
        .set V_DS3, V + 0x4C            # DS as the V86 task saw it
        .set V_R0_ESP, V + 0x50
        .set V_CONT, V + 0x54           # where the exit path continues in ring 0

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        ENTER_PM32 0x90000
        PUTS32 "sys_v86\n"
        # The I/O bitmap of the boot TSS: every port of 0-0xFF denied but 0xE9.
        movl $(SYS_TSS + 0x68), %edi
        movl $33, %ecx
        movb $0xFF, %al
        rep stosb
        andb $0xFD, SYS_TSS + 0x68 + (0xE9 >> 3)
        call sys_init
        SYS_GATE IDT_BASE+0x21*8, FLAT_CS, int21_handler, 0xEE, 0
        SYS_GATE IDT_BASE+0x22*8, FLAT_CS, exit_handler, 0xEE, 0
        SET_GATE32 13, gp_handler
        movl $0, V_GP_N
        movl $0, V_GP_OPS
        movl $0, V_GP_ERR

        # ---- 1. IRET into V86, IOPL 3 ----
        movl $phase1_done, V_CONT
        movl $(F_VM|0x3002), %eax
        movl $v86_phase1, %ebx
        jmp enter_v86
phase1_done:
        movl V_R0_ESP, %esp             # back on the boot task's own stack
        CHECK32 "int 21h frame: eip", V_F, v86_after_int
        CHECK32 "int 21h frame: cs", V_F+4, 0
        CHECK32 "int 21h frame: eflags (vm iopl)", V_F+8, F_VM|0x3000
        CHECK32 "int 21h frame: esp", V_F+12, 0x7000
        CHECK32 "int 21h frame: ss", V_F+16, 0
        CHECK32 "int 21h frame: es", V_F+20, 0x0100
        CHECK32 "int 21h frame: ds", V_F+24, 0
        CHECK32 "int 21h frame: fs", V_F+28, 0x0300
        CHECK32 "int 21h frame: gs", V_F+32, 0x0400
        CHECK32 "int 21h handler: ds es fs gs null", V_SEGS, 0
        CHECK32 "iret to v86: ax from the handler", V_AX, 0x5678
        CHECK32 "in from a port the bitmap denies: #gp", V_GP_N, 1
        CHECK32 "the #gp was the in", V_GP_OPS, 0xE4
        CHECK32 "int 22h exit: vm in the pushed eflags", V_EXIT_FL, F_VM
        CHECK32 "int 22h exit: v86 cs", V_EXIT_CS, 0

        # ---- 2. IOPL 0: CLI, PUSHF, HLT fault ----
        movl $0, V_GP_N
        movl $0, V_GP_OPS
        movl $phase2_done, V_CONT
        movl $(F_VM|0x0002), %eax
        movl $v86_phase2, %ebx
        jmp enter_v86
phase2_done:
        movl V_R0_ESP, %esp
        CHECK32 "iopl 0: cli pushf hlt each #gp", V_GP_N, 3
        CHECK32 "iopl 0: the faulting opcodes in order", V_GP_OPS, 0xF49CFA
        CHECK32 "iopl 0: error codes 0", V_GP_ERR, 0

        # ---- 3. A task switch into V86 ----
        movl $TSSV_BASE, %edi
        movl $(0x68 / 4), %ecx
        xorl %eax, %eax
        rep stosl
        movl $0x78000, TSSV_BASE+4      # SS0:ESP0 of the V86 task
        movl $FLAT_DS, TSSV_BASE+8
        movl $v86_phase3, TSSV_BASE+0x20
        movl $(F_VM|0x3002), TSSV_BASE+0x24
        movl $0x6000, TSSV_BASE+0x38    # ESP
        movl $0x0050, TSSV_BASE+0x54    # DS = 50h: base 500h
        movw $0x68, TSSV_BASE+0x66
        SYS_DESC SYS_GDT+TSSV, TSSV_BASE, 0x67, 0x89, 0
        movl $phase3_in_v_task, V_CONT
        ljmp $TSSV, $0
        # The V86 task jumps back to the boot task, which resumes here.
        strw %ax
        movzwl %ax, %eax
        CHECK32 "back in the boot task: tr", %eax, TSS_SEL
        CHECK32 "v86 task: ds = 50h as loaded from its tss", V_DS3, 0x50
        CHECK32 "v86 task: int 22h frame eflags", V_EXIT_FL, F_VM
        movl TSSV_BASE+0x24, %eax
        andl $F_VM, %eax
        CHECK32 "v86 task: its saved eflags have vm clear (ring 0 then)", %eax, 0
        FINISH32

# EAX = EFLAGS, EBX = IP: IRET into V86 at 0:IP, SS:SP = 0:7000, DS 0, ES 100h, FS 300h,
# GS 400h.
enter_v86:
        movl %esp, V_R0_ESP
        pushl $0x0400
        pushl $0x0300
        pushl $0
        pushl $0x0100
        pushl $0
        pushl $0x7000
        pushl %eax
        pushl $0
        pushl %ebx
        iretl

# ---- ring-0 handlers ----
int21_handler:
        movw %ds, %ax                   # null in the handler; SS is the flat ring-0 stack
        movw %es, %bx
        orw %bx, %ax
        movw %fs, %bx
        orw %bx, %ax
        movw %gs, %bx
        orw %bx, %ax
        movzwl %ax, %eax
        movl %eax, %ss:V_SEGS
        pushl $FLAT_DS
        popl %ds
        movl $0, %ecx
1:      movl (%esp, %ecx, 4), %eax
        movl %eax, V_F(, %ecx, 4)
        incl %ecx
        cmpl $9, %ecx
        jne 1b
        andl $(F_VM|0x3000), V_F+8
        movw $0x5678, %ax
        iretl

exit_handler:
        pushl $FLAT_DS
        popl %ds
        movl 8(%esp), %eax
        andl $F_VM, %eax
        movl %eax, V_EXIT_FL
        movl 4(%esp), %eax
        movl %eax, V_EXIT_CS
        jmp leave_v86

# #GP from V86: log the opcode (the n-th in byte n), skip IN imm8 (2 bytes), CLI or PUSHF (1);
# HLT leaves V86. The frame is error code, EIP, CS, EFLAGS, ... (under the three pushes).
gp_handler:
        pushl $FLAT_DS
        popl %ds
        pushl %eax
        pushl %ecx
        pushl %edx
        movl 12(%esp), %eax
        orl %eax, V_GP_ERR
        movl 20(%esp), %edx
        shll $4, %edx
        addl 16(%esp), %edx             # linear address of the faulting instruction
        movzbl (%edx), %edx
        movl V_GP_N, %ecx
        shll $3, %ecx
        movl %edx, %eax
        shll %cl, %eax
        orl %eax, V_GP_OPS
        incl V_GP_N
        cmpb $0xF4, %dl
        je 2f
        cmpb $0xE4, %dl
        jne 1f
        incl 16(%esp)
1:      incl 16(%esp)
        popl %edx
        popl %ecx
        popl %eax
        addl $4, %esp                   # drop the error code
        iretl
2:      movl 24(%esp), %eax
        andl $F_VM, %eax
        movl %eax, V_EXIT_FL
        jmp leave_v86

leave_v86:
        movw $FLAT_DS, %ax
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        jmp *V_CONT

# In the V86 task, at ring 0 after its INT 22h: back to the boot task.
phase3_in_v_task:
        ljmp $TSS_SEL, $0

# ---- virtual-8086 code (CS = 0, so offsets are the labels' addresses) ----
        .code16
v86_phase1:
        movw $0x1234, %ax
        int $0x21
v86_after_int:
        movw %ax, V_AX
        movw $v86_msg, %si
1:      movb (%si), %al
        testb %al, %al
        jz 2f
        outb %al, $DEBUGCON             # allowed by the I/O bitmap
        incw %si
        jmp 1b
2:      inb $0x80, %al                  # denied by the bitmap (IOPL 3 does not matter)
        cli                             # IOPL 3: allowed
        int $0x22

v86_phase2:
        cli
        pushf
        hlt

v86_phase3:
        movw %ds, %ax
        movw %ax, %cs:V_DS3             # a write through CS: fine in V86
        int $0x22
        .code32

        .section .rodata
v86_msg:
        .asciz "v86 says hello through the i/o bitmap\n"
