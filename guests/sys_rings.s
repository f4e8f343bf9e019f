# Privilege-level transitions: ring 0 to ring 3 by IRET; ring 3 to ring 0 through a 32-bit
# call gate that copies two parameters, and back by RETF 8; through a DPL-3 interrupt gate
# and back by IRET; a #GP raised in ring 3 and handled in ring 0. Ring 3 cannot use the check
# runtime (its data selector is DPL 0, and port I/O needs IOPL): it records what it sees in
# memory, and ring 0 checks it all at the end. Expected values: SDM Vol. 3A 5.8 "Privilege
# Level Checking When Transferring Program Control Between Code Segments" (call gates, stack
# switching, Figure 5-13 the inner stack frame, RET to an outer level nulling data segment
# registers) and 6.12 "Exception and Interrupt Handling" (Figure 6-4 the interrupt frame).
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .include "sys32.inc"
        .code16
        .set CALLG, 0x40                # call gate: DPL 3, 2 dwords of parameters
        .set STACK3, 0x70000
        .set V, 0x600                   # what ring 3 and the handlers record
        .set V_R3_CS, V
        .set V_R3_SS, V + 4
        .set V_G_CS, V + 8
        .set V_G_SS, V + 12
        .set V_G_ESP, V + 16
        .set V_G_EIP, V + 20
        .set V_G_RCS, V + 24
        .set V_G_P0, V + 28
        .set V_G_P1, V + 32
        .set V_G_OESP, V + 36
        .set V_G_OSS, V + 40
        .set V_RET_ESP, V + 44
        .set V_RET_ES, V + 48
        .set V_RET_DS, V + 52
        .set V_I_EIP, V + 56
        .set V_I_CS, V + 60
        .set V_I_FL, V + 64
        .set V_I_ESP, V + 68
        .set V_I_SS, V + 72
        .set V_I_CPL, V + 76
        .set V_INT_ESP, V + 80
        .set V_GP_N, V + 84
        .set V_GP_ERR, V + 88
        .set V_GP_EIP, V + 92
        .set V_GP_CS, V + 96
        .set V_R0_ESP, V + 100

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        ENTER_PM32 0x90000
        PUTS32 "sys_rings\n"
        call sys_init
        SYS_GATE SYS_GDT+CALLG, FLAT_CS, gate_target, 0xEC, 2
        SYS_GATE IDT_BASE+0x80*8, FLAT_CS, int80_handler, 0xEE, 0
        SYS_GATE IDT_BASE+0x81*8, FLAT_CS, back_to_ring0, 0xEE, 0
        SET_GATE32 13, gp_handler
        movl $0, V_GP_N

        # Ring 3 by IRET: SS:ESP, EFLAGS (IOPL 0, IF 0), CS:EIP.
        movl %esp, V_R0_ESP
        pushl $(USER_DS|3)
        pushl $STACK3
        pushl $2
        pushl $(USER_CS|3)
        pushl $ring3
        iretl

ring0_again:
        CHECK32 "iret to ring 3: cs", V_R3_CS, USER_CS|3
        CHECK32 "iret to ring 3: ss", V_R3_SS, USER_DS|3
        # The call gate: ring 0 on the stack of the TSS, the caller's SS:ESP, the two
        # parameters (same order as on the caller's stack) and CS:EIP on it.
        CHECK32 "call gate: target cs (rpl = new cpl 0)", V_G_CS, FLAT_CS
        CHECK32 "call gate: ss from the tss", V_G_SS, FLAT_DS
        CHECK32 "call gate: esp = esp0 - 24", V_G_ESP, SYS_STACK0-24
        CHECK32 "call gate: pushed eip", V_G_EIP, after_call
        CHECK32 "call gate: pushed cs", V_G_RCS, USER_CS|3
        CHECK32 "call gate: parameter pushed last", V_G_P0, 0x22222222
        CHECK32 "call gate: parameter pushed first", V_G_P1, 0x11111111
        CHECK32 "call gate: caller esp", V_G_OESP, STACK3-8
        CHECK32 "call gate: caller ss", V_G_OSS, USER_DS|3
        # RETF 8 to ring 3: both stacks release the parameters; ES, loaded with a DPL-0
        # segment in ring 0, is nulled; DS (DPL 3) is kept.
        CHECK32 "retf 8: ring-3 esp back above the parameters", V_RET_ESP, STACK3
        CHECK32 "retf to ring 3: es with dpl 0 nulled", V_RET_ES, 0
        CHECK32 "retf to ring 3: ds with dpl 3 kept", V_RET_DS, USER_DS|3
        # INT 80h through a DPL-3 interrupt gate: EIP CS EFLAGS ESP SS on the ring-0 stack.
        CHECK32 "int 80h: handler cpl", V_I_CPL, 0
        CHECK32 "int 80h: pushed eip", V_I_EIP, after_int
        CHECK32 "int 80h: pushed cs", V_I_CS, USER_CS|3
        CHECK32 "int 80h: pushed eflags (iopl if vm)", V_I_FL, 0
        CHECK32 "int 80h: pushed esp", V_I_ESP, STACK3
        CHECK32 "int 80h: pushed ss", V_I_SS, USER_DS|3
        CHECK32 "iret to ring 3: esp", V_INT_ESP, STACK3
        # A DPL-0 data selector loaded in ring 3: #GP(selector), handled in ring 0.
        CHECK32 "ring 3 loads a dpl-0 selector: one #gp", V_GP_N, 1
        CHECK32 "#gp error code is the selector", V_GP_ERR, FLAT_DS
        CHECK32 "#gp saved eip is the mov", V_GP_EIP, gp_insn
        CHECK32 "#gp saved cs is ring 3", V_GP_CS, USER_CS|3
        movw %cs, %ax
        movzwl %ax, %eax
        CHECK32 "int 81h: back in ring 0", %eax, FLAT_CS
        FINISH32

# ---- ring 3 ----
ring3:
        movw $(USER_DS|3), %ax
        movw %ax, %ds                   # DS was nulled (DPL 0) by the IRET
        movw %cs, %ax
        movzwl %ax, %eax
        movl %eax, V_R3_CS
        movw %ss, %ax
        movzwl %ax, %eax
        movl %eax, V_R3_SS
        pushl $0x11111111
        pushl $0x22222222
        lcall $(CALLG|3), $0
after_call:
        movl %esp, V_RET_ESP
        movw %es, %ax
        movzwl %ax, %eax
        movl %eax, V_RET_ES
        movw %ds, %ax
        movzwl %ax, %eax
        movl %eax, V_RET_DS
        int $0x80
after_int:
        movl %esp, V_INT_ESP
        movw $FLAT_DS, %ax
gp_insn:
        movw %ax, %fs                   # DPL 0 < CPL 3: #GP(0x10)
gp_resume:
        int $0x81

# ---- ring 0 ----
gate_target:
        movl %esp, V_G_ESP              # DS is still ring 3's flat DPL-3 segment: usable
        movw %cs, %ax
        movzwl %ax, %eax
        movl %eax, V_G_CS
        movw %ss, %ax
        movzwl %ax, %eax
        movl %eax, V_G_SS
        movl 0(%esp), %eax
        movl %eax, V_G_EIP
        movl 4(%esp), %eax
        movl %eax, V_G_RCS
        movl 8(%esp), %eax
        movl %eax, V_G_P0
        movl 12(%esp), %eax
        movl %eax, V_G_P1
        movl 16(%esp), %eax
        movl %eax, V_G_OESP
        movl 20(%esp), %eax
        movl %eax, V_G_OSS
        movw $FLAT_DS, %ax
        movw %ax, %es
        lret $8

int80_handler:
        movw %cs, %ax
        andl $3, %eax
        movl %eax, V_I_CPL
        movl 0(%esp), %eax
        movl %eax, V_I_EIP
        movl 4(%esp), %eax
        movl %eax, V_I_CS
        movl 8(%esp), %eax
        andl $0x23200, %eax
        movl %eax, V_I_FL
        movl 12(%esp), %eax
        movl %eax, V_I_ESP
        movl 16(%esp), %eax
        movl %eax, V_I_SS
        iretl

gp_handler:
        pushl %eax
        pushl %ds
        pushl $FLAT_DS
        popl %ds
        incl V_GP_N
        movl 8(%esp), %eax
        movl %eax, V_GP_ERR
        movl 12(%esp), %eax
        movl %eax, V_GP_EIP
        movl 16(%esp), %eax
        movl %eax, V_GP_CS
        movl $gp_resume, 12(%esp)
        popl %ds
        popl %eax
        addl $4, %esp
        iretl

back_to_ring0:
        movw $FLAT_DS, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movl V_R0_ESP, %esp
        jmp ring0_again
