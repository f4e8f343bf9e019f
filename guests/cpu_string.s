# String instructions: MOVS/CMPS/STOS/LODS/SCAS/OUTS with and without REP/REPE/REPNE, both
# directions, segment overrides of the source, 16-bit address wrap-around in real mode,
# and 32-bit REP loops in protected mode. After REP the count register is decremented once
# per executed iteration; REPE/REPNE stop after the iteration that ends the condition.
        .code16
        .include "rt16.inc"
        .include "rt32.inc"
        .include "pm32.inc"
        .code16
        .set SRC_SEG, 0x2000            # physical 0x20000
        .set DST_SEG, 0x3000            # physical 0x30000
        .set ALT_SEG, 0x4000            # physical 0x40000

        .section .text.entry, "ax"
        .globl _start
_start:
        START16 0x7C00
        PUTS16 "cpu_string\n"

        # REP STOSB fills 16 bytes of SRC_SEG:0 with 'a'..; build "abcdefghijklmnop".
        movw $SRC_SEG, %ax
        movw %ax, %es
        xorw %di, %di
        movb $'a', %al
        movw $16, %cx
1:      stosb
        incb %al
        loop 1b
        movzwl %di, %eax
        CHECK16 "stosb advances di", %eax, 16

        # REP MOVSW: DS:SI -> ES:DI, 8 words.
        movw $SRC_SEG, %ax
        movw %ax, %ds
        movw $DST_SEG, %ax
        movw %ax, %es
        xorw %si, %si
        xorw %di, %di
        movw $8, %cx
        rep movsw
        pushw $0
        popw %ds
        movzwl %cx, %eax
        CHECK16 "rep movsw counts cx down to 0", %eax, 0
        movzwl %si, %eax
        CHECK16 "rep movsw advances si by 16", %eax, 16
        movw $DST_SEG, %ax
        movw %ax, %fs
        movl %fs:12, %eax
        CHECK16 "rep movsw copied the data", %eax, 0x706F6E6D

        # REPE CMPSB: equal strings run to the end, ZF=1.
        movw $SRC_SEG, %ax
        movw %ax, %ds
        xorw %si, %si
        xorw %di, %di
        movw $16, %cx
        repe cmpsb
        pushw $0
        popw %ds
        CHECKF16 "repe cmpsb on equal strings: ZF", 0x40, 0x40
        movzwl %cx, %eax
        CHECK16 "repe cmpsb on equal strings: cx", %eax, 0

        # REPE CMPSB stops at the first difference: "abcdX" vs "abcdY" (X < Y).
        movw $DST_SEG, %ax
        movw %ax, %es
        movb $'Y', %es:4
        movw $SRC_SEG, %ax
        movw %ax, %ds
        movb $'X', 4
        xorw %si, %si
        xorw %di, %di
        movw $16, %cx
        repe cmpsb
        pushw $0
        popw %ds
        CHECKF16 "repe cmpsb mismatch X below Y: CF, ZF clear", 0x41, 0x01
        movzwl %cx, %eax
        CHECK16 "repe cmpsb stops after the mismatch: cx", %eax, 11
        movzwl %si, %eax
        CHECK16 "repe cmpsb stops after the mismatch: si", %eax, 5

        # REPNE SCASB finds 'h' at index 7 of ES:DI.
        movw $SRC_SEG, %ax
        movw %ax, %es
        xorw %di, %di
        movb $'h', %al
        movw $0x100, %cx
        repne scasb
        CHECKF16 "repne scasb found: ZF", 0x40, 0x40
        movzwl %di, %eax
        CHECK16 "repne scasb di is one past the match", %eax, 8
        movzwl %cx, %eax
        CHECK16 "repne scasb cx", %eax, (0x100-8)

        # A segment override applies to the source (DS:SI), never to ES:DI.
        movw $ALT_SEG, %ax
        movw %ax, %es
        movl $0xFEEDFACE, %es:0x100
        movw $DST_SEG, %ax
        movw %ax, %es
        movw $0x100, %si
        movw $0x200, %di
        movsl %fs:(%si), %es:(%di)      # FS still DST_SEG: copies DST:100 -> DST:200
        movw $ALT_SEG, %ax
        movw %ax, %fs
        movw $0x100, %si
        movw $0x204, %di
        movsl %fs:(%si), %es:(%di)      # FS = ALT_SEG: copies ALT:100 -> DST:204
        movl %es:0x204, %eax
        CHECK16 "movs with fs: source override", %eax, 0xFEEDFACE
        lodsb %cs:(%si)                 # CS override on LODS: reads the program
        movw $lods_probe, %si
        lodsb %cs:(%si)
        movzbl %al, %eax
        CHECK16 "lodsb with cs: override", %eax, 0xA5

        # Backwards (DF=1): MOVSW decrements SI and DI by 2 per iteration.
        movw $SRC_SEG, %ax
        movw %ax, %ds
        movw $14, %si
        movw $0x3E, %di
        movw $4, %cx
        std
        rep movsw
        cld
        pushw $0
        popw %ds
        movzwl %si, %eax
        CHECK16 "std rep movsw: si", %eax, 6
        movzwl %di, %eax
        CHECK16 "std rep movsw: di", %eax, 0x36
        movl %es:0x3C, %eax
        CHECK16 "std rep movsw copied from the top", %eax, 0x706F6E6D

        # REP with CX=0 does nothing.
        movw $0x1234, %si
        movw $0x5678, %di
        xorw %cx, %cx
        rep movsb
        movzwl %si, %eax
        CHECK16 "rep with cx=0: si unchanged", %eax, 0x1234

        # 16-bit addressing wraps SI and DI within the segment.
        movw $0xFFFF, %si
        movw $0xFFFF, %di
        movsb
        movzwl %si, %eax
        CHECK16 "movsb wraps si at 64 KB", %eax, 0
        movzwl %di, %eax
        CHECK16 "movsb wraps di at 64 KB", %eax, 0

        # REP STOSD with an operand-size prefix in 16-bit code.
        movl $0xA5A5A5A5, %eax
        xorw %di, %di
        movw $4, %cx
        rep stosl
        movzwl %di, %eax
        CHECK16 "rep stosd in real mode advances di by 16", %eax, 16

        # REP OUTSB writes a string to the debug console.
        movw $outs_text, %si
        movw $(outs_text_end - outs_text), %cx
        movw $DEBUGCON, %dx
        rep outsb %cs:(%si), (%dx)

        ENTER_PM32 0x90000
        # 32-bit: REP STOSD 1024 dwords, REP MOVSD them, sum with LODSD.
        movl $0x100000, %edi
        movl $1024, %ecx
        movl $0x01010101, %eax
        rep stosl
        CHECK32 "pm rep stosd: edi", %edi, 0x101000
        movl $0x100000, %esi
        movl $0x200000, %edi
        movl $1024, %ecx
        rep movsl
        CHECK32 "pm rep movsd: esi", %esi, 0x101000
        movl $0x200000, %esi
        movl $1024, %ecx
        xorl %ebx, %ebx
2:      lodsl
        addl %eax, %ebx
        loop 2b
        CHECK32 "pm lodsd sum of the copy", %ebx, (0x01010101*1024)
        movl $0x200000, %edi
        movl $1024, %ecx
        movl $0x01010101, %eax
        repe scasl
        CHECK32 "pm repe scasd over equal data: ecx", %ecx, 0
        CHECKF32 "pm repe scasd over equal data: ZF", 0x40, 0x40
        # A 16-bit address-size prefix in 32-bit code: SI/DI/CX are used and wrap.
        movl $0x0001FFFF, %esi
        movl $0x0002FFFF, %edi
        movl $0x00010001, %ecx
        addr16 rep movsb
        CHECK32 "pm addr16 rep movsb uses cx only", %ecx, 0x00010000
        CHECK32 "pm addr16 movsb wraps si in 16 bits", %esi, 0x00010000
        CHECK32 "pm addr16 movsb wraps di in 16 bits", %edi, 0x00020000
        FINISH32

        .section .rodata
lods_probe:
        .byte 0xA5
outs_text:
        .ascii "rep outsb to the debug console\n"
outs_text_end:
