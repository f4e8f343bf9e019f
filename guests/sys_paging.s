# Paging (32-bit, 4 KB and 4 MB pages): translation, the accessed and dirty bits written by
# the processor, #PF error codes and CR2, U/S and R/W rights with and without CR0.WP, from
# ring 0 and ring 3, and the invalidations software can rely on (INVLPG, MOV CR3, CR4.PGE,
# not-present entries never cached). Expected values follow the Intel SDM Vol. 3, chapter
# "Paging"; no check depends on a stale translation, which the architecture allows but does
# not promise.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .include "sys32.inc"
        .include "faults.inc"
        .code16
        .set PD, 0x20000                # page directory
        .set PT0, 0x21000               # identity map of 0-4 MB (user, writable)
        .set PT1, 0x22000               # the 4-8 MB region: test pages
        .set WIN, 0x400000              # linear page i of the test region: WIN + i * 4096
        .set BACK, 0x300000             # physical page i: BACK + i * 4096, holding SIG + i
        .set SIG, 0xA5000000
        .set P, 1
        .set W, 2
        .set U, 4
        .set A, 0x20
        .set D, 0x40
        .set PS, 0x80
        .set G, 0x100
        .set RESULT, RT_SCRATCH + 40    # a value read by ring-3 code

# PTE of test page i (no invalidation: callers invalidate when the architecture needs it).
.macro PTE i, value
        movl $(\value), PT1 + (\i) * 4
.endm
.macro INVLPG_PAGE i
        invlpg WIN + (\i) * 4096
.endm

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        PUTS16 "sys_paging\n"
        ENTER_PM32 0x90000
        FAULT_SETUP

        # Page tables: PD[0] -> PT0 (identity), PD[1] -> PT1 (test pages, all absent).
        movl $PD, %edi
        movl $3 * 1024, %ecx            # PD, PT0, PT1
        xorl %eax, %eax
        cld
        rep stosl
        movl $PT0 | P | W | U, PD
        movl $PT1 | P | W | U, PD + 4
        movl $PT0, %edi
        movl $P | W | U, %eax
1:      movl %eax, (%edi)
        addl $4, %edi
        addl $4096, %eax
        cmpl $PT0 + 4096, %edi
        jb 1b
        # Signatures in the backing pages.
        xorl %ecx, %ecx
2:      movl %ecx, %eax
        shll $12, %eax
        leal SIG(%ecx), %edx
        movl %edx, BACK(%eax)
        incl %ecx
        cmpl $16, %ecx
        jb 2b
        movl $PD, %eax
        movl %eax, %cr3
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        PUTS32 "paging on\n"

        # ---- translation, accessed and dirty bits ----
        PTE 0, BACK|P|W|U
        movl WIN, %eax
        CHECK32 "4k page: read through the mapping", %eax, SIG
        movl PT1, %eax
        andl $(A|D), %eax
        CHECK32 "4k page: a read sets A, not D", %eax, A
        movl $0x12345678, WIN + 8
        movl BACK + 8, %eax
        CHECK32 "4k page: a write lands in the physical page", %eax, 0x12345678
        movl PT1, %eax
        andl $(A|D), %eax
        CHECK32 "4k page: a write sets D", %eax, A|D
        movl PD + 4, %eax
        andl $(A|D), %eax
        CHECK32 "4k page: the directory entry gets A only", %eax, A

        # A 4 MB page (CR4.PSE): linear 8 MB + x -> physical x.
        movl %cr4, %eax
        orl $0x10, %eax
        movl %eax, %cr4
        movl $0 | P | W | PS, PD + 8
        movl 0x800000 + BACK + 3 * 4096, %eax
        CHECK32 "4m page: read through the mapping", %eax, SIG+3
        movl PD + 8, %eax
        andl $(A|D), %eax
        CHECK32 "4m page: a read sets A", %eax, A
        movl $0x55AA, 0x800000 + BACK + 3 * 4096 + 4
        movl BACK + 3 * 4096 + 4, %eax
        CHECK32 "4m page: a write lands in the physical page", %eax, 0x55AA
        movl PD + 8, %eax
        andl $(A|D), %eax
        CHECK32 "4m page: a write sets D in the directory entry", %eax, A|D

        # ---- #PF: error code and CR2 ----
        # Not present, supervisor read: code 0.
        ARM_FAULT pf1_back
pf1_at: movl WIN + 1 * 4096 + 0x34, %eax
pf1_back:
        CHECK_FAULT "#pf not present read", 14, 0, pf1_at
        CHECK32 "#pf not present read: cr2", EX_CR2, WIN+1*4096+0x34
        # Not present, supervisor write: code 2.
        ARM_FAULT pf2_back
pf2_at: movl $1, WIN + 1 * 4096 + 0x38
pf2_back:
        CHECK_FAULT "#pf not present write", 14, 2, pf2_at
        CHECK32 "#pf not present write: cr2", EX_CR2, WIN+1*4096+0x38

        # ---- R/W and CR0.WP ----
        # A read-only page: ring 0 may write it while WP is clear.
        PTE 2, BACK+2*4096|P|U
        ARM_FAULT wp0_back
        movl $0x77, WIN + 2 * 4096
wp0_back:
        CHECK32 "wp clear: ring 0 writes a read-only page", EX_COUNT, 0
        movl BACK + 2 * 4096, %eax
        CHECK32 "wp clear: the write happened", %eax, 0x77
        # With WP set the same kind of write is #PF(P|W).
        movl %cr0, %eax
        orl $0x10000, %eax
        movl %eax, %cr0
        PTE 3, BACK+3*4096|P|U
        ARM_FAULT wp1_back
wp1_at: movl $0x88, WIN + 3 * 4096
wp1_back:
        CHECK_FAULT "wp set: ring 0 write to a read-only page", 14, P|W, wp1_at
        movl BACK + 3 * 4096, %eax
        CHECK32 "wp set: nothing written", %eax, SIG+3

        # ---- ring 3 ----
        PTE 4, BACK+4*4096|P|W           # supervisor page
        ARM_FAULT u1_back
        movl $user_read_sup, %eax
        movl $2, %ebx
        call ring3_call
        CHECK_FAULT "ring 3 read of a supervisor page", 14, P|U, u1_at
        CHECK32 "ring 3 read of a supervisor page: cr2", EX_CR2, WIN+4*4096

        PTE 5, BACK+5*4096|P|U           # user, read-only
        ARM_FAULT u2_back
        movl $user_write_ro, %eax
        movl $2, %ebx
        call ring3_call
        CHECK_FAULT "ring 3 write to a read-only page", 14, P|W|U, u2_at
        CHECK32 "ring 3 read of a read-only user page", RESULT, SIG+5

        ARM_FAULT u3_back
        movl $user_read_absent, %eax
        movl $2, %ebx
        call ring3_call
        CHECK_FAULT "ring 3 read of a page not present", 14, U, u3_at

        # The directory entry's U/S bit counts too.
        PTE 6, BACK+6*4096|P|W|U
        andl $~U, PD + 4
        movl %cr3, %eax
        movl %eax, %cr3
        ARM_FAULT u4_back
        movl $user_read_pde, %eax
        movl $2, %ebx
        call ring3_call
        CHECK_FAULT "ring 3 read under a supervisor directory entry", 14, P|U, u4_at
        orl $U, PD + 4
        movl %cr3, %eax
        movl %eax, %cr3

        # ---- what software can rely on ----
        # INVLPG makes a changed PTE take effect.
        PTE 7, BACK+7*4096|P|W|U
        movl WIN + 7 * 4096, %eax
        PTE 7, BACK+8*4096|P|W|U
        INVLPG_PAGE 7
        movl WIN + 7 * 4096, %eax
        CHECK32 "invlpg: the new translation is used", %eax, SIG+8
        # So does MOV CR3 for a page that is not global.
        PTE 7, BACK+9*4096|P|W|U
        movl %cr3, %eax
        movl %eax, %cr3
        movl WIN + 7 * 4096, %eax
        CHECK32 "mov cr3: the new translation is used", %eax, SIG+9
        # A not-present entry is never cached: once present it is used, no invalidation.
        ARM_FAULT np_back
np_at:  movl WIN + 10 * 4096, %eax
np_back:
        CHECK_FAULT "absent page", 14, 0, np_at
        PTE 10, BACK+10*4096|P|W|U
        movl WIN + 10 * 4096, %eax
        CHECK32 "absent page made present: used without invalidation", %eax, SIG+10
        # Global pages (CR4.PGE): INVLPG still drops them, and so does clearing PGE.
        movl %cr4, %eax
        orl $0x80, %eax
        movl %eax, %cr4
        PTE 11, BACK+11*4096|P|W|U|G
        movl WIN + 11 * 4096, %eax
        PTE 11, BACK+12*4096|P|W|U|G
        INVLPG_PAGE 11
        movl WIN + 11 * 4096, %eax
        CHECK32 "global page: invlpg drops it", %eax, SIG+12
        PTE 11, BACK+13*4096|P|W|U|G
        movl %cr4, %eax
        andl $~0x80, %eax
        movl %eax, %cr4
        movl WIN + 11 * 4096, %eax
        CHECK32 "global page: clearing cr4.pge drops it", %eax, SIG+13
        movl PT1 + 11 * 4, %eax
        andl $(A|D), %eax
        CHECK32 "global page: accessed", %eax, A

        # A write across a page boundary into an absent page faults before writing any byte;
        # CR2 is the first byte of the absent page.
        PTE 14, BACK+14*4096|P|W|U
        PTE 15, 0
        ARM_FAULT cross_back
        movl $0xAABBCCDD, %eax
cross_at:
        movl %eax, WIN + 15 * 4096 - 2
cross_back:
        CHECK_FAULT "page-crossing write", 14, 2, cross_at
        CHECK32 "page-crossing write: cr2", EX_CR2, WIN+15*4096
        movl BACK + 15 * 4096 - 4, %eax
        CHECK32 "page-crossing write: first page untouched", %eax, 0

        FINISH32

# Ring-3 programs (they load the user data selector: returning to ring 3 nulled DS/ES).
user_read_sup:
        movw $USER_DS|3, %ax
        movw %ax, %ds
u1_at:  movl WIN + 4 * 4096, %eax
u1_back:
        int $0x80

user_write_ro:
        movw $USER_DS|3, %ax
        movw %ax, %ds
        movl WIN + 5 * 4096, %eax
        movl %eax, RESULT
u2_at:  movl $1, WIN + 5 * 4096
u2_back:
        int $0x80

user_read_absent:
        movw $USER_DS|3, %ax
        movw %ax, %ds
u3_at:  movl WIN + 9 * 4096, %eax
u3_back:
        int $0x80

user_read_pde:
        movw $USER_DS|3, %ax
        movw %ax, %ds
u4_at:  movl WIN + 6 * 4096, %eax
u4_back:
        int $0x80
