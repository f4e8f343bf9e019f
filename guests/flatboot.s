# A ROM that boots a flat binary: used to run flat guests under QEMU, which starts a bare
# machine at the reset vector. The host appends the payload at ROM offset 0x1000 and fills
# in the parameter block at 0x0FF0; the stub copies the payload to its load address and
# enters it the way aero's loader does: real mode, DS=ES=FS=GS=SS=0, general registers 0,
# EFLAGS=2, SP and CS:IP as given. The four bytes below SP were used for the EFLAGS write.
        .code16
        .set P_DSTSEG, 0x0FF0
        .set P_DSTOFF, 0x0FF2
        .set P_SIZE,   0x0FF4
        .set P_SP,     0x0FF6
        .set P_IP,     0x0FF8
        .set P_CS,     0x0FFA

        .section .text.entry, "ax"
        .globl _start
_start:
        cli
        cld
        # The 8042 as a PC BIOS leaves it (and as aero starts a guest without one): the
        # self-test passed (status bit 2, the system flag, set; its 55h read), command
        # byte 45h (translation, system flag, keyboard IRQ), the last write a command
        # (status bit 3). QEMU's bare 8042 has none of this at reset.
        movb $0x60, %al                 # write the command byte: no IRQ during the test
        outb %al, $0x64
        movb $0x44, %al
        outb %al, $0x60
        movb $0xAA, %al                 # self-test
        outb %al, $0x64
1:      inb $0x64, %al
        testb $1, %al
        jz 1b
        inb $0x60, %al                  # 55h: passed
        movb $0x60, %al
        outb %al, $0x64
        movb $0x45, %al
        outb %al, $0x60
        movb $0xAE, %al                 # enable the keyboard interface (already enabled)
        outb %al, $0x64
        movw $0xF000, %ax
        movw %ax, %ds
        movw %cs:P_DSTSEG, %ax
        movw %ax, %es
        movw %cs:P_DSTOFF, %di
        movw %cs:P_SIZE, %cx
        movw $0x1000, %si
        rep movsb
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movw %cs:P_SP, %sp
        xorl %eax, %eax
        xorl %ebx, %ebx
        xorl %ecx, %ecx
        xorl %edx, %edx
        xorl %esi, %esi
        xorl %edi, %edi
        xorl %ebp, %ebp
        pushl $2
        popfl
        ljmpw *%cs:P_IP

        .section .reset, "ax"
        ljmp $0xF000, $_start
