# Exceptions and debug exceptions in protected mode: the vector, error code and saved EIP of
# #DE #BP #OF #BR #UD #NM #GP #NP #SS #DF and #AC (faults save the faulting instruction,
# traps the next one), the TF single-step trap (REP iterations, the MOV SS shadow), and
# instruction, data and I/O breakpoints with DR6. Expected values come from the Intel SDM
# Vol. 3 (chapters "Interrupt and Exception Handling" and "Debug ..."), written next to
# each check.
#
# Checks where QEMU departs from the architecture (docs/known-divergences.md) are assembled
# only with DIVERGENT_CHECKS defined, so that the default image gives the same output in
# aero and in QEMU.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .include "sys32.inc"
        .include "faults.inc"
        .code16
        .set DB_COUNT, RT_SCRATCH + 32
        .set DB_DR6, RT_SCRATCH + 36
        .set DB_LOG, 0x600              # saved EIP of every #DB, up to 8
        .set DB_FLAGS, 0x620            # saved EFLAGS of every #DB
        .set DATA, 0x6000
        .set F_TF, 0x100
        .set F_RF, 0x10000
        .set F_AC, 0x40000

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        PUTS16 "sys_exceptions\n"
        ENTER_PM32 0x90000
        FAULT_SETUP
        SYS_GATE IDT_BASE+1*8, FLAT_CS, db_handler, 0x8E, 0

        # ---- faults and traps: vector, error code, saved EIP ----
        # #DE (fault, no error code): the DIV is not executed.
        ARM_FAULT de_back
        movl $7, %eax
        xorl %edx, %edx
        xorl %ecx, %ecx
de_at:  divl %ecx
de_back:
        CHECK_FAULT "#de", 0, NOCODE, de_at
        CHECK32 "#de leaves eax", %eax, 7

        # #BP (trap): saved EIP is the instruction after INT3.
        ARM_FAULT bp_back
        int3
bp_back:
        CHECK_FAULT "#bp", 3, NOCODE, bp_back

        # #OF (trap) from INTO with OF = 1.
        ARM_FAULT of_back
        movl $0x7FFFFFFF, %eax
        incl %eax                       # OF = 1
        into
of_back:
        CHECK_FAULT "#of", 4, NOCODE, of_back

        # #BR (fault): BOUND with the index above the upper bound.
        ARM_FAULT br_back
        movl $0, DATA
        movl $5, DATA + 4
        movl $6, %eax
br_at:  boundl %eax, DATA
br_back:
        CHECK_FAULT "#br", 5, NOCODE, br_at

        # #UD (fault).
        ARM_FAULT ud_back
ud_at:  ud2
ud_back:
        CHECK_FAULT "#ud", 6, NOCODE, ud_at

        # #NM (fault): WAIT with CR0.MP and CR0.TS set.
        movl %cr0, %eax
        orl $0xA, %eax
        movl %eax, %cr0
        ARM_FAULT nm_back
nm_at:  fwait
nm_back:
        clts
        CHECK_FAULT "#nm", 7, NOCODE, nm_at

        # #GP(selector): a selector beyond the GDT limit.
        ARM_FAULT gp_back
        movw $0x48, %ax
gp_at:  movw %ax, %ds
gp_back:
        CHECK_FAULT "#gp", 13, 0x48, gp_at

        # #NP(selector): a not-present data segment.
        ARM_FAULT np_back
        movw $NP_DS, %ax
np_at:  movw %ax, %ds
np_back:
        CHECK_FAULT "#np", 11, NP_DS, np_at

        # #SS(selector): the same segment loaded into SS.
        ARM_FAULT ss_back
        movw $NP_DS, %ax
ss_at:  movw %ax, %ss
ss_back:
        CHECK_FAULT "#ss", 12, NP_DS, ss_at

        # #DF: a #GP whose gate is not present raises #NP while delivering it: two
        # contributory exceptions make a double fault, error code 0, saved EIP the faulting
        # instruction (SDM "Conditions for Generating a Double Fault").
        movb $0x0E, IDT_BASE + 13 * 8 + 5       # gate 13: clear P
        ARM_FAULT df_back
        movw $0x48, %ax
df_at:  movw %ax, %ds
df_back:
        movb $0x8E, IDT_BASE + 13 * 8 + 5
        CHECK_FAULT "#df from #gp then #np", 8, 0, df_at

        # A benign exception (#UD) whose delivery raises #GP: handled one after the other.
        movb $0x81, IDT_BASE + 6 * 8 + 5       # gate 6: not a gate type
        ARM_FAULT ser_back
ser_at: ud2
ser_back:
        movb $0x8E, IDT_BASE + 6 * 8 + 5
        CHECK32 "#ud then #gp is serial: one exception", EX_COUNT, 1
        CHECK32 "#ud then #gp is serial: vector", EX_VEC, 13
        CHECK32 "#ud then #gp is serial: saved eip", EX_EIP, ser_at
        .ifdef DIVERGENT_CHECKS
        # The #GP names IDT entry 6 (bit 1) and, raised while delivering an exception, has
        # EXT (bit 0) set.
        CHECK32 "#ud then #gp is serial: error code with ext", EX_CODE, 6*8+2+1
        .endif

        .ifdef DIVERGENT_CHECKS
        # ---- alignment check: CR0.AM, EFLAGS.AC, CPL 3 ----
        movl %cr0, %eax
        orl $0x40000, %eax              # CR0.AM
        movl %eax, %cr0
        ARM_FAULT ac_back
        movl $user_ac, %eax
        movl $(F_AC|2), %ebx
        call ring3_call
        CHECK_FAULT "#ac at cpl 3", 17, 0, ac_at
        movl %cr0, %eax
        andl $~0x40000, %eax
        movl %eax, %cr0
        .endif

        # ---- single step ----
        # A trap after every instruction that starts with TF set; the POPF that sets TF is
        # not followed by one.
        movl $0, DB_COUNT
        pushfl
        orl $F_TF, (%esp)
        popfl
ss1:    nop
ss2:    nop
ss3:    pushfl
ss4:    andl $~F_TF, (%esp)
ss5:    popfl
ss6:
        CHECK32 "single step: traps", DB_COUNT, 5
        CHECK32 "single step: first after the nop", DB_LOG, ss2
        CHECK32 "single step: second", DB_LOG + 4, ss3
        CHECK32 "single step: after the pushf", DB_LOG + 8, ss4
        CHECK32 "single step: after the and", DB_LOG + 12, ss5
        CHECK32 "single step: after the popf that clears tf", DB_LOG + 16, ss6
        movl DB_DR6, %eax
        andl $0x400F, %eax
        CHECK32 "single step: dr6.bs", %eax, 0x4000

        # Every iteration of a REP string instruction traps; RF is pushed set for all but
        # the last iteration.
        movl $0, DB_COUNT
        movl $DATA, %edi
        movl $3, %ecx
        movb $0x41, %al
        pushfl
        orl $F_TF, (%esp)
        popfl
rep_at: rep stosb
rep_end:
        pushfl
        andl $~F_TF, (%esp)
        popfl
        CHECK32 "rep stosb: a trap per iteration, then one per instruction", DB_COUNT, 6
        CHECK32 "rep stosb: iteration 1 resumes the rep", DB_LOG, rep_at
        CHECK32 "rep stosb: iteration 2", DB_LOG + 4, rep_at
        CHECK32 "rep stosb: after the last iteration", DB_LOG + 8, rep_end
        .ifdef DIVERGENT_CHECKS
        movl DB_FLAGS, %eax
        andl $F_RF, %eax
        CHECK32 "rep stosb: rf pushed set mid-repeat", %eax, F_RF
        .endif
        movl DB_FLAGS + 8, %eax
        andl $F_RF, %eax
        CHECK32 "rep stosb: rf pushed clear after the last iteration", %eax, 0

        # MOV SS holds the single-step trap back until the next instruction is done.
        movl $0, DB_COUNT
        movw %ss, %dx
        pushfl
        orl $F_TF, (%esp)
        popfl
mss1:   movw %dx, %ss
mss2:   nop
mss3:   pushfl
        andl $~F_TF, (%esp)
        popfl
        CHECK32 "mov ss: no trap right after it", DB_LOG, mss3
        CHECK32 "mov ss: traps", DB_COUNT, 4

        # ---- breakpoints ----
        # Instruction breakpoint (DR0, L0, R/W 00): a fault before the instruction; the
        # handler returns with RF set and the instruction then runs once.
        movl $0, DB_COUNT
        movl $ib_at, %eax
        movl %eax, %dr0
        movl $0x401, %eax               # L0, R/W0 = 00, LEN0 = 00
        movl %eax, %dr7
        xorl %ecx, %ecx
ib_at:  incl %ecx
        xorl %eax, %eax
        movl %eax, %dr7
        CHECK32 "instruction breakpoint: one #db", DB_COUNT, 1
        CHECK32 "instruction breakpoint: fault at the instruction", DB_LOG, ib_at
        CHECK32 "instruction breakpoint: then executed once", %ecx, 1
        movl DB_DR6, %eax
        andl $0x400F, %eax
        CHECK32 "instruction breakpoint: dr6.b0", %eax, 1

        # Data breakpoint (DR1, G1, R/W 01, LEN 4): a trap after the writing instruction.
        movl $0, DB_COUNT
        movl $DATA + 0x10, %eax
        movl %eax, %dr1
        movl $0x00D00408, %eax          # G1, R/W1 = 01, LEN1 = 11
        movl %eax, %dr7
        movl DATA + 0x10, %eax          # a read: not watched
        movb $1, DATA + 0x14            # outside the range
dw_at:  movb $1, DATA + 0x13            # inside
dw_back:
        xorl %eax, %eax
        movl %eax, %dr7
        CHECK32 "data breakpoint (write): one #db", DB_COUNT, 1
        CHECK32 "data breakpoint (write): trap after the store", DB_LOG, dw_back
        movl DB_DR6, %eax
        andl $0x400F, %eax
        CHECK32 "data breakpoint (write): dr6.b1", %eax, 2

        # Read/write data breakpoint (DR2, L2, R/W 11, LEN 2) hit by a read.
        movl $0, DB_COUNT
        movl $DATA + 0x22, %eax
        movl %eax, %dr2
        movl $0x07000410, %eax          # L2, R/W2 = 11, LEN2 = 01 (bits 24-27 = 0111)
        movl %eax, %dr7
        movl DATA + 0x1C, %eax          # bytes 1C-1F: outside
dr_at:  movl DATA + 0x20, %eax          # bytes 20-23 overlap 22-23
dr_back:
        .ifdef DIVERGENT_CHECKS
        movl DATA + 0x1E, %eax          # misaligned, bytes 1E-21: outside
        .endif
        xorl %eax, %eax
        movl %eax, %dr7
        CHECK32 "data breakpoint (read): one #db", DB_COUNT, 1
        CHECK32 "data breakpoint (read): trap after the load", DB_LOG, dr_back
        movl DB_DR6, %eax
        andl $0x400F, %eax
        CHECK32 "data breakpoint (read): dr6.b2", %eax, 4

        # I/O breakpoint (DR3, L3, R/W 10 with CR4.DE).
        movl %cr4, %eax
        orl $8, %eax
        movl %eax, %cr4
        movl $0, DB_COUNT
        movl $0x80, %eax
        movl %eax, %dr3
        movl $0x20000440, %eax          # L3, R/W3 = 10, LEN3 = 00
        movl %eax, %dr7
        inb $0x81, %al                  # not watched
io_at:  outb %al, $0x80
io_back:
        xorl %eax, %eax
        movl %eax, %dr7
        movl %cr4, %eax
        andl $~8, %eax
        movl %eax, %cr4
        CHECK32 "i/o breakpoint: one #db", DB_COUNT, 1
        CHECK32 "i/o breakpoint: trap after the out", DB_LOG, io_back
        movl DB_DR6, %eax
        andl $0x400F, %eax
        CHECK32 "i/o breakpoint: dr6.b3", %eax, 8

        # Faults push RF = 1 (SDM "Resume Flag"), traps push the current RF (0).
        .ifdef DIVERGENT_CHECKS
        ARM_FAULT rf_back1
        ud2
rf_back1:
        movl EX_EFLAGS, %eax
        andl $F_RF, %eax
        CHECK32 "fault frame: rf pushed set", %eax, F_RF
        .endif
        ARM_FAULT rf_back2
        int3
rf_back2:
        movl EX_EFLAGS, %eax
        andl $F_RF, %eax
        CHECK32 "trap frame: rf pushed clear", %eax, 0
        FINISH32

        .ifdef DIVERGENT_CHECKS
# Ring 3, with EFLAGS.AC set (CR0.AM set by ring 0): aligned accesses pass, a misaligned
# one raises #AC(0).
user_ac:
        movw $USER_DS|3, %ax
        movw %ax, %ds
        movw %ax, %es
        movl DATA, %eax                 # aligned dword
        movw DATA + 2, %ax              # aligned word
        movb DATA + 9, %al              # a byte is always aligned
        movb %al, DATA + 11
ac_at:  movl DATA + 1, %eax             # misaligned dword
ac_back:
        int $0x80
        .endif

# #DB: log the saved EIP and EFLAGS, keep DR6 and clear it, return with RF set.
# Frame after the pushes: DS, EBX, EAX, EIP, CS, EFLAGS.
db_handler:
        pushl %eax
        pushl %ebx
        pushl %ds
        movw $FLAT_DS, %ax
        movw %ax, %ds
        movl DB_COUNT, %ebx
        andl $7, %ebx
        movl 12(%esp), %eax
        movl %eax, DB_LOG(,%ebx,4)
        movl 20(%esp), %eax
        movl %eax, DB_FLAGS(,%ebx,4)
        movl %dr6, %eax
        movl %eax, DB_DR6
        xorl %eax, %eax
        movl %eax, %dr6
        incl DB_COUNT
        orl $F_RF, 20(%esp)
        popl %ds
        popl %ebx
        popl %eax
        iretl
