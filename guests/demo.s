# An interactive program that uses every device of the PC: a line shell on COM1 (16550A,
# interrupt-driven in both directions), the keyboard (8042, IRQ 1), the PIT (100 Hz, IRQ 0)
# and the RTC (update-ended interrupt, IRQ 8), all through the 8259A pair remapped to
# vectors 20h-2Fh. Its output is a function of its inputs and their timing only: every
# variable lives in a block that is zeroed at boot, and nothing is read from the firmware.
#
# Boot: a flat binary at 0x7C00 entered in real mode; it switches to flat 32-bit protected
# mode (pm32.inc: GDT, IDT at 0x1000 whose exception vectors report to the debug console).
#
# Interrupt handlers only move bytes: COM1 and keyboard input go into one input ring, the
# transmitter drains an output ring. The main loop edits the line and runs commands; it
# idles in STI; HLT. Output lines end in CR LF.
#
# Build option RTC_FORMAT (register B bits: 04h binary, 02h 24-hour) replaces the format the
# firmware left in the RTC; without it the guest keeps that format and converts on reading.
        .code16
        .include "rt32.inc"
        .include "pm32.inc"
        .code16

        .set STACK_TOP, 0x90000

        .set COM1, 0x3F8                # RBR/THR (DLL with DLAB)
        .set COM1_IER, COM1 + 1         # (DLM with DLAB)
        .set COM1_IIR, COM1 + 2         # IIR on read, FCR on write
        .set COM1_LCR, COM1 + 3
        .set COM1_MCR, COM1 + 4
        .set COM1_LSR, COM1 + 5
        .set COM1_MSR, COM1 + 6
        .set IER_RX, 0x01               # received data available (and character timeout)
        .set IER_TX, 0x02               # transmitter holding register empty
        .set TX_FIFO, 16                # bytes the transmit FIFO takes when empty

        .set PIT_DIVISOR, 11932         # 1193182 Hz / 100, rounded
        .set KBD_CMD_BYTE, 0x65         # IRQ 1 on, system flag, aux clock off, translation on
        .set RTC_REG_B_KEEP, 0x0F       # DSE, 24/12, DM, SQWE: the firmware's format choice
        .set RTC_UIE, 0x10

# The state block, zeroed at boot. Ring indexes are kept masked.
        .set STATE, 0x20000
        .set TICKS, STATE + 0x00        # PIT interrupts
        .set SECONDS, STATE + 0x04      # RTC update-ended interrupts
        .set KEYCOUNT, STATE + 0x08     # bytes read from port 60h
        .set KEYEXT, STATE + 0x0C       # the previous scancode was the E0 prefix
        .set RX_PAUSED, STATE + 0x10    # input ring was full: receive interrupt disabled
        .set IN_HEAD, STATE + 0x14      # input ring: written by the handlers
        .set IN_TAIL, STATE + 0x18      # input ring: read by the main loop
        .set TX_HEAD, STATE + 0x1C      # output ring: written by the main loop
        .set TX_TAIL, STATE + 0x20      # output ring: read by the THRE handler
        .set TX_BUSY, STATE + 0x24      # bytes are in the transmit FIFO: a THRE interrupt comes
        .set LINE_LEN, STATE + 0x28     # characters in the line being edited
        .set LAST_CR, STATE + 0x2C      # the previous input character was CR (CR LF = one end)
        .set RTC_FMT, STATE + 0x30      # register B as the clock was read
        .set KEYLAST, STATE + 0x40      # the last 8 scancodes, at KEYCOUNT mod 8
        .set RTC_VAL, STATE + 0x50      # sec, min, hour, day, month, year (6 dwords, binary)
        .set DEC_BUF, STATE + 0x70      # digits of a decimal number, built backwards
        .set LINE, STATE + 0x80         # the line (LINE_MAX characters and a NUL)
        .set IN_RING, STATE + 0x100
        .set TX_RING, STATE + 0x200
        .set STATE_SIZE, 0x600
        .set IN_MASK, 0xFF
        .set TX_MASK, 0x3FF
        .set LINE_MAX, 72

# Print a string literal through the output ring.
.macro SAY text
        .pushsection .rodata
.Lsay_\@: .asciz "\text"
        .popsection
        pushl %esi
        movl $.Lsay_\@, %esi
        call puts
        popl %esi
.endm

        .section .text.entry, "ax"
        .globl _start
_start:
        cli
        cld
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw $0x7C00, %sp
        movl $0, RT_CHECKS              # read by the exception report of pm32.inc
        movl $0, RT_FAILS
        ENTER_PM32 STACK_TOP
        movl $STATE, %edi
        movl $(STATE_SIZE / 4), %ecx
        xorl %eax, %eax
        rep stosl
        SET_GATE32 0x20, irq0_pit
        SET_GATE32 0x21, irq1_kbd
        SET_GATE32 0x24, irq4_com1
        SET_GATE32 0x27, irq7_spurious
        SET_GATE32 0x28, irq8_rtc
        SET_GATE32 0x2F, irq15_spurious
        call apic_virtual_wire
        call pic_init
        call pit_init
        call uart_init
        call kbd_init
        call rtc_init
        # Unmask IRQ 0, 1, 2 (cascade), 4 and 8 before the devices raise their lines, so
        # that every request is a fresh edge at an unmasked input.
        movb $0xE8, %al
        outb %al, $0x21
        movb $0xFE, %al
        outb %al, $0xA1
        movw $COM1_IER, %dx
        movb $(IER_RX | IER_TX), %al
        outb %al, %dx
        sti
        SAY "aero demo\r\n"
        call print_time
        call prompt

# Take one input byte at a time; idle when there is none. CLI before the test and STI; HLT
# after it: an interrupt between the test and the HLT cannot be slept through (STI holds
# interrupts off for one more instruction).
main_loop:
        cli
        movl IN_TAIL, %eax
        cmpl IN_HEAD, %eax
        jne 1f
        sti
        hlt
        jmp main_loop
1:      movzbl IN_RING(%eax), %ebx
        incl %eax
        andl $IN_MASK, %eax
        movl %eax, IN_TAIL
        cmpl $0, RX_PAUSED              # there is room again: take COM1 input again
        je 2f
        movl $0, RX_PAUSED
        movw $COM1_IER, %dx
        movb $(IER_RX | IER_TX), %al
        outb %al, %dx
2:      sti
        movl %ebx, %eax
        call edit_char
        jmp main_loop

# ---- device set-up (interrupts off) ----

# A CPU with a local APIC (QEMU's) can start with LINT0, where the 8259A's INTR arrives,
# masked, and QEMU keeps PIC interrupts behind LINT0 even when the APIC is disabled. Set up
# the virtual-wire mode a BIOS leaves (MP specification 3.6.2.2): APIC software-enabled,
# LINT0 ExtINT, LINT1 NMI, at the APIC's reset address. A CPU without one (aero's) skips it.
        .set LAPIC, 0xFEE00000
apic_virtual_wire:
        movl $1, %eax
        cpuid
        testl $0x200, %edx              # CPUID.1:EDX.APIC
        jz 1f
        movl $0x1FF, LAPIC + 0xF0       # spurious vector register: enabled, vector FFh
        movl $0x700, LAPIC + 0x350      # LVT LINT0: ExtINT, unmasked
        movl $0x400, LAPIC + 0x360      # LVT LINT1: NMI
1:      ret

pic_init:
        movb $0x11, %al                 # ICW1: edge triggered, cascade, ICW4 follows
        outb %al, $0x20
        outb %al, $0xA0
        movb $0x20, %al                 # ICW2: vector bases
        outb %al, $0x21
        movb $0x28, %al
        outb %al, $0xA1
        movb $0x04, %al                 # ICW3: slave on master IRQ 2
        outb %al, $0x21
        movb $0x02, %al
        outb %al, $0xA1
        movb $0x01, %al                 # ICW4: 8086 mode, normal EOI
        outb %al, $0x21
        outb %al, $0xA1
        movb $0xFF, %al                 # everything masked until the devices are ready
        outb %al, $0x21
        outb %al, $0xA1
        ret

pit_init:
        movb $0x34, %al                 # channel 0, low then high byte, mode 2, binary
        outb %al, $0x43
        movb $(PIT_DIVISOR & 0xFF), %al
        outb %al, $0x40
        movb $(PIT_DIVISOR >> 8), %al
        outb %al, $0x40
        ret

uart_init:
        movw $COM1_IER, %dx
        xorb %al, %al
        outb %al, %dx
        movw $COM1_LCR, %dx
        movb $0x80, %al                 # DLAB
        outb %al, %dx
        movw $COM1, %dx
        movb $1, %al                    # divisor 1: 115200 baud
        outb %al, %dx
        movw $COM1_IER, %dx
        xorb %al, %al
        outb %al, %dx
        movw $COM1_LCR, %dx
        movb $0x03, %al                 # 8 data bits, no parity, 1 stop bit, DLAB off
        outb %al, %dx
        movw $COM1_IIR, %dx
        movb $0x07, %al                 # FIFOs on and cleared, receive trigger at 1 byte
        outb %al, %dx
        movw $COM1_MCR, %dx
        movb $0x0B, %al                 # DTR, RTS, OUT2 (connects INTR to IRQ 4)
        outb %al, %dx
        movw $COM1_LSR, %dx             # clear pending status
        inb %dx, %al
        movw $COM1, %dx
        inb %dx, %al
        movw $COM1_IIR, %dx
        inb %dx, %al
        movw $COM1_MSR, %dx
        inb %dx, %al
        ret

kbd_init:
        call kbd_flush
        call kbd_wait_input
        movb $0x60, %al                 # write the command byte
        outb %al, $0x64
        call kbd_wait_input
        movb $KBD_CMD_BYTE, %al
        outb %al, $0x60
        call kbd_wait_input
        jmp kbd_flush

# Wait (bounded) until the controller has taken the previous byte.
kbd_wait_input:
        movl $0x10000, %ecx
1:      inb $0x64, %al
        testb $0x02, %al
        loopnz 1b
        ret

# Discard what the controller holds (bounded: at most its buffer and a few more).
kbd_flush:
        movl $32, %ecx
1:      inb $0x64, %al
        testb $0x01, %al
        jz 2f
        inb $0x60, %al
        loop 1b
2:      ret

rtc_init:
        movb $0x0A, %al                 # divider running at 32768 Hz, periodic rate unused
        outb %al, $0x70
        movb $0x26, %al
        outb %al, $0x71
        movb $0x0B, %al
        outb %al, $0x70
        inb $0x71, %al
        andb $RTC_REG_B_KEEP, %al       # SET, PIE, AIE off; the update-ended interrupt on
        .ifdef RTC_FORMAT               # build option: force the data mode and hour format
        andb $~0x06, %al
        orb $(RTC_FORMAT & 0x06), %al
        .endif
        orb $RTC_UIE, %al
        movb %al, %ah
        movb $0x0B, %al
        outb %al, $0x70
        movb %ah, %al
        outb %al, $0x71
        movb $0x0C, %al                 # acknowledge anything already flagged
        outb %al, $0x70
        inb $0x71, %al
        ret

# ---- interrupt handlers ----

irq0_pit:
        incl TICKS
        pushl %eax
        movb $0x20, %al
        outb %al, $0x20
        popl %eax
        iret

irq1_kbd:
        pushal
        inb $0x60, %al
        movl KEYCOUNT, %ebx
        andl $7, %ebx
        movb %al, KEYLAST(%ebx)
        incl KEYCOUNT
        cmpb $0xE0, %al
        jne 1f
        movb $1, KEYEXT
        jmp 9f
1:      movb KEYEXT, %cl
        movb $0, KEYEXT
        testb $0x80, %al                # break codes only count
        jnz 9f
        testb %cl, %cl                  # of the extended keys only keypad Enter types
        jz 2f
        cmpb $0x1C, %al
        jne 9f
2:      cmpb $(keymap_end - keymap), %al
        jae 9f
        movzbl %al, %eax
        movb keymap(%eax), %al
        testb %al, %al
        jz 9f
        call in_push                    # a full ring drops the key
9:      movb $0x20, %al
        outb %al, $0x20
        popal
        iret

# Serve every pending COM1 interrupt: the INTR line must fall before the EOI, or the next
# request would raise no new edge.
irq4_com1:
        pushal
1:      movw $COM1_IIR, %dx
        inb %dx, %al
        testb $0x01, %al
        jnz 9f
        andb $0x0E, %al
        cmpb $0x02, %al
        je 2f
        cmpb $0x06, %al
        je 3f
        testb %al, %al
        je 4f
        call rx_drain                   # 04h data available, 0Ch character timeout
        jmp 1b
2:      call tx_fill                    # reading IIR cleared the THRE interrupt
        jmp 1b
3:      movw $COM1_LSR, %dx             # line status: reading LSR clears it
        inb %dx, %al
        jmp 1b
4:      movw $COM1_MSR, %dx             # modem status: reading MSR clears it
        inb %dx, %al
        jmp 1b
9:      movb $0x20, %al
        outb %al, $0x20
        popal
        iret

# Spurious IRQ 7 and 15: no EOI unless the in-service bit says the request was real.
irq7_spurious:
        pushl %eax
        movb $0x0B, %al                 # OCW3: read ISR
        outb %al, $0x20
        inb $0x20, %al
        testb $0x80, %al
        jz 1f
        movb $0x20, %al
        outb %al, $0x20
1:      movb $0x0A, %al                 # back to reading IRR
        outb %al, $0x20
        popl %eax
        iret

irq15_spurious:
        pushl %eax
        movb $0x0B, %al
        outb %al, $0xA0
        inb $0xA0, %al
        testb $0x80, %al
        jz 1f
        movb $0x20, %al
        outb %al, $0xA0
1:      movb $0x0A, %al
        outb %al, $0xA0
        movb $0x20, %al                 # the master took a real request on IRQ 2
        outb %al, $0x20
        popl %eax
        iret

irq8_rtc:
        pushl %eax
        movb $0x0C, %al                 # reading register C lowers IRQ 8
        outb %al, $0x70
        inb $0x71, %al
        testb $0x10, %al                # UF: update ended
        jz 1f
        incl SECONDS
1:      movb $0x20, %al                 # EOI to the slave, then to the master
        outb %al, $0xA0
        outb %al, $0x20
        popl %eax
        iret

# Receive FIFO to the input ring. When the ring is full the bytes stay in the FIFO and the
# receive interrupt is switched off until the main loop has made room.
rx_drain:
1:      movw $COM1_LSR, %dx
        inb %dx, %al
        testb $0x01, %al
        jz 9f
        movl IN_HEAD, %ebx
        leal 1(%ebx), %ecx
        andl $IN_MASK, %ecx
        cmpl IN_TAIL, %ecx
        je 2f
        movw $COM1, %dx
        inb %dx, %al
        movb %al, IN_RING(%ebx)
        movl %ecx, IN_HEAD
        jmp 1b
2:      movl $1, RX_PAUSED
        movw $COM1_IER, %dx
        movb $IER_TX, %al
        outb %al, %dx
9:      ret

# AL to the input ring, dropped when full. Interrupts off. Preserves registers.
in_push:
        pushl %ebx
        pushl %ecx
        movl IN_HEAD, %ebx
        leal 1(%ebx), %ecx
        andl $IN_MASK, %ecx
        cmpl IN_TAIL, %ecx
        je 1f
        movb %al, IN_RING(%ebx)
        movl %ecx, IN_HEAD
1:      popl %ecx
        popl %ebx
        ret

# Move up to a FIFO's worth of the output ring into the (empty) transmit FIFO. Interrupts
# off. TX_BUSY says whether a THRE interrupt will follow. Clobbers EAX, EBX, ECX, EDX.
tx_fill:
        movw $COM1, %dx
        movl $TX_FIFO, %ecx
        movl TX_TAIL, %ebx
1:      cmpl TX_HEAD, %ebx
        je 2f
        movb TX_RING(%ebx), %al
        outb %al, %dx
        incl %ebx
        andl $TX_MASK, %ebx
        loop 1b
2:      movl %ebx, TX_TAIL
        xorl %eax, %eax
        cmpl $TX_FIFO, %ecx
        setne %al
        movl %eax, TX_BUSY
        ret

# ---- output ----

# AL to the output ring; waits (halted) while the ring is full. Returns with interrupts on.
putc:
        pushal
        movb %al, %ah
1:      cli
        movl TX_HEAD, %ebx
        leal 1(%ebx), %ecx
        andl $TX_MASK, %ecx
        cmpl TX_TAIL, %ecx
        jne 2f
        sti
        hlt
        jmp 1b
2:      movb %ah, TX_RING(%ebx)
        movl %ecx, TX_HEAD
        cmpl $0, TX_BUSY                # the transmitter is idle: start it
        jne 3f
        call tx_fill
3:      sti
        popal
        ret

# ESI -> NUL-terminated string.
puts:
        pushl %eax
        pushl %esi
1:      movb (%esi), %al
        testb %al, %al
        jz 2f
        call putc
        incl %esi
        jmp 1b
2:      popl %esi
        popl %eax
        ret

# EAX unsigned in decimal, at least ECX digits (zero padded).
put_dec:
        pushal
        movl $(DEC_BUF + 12), %edi
        movl $10, %ebx
1:      xorl %edx, %edx
        divl %ebx
        addb $'0', %dl
        decl %edi
        movb %dl, (%edi)
        decl %ecx
        testl %eax, %eax
        jnz 1b
        cmpl $0, %ecx
        jg 1b
        movl %edi, %esi
        movb $0, DEC_BUF + 12
        call puts
        popal
        ret

# EAX signed in decimal.
put_sdec:
        pushl %eax
        pushl %ecx
        testl %eax, %eax
        jns 1f
        pushl %eax
        movb $'-', %al
        call putc
        popl %eax
        negl %eax
1:      movl $1, %ecx
        call put_dec
        popl %ecx
        popl %eax
        ret

# AL as two lower-case hex digits.
put_hex2:
        pushl %eax
        pushl %ebx
        movzbl %al, %ebx
        shrl $4, %ebx
        movb hexdigits(%ebx), %al
        call putc
        movl 4(%esp), %eax
        movzbl %al, %ebx
        andl $0x0F, %ebx
        movb hexdigits(%ebx), %al
        call putc
        popl %ebx
        popl %eax
        ret

newline:
        SAY "\r\n"
        ret

prompt:
        SAY "> "
        ret

# Wait until everything printed has left the UART (the ring, the FIFO, the shift register).
tx_flush:
1:      cli
        movl TX_TAIL, %eax
        cmpl TX_HEAD, %eax
        jne 2f
        cmpl $0, TX_BUSY
        jne 2f
        sti
        movw $COM1_LSR, %dx
3:      inb %dx, %al
        testb $0x40, %al                # TEMT
        jz 3b
        ret
2:      sti
        hlt
        jmp 1b

# ---- the RTC ----

# Register \reg of the RTC to AL, converted to binary when register B says BCD.
.macro RTC_GET reg
        movb $\reg, %al
        outb %al, $0x70
        inb $0x71, %al
        call rtc_bin
.endm

rtc_bin:
        testb $0x04, RTC_FMT            # DM: binary
        jnz 1f
        movb %al, %ah
        shrb $4, %ah
        andb $0x0F, %al
        pushl %ecx
        movb %al, %cl
        movb %ah, %al
        movb $10, %ah
        mulb %ah
        addb %cl, %al
        popl %ecx
1:      ret

# Read date and time into RTC_VAL outside an update cycle: wait (interrupts on) until UIP
# is clear, then read everything with interrupts off, so that the IRQ 8 handler cannot move
# the index register in between. UIP lasts about 2 ms; a clock that never clears it (no RTC
# at all) is read anyway after a million tries.
rtc_read:
        pushal
        movl $1000000, %ecx
1:      cli
        movb $0x0A, %al
        outb %al, $0x70
        inb $0x71, %al
        testb $0x80, %al                # UIP
        jz 2f
        sti
        loop 1b
        cli
2:      movb $0x0B, %al
        outb %al, $0x70
        inb $0x71, %al
        movb %al, RTC_FMT
        RTC_GET 0x00
        movzbl %al, %eax
        movl %eax, RTC_VAL
        RTC_GET 0x02
        movzbl %al, %eax
        movl %eax, RTC_VAL + 4
        movb $0x04, %al                 # hours: in 12-hour mode bit 7 is PM
        outb %al, $0x70
        inb $0x71, %al
        movb %al, %bl
        andb $0x7F, %al
        call rtc_bin
        movzbl %al, %eax
        testb $0x02, RTC_FMT            # 24-hour mode
        jnz 3f
        cmpl $12, %eax                  # 12 AM is 0, 12 PM is 12
        jne 4f
        xorl %eax, %eax
4:      testb $0x80, %bl
        jz 3f
        addl $12, %eax
3:      movl %eax, RTC_VAL + 8
        RTC_GET 0x07
        movzbl %al, %eax
        movl %eax, RTC_VAL + 12
        RTC_GET 0x08
        movzbl %al, %eax
        movl %eax, RTC_VAL + 16
        RTC_GET 0x09
        movzbl %al, %ebx
        RTC_GET 0x32                    # century
        movzbl %al, %eax
        imull $100, %eax, %eax
        addl %ebx, %eax
        movl %eax, RTC_VAL + 20
        sti
        popal
        ret

# "rtc YYYY-MM-DD hh:mm:ss"
print_time:
        pushl %eax
        pushl %ecx
        call rtc_read
        SAY "rtc "
        movl RTC_VAL + 20, %eax
        movl $4, %ecx
        call put_dec
        movl $2, %ecx
        SAY "-"
        movl RTC_VAL + 16, %eax
        call put_dec
        SAY "-"
        movl RTC_VAL + 12, %eax
        call put_dec
        SAY " "
        movl RTC_VAL + 8, %eax
        call put_dec
        SAY ":"
        movl RTC_VAL + 4, %eax
        call put_dec
        SAY ":"
        movl RTC_VAL, %eax
        call put_dec
        call newline
        popl %ecx
        popl %eax
        ret

# ---- the line editor ----

# AL: one input character (from COM1 or translated from a key).
edit_char:
        pushal
        cmpb $0x0D, %al
        je 5f
        cmpb $0x0A, %al
        jne 1f
        cmpl $0, LAST_CR                # the LF of a CR LF pair
        movl $0, LAST_CR
        jne 9f
        jmp 6f
1:      movl $0, LAST_CR
        cmpb $0x08, %al                 # BS and DEL erase
        je 2f
        cmpb $0x7F, %al
        je 2f
        cmpb $0x20, %al                 # other control characters are ignored
        jb 9f
        cmpb $0x7E, %al
        ja 9f
        movl LINE_LEN, %ebx
        cmpl $LINE_MAX, %ebx
        jae 9f
        movb %al, LINE(%ebx)
        incl LINE_LEN
        call putc
        jmp 9f
2:      cmpl $0, LINE_LEN
        je 9f
        decl LINE_LEN
        SAY "\b \b"
        jmp 9f
5:      movl $1, LAST_CR
6:      call newline
        movl LINE_LEN, %ebx
        movb $0, LINE(%ebx)
        movl $0, LINE_LEN
        call execute
        call prompt
9:      popal
        ret

# ---- commands ----

# ESI -> first non-space character at or after ESI.
skip_spaces:
1:      cmpb $' ', (%esi)
        jne 2f
        incl %esi
        jmp 1b
2:      ret

# Run the command in LINE. The first word selects it; ESI is left at its arguments.
execute:
        movl $LINE, %esi
        call skip_spaces
        cmpb $0, (%esi)
        je 9f
        movl %esi, %edi                 # EDI: the word, ECX: its length
        xorl %ecx, %ecx
1:      movb (%esi, %ecx), %al
        testb %al, %al
        jz 2f
        cmpb $' ', %al
        je 2f
        incl %ecx
        jmp 1b
2:      movl $commands, %ebx
3:      movl (%ebx), %edx               # the name of this entry, NUL-terminated
        testl %edx, %edx
        jz 7f
        xorl %eax, %eax
4:      cmpl %ecx, %eax                 # compare the word with the name
        je 5f
        movzbl (%edx, %eax), %esi       # (a shorter name fails on its NUL)
        movzbl (%edi, %eax), %ebp
        cmpl %esi, %ebp
        jne 6f
        incl %eax
        jmp 4b
5:      cmpb $0, (%edx, %eax)           # whole word matched: the name must end too
        jne 6f
        leal (%edi, %ecx), %esi
        call skip_spaces
        jmp *4(%ebx)
6:      addl $8, %ebx
        jmp 3b
7:      SAY "unknown: "
        movb (%edi, %ecx), %dl          # print just the word
        movb $0, (%edi, %ecx)
        movl %edi, %esi
        call puts
        movb %dl, (%edi, %ecx)
        call newline
9:      ret

cmd_help:
        movl $help_text, %esi
        jmp puts

cmd_ticks:
        SAY "ticks "
        movl TICKS, %eax
        movl $1, %ecx
        call put_dec
        jmp newline

cmd_uptime:
        SAY "uptime "
        movl SECONDS, %eax
        movl $1, %ecx
        call put_dec
        jmp newline

cmd_time:
        jmp print_time

# "keys N" and, when N > 0, ": " and the last min(N, 8) scancodes, oldest first.
cmd_keys:
        cli                             # a consistent count and history
        movl KEYCOUNT, %ebx
        movl KEYLAST, %eax
        movl KEYLAST + 4, %edx
        sti
        pushl %edx
        pushl %eax                      # the history, indexed by count mod 8, at (%esp)
        SAY "keys "
        movl %ebx, %eax
        movl $1, %ecx
        call put_dec
        testl %ebx, %ebx
        jz 3f
        SAY ":"
        movl %ebx, %edi                 # EDI: index of the oldest of the last 8
        subl $8, %edi
        cmpl $8, %ebx
        jae 1f
        xorl %edi, %edi
1:      cmpl %ebx, %edi
        je 3f
        SAY " "
        movl %edi, %eax
        andl $7, %eax
        movb (%esp, %eax), %al
        call put_hex2
        incl %edi
        jmp 1b
3:      addl $8, %esp
        jmp newline

# Numbers: optional '-', decimal digits, ended by a space or the end of the line.
# In: ESI. Out: CF clear, EAX value (mod 2^32), ESI after the number; CF set when malformed.
parse_num:
        pushl %ebx
        pushl %ecx
        pushl %edx
        xorl %eax, %eax
        xorl %ecx, %ecx                 # CL: negative, CH: digits seen
        cmpb $'-', (%esi)
        jne 1f
        incb %cl
        incl %esi
1:      movzbl (%esi), %ebx
        testb %bl, %bl
        jz 2f
        cmpb $' ', %bl
        je 2f
        subb $'0', %bl
        cmpb $9, %bl
        ja 4f
        imull $10, %eax, %eax
        addl %ebx, %eax
        movb $1, %ch
        incl %esi
        jmp 1b
2:      testb %ch, %ch
        jz 4f
        testb %cl, %cl
        jz 3f
        negl %eax
3:      popl %edx
        popl %ecx
        popl %ebx
        clc
        ret
4:      popl %edx
        popl %ecx
        popl %ebx
        stc
        ret

cmd_sum:
        xorl %ebx, %ebx
1:      call skip_spaces
        cmpb $0, (%esi)
        je 2f
        call parse_num
        jc 3f
        addl %eax, %ebx
        jmp 1b
2:      movl %ebx, %eax
        call put_sdec
        jmp newline
3:      SAY "usage: sum N N ...\r\n"
        ret

cmd_echo:
        call puts
        jmp newline

# exit N: write N (0-255) to the debug-exit port once the output has left the UART.
cmd_exit:
        cmpb $'-', (%esi)
        je 1f
        call parse_num
        jc 1f
        cmpl $255, %eax
        ja 1f
        movl %eax, %ebx
        call skip_spaces
        cmpb $0, (%esi)
        jne 1f
        call tx_flush
        movl %ebx, %eax
        outb %al, $DEBUG_EXIT
        ret                             # no debug-exit device: carry on
1:      SAY "usage: exit N (0-255)\r\n"
        ret

        .section .rodata
        .balign 4
commands:
        .long s_help, cmd_help
        .long s_ticks, cmd_ticks
        .long s_uptime, cmd_uptime
        .long s_time, cmd_time
        .long s_keys, cmd_keys
        .long s_sum, cmd_sum
        .long s_echo, cmd_echo
        .long s_exit, cmd_exit
        .long 0, 0
s_help:   .asciz "help"
s_ticks:  .asciz "ticks"
s_uptime: .asciz "uptime"
s_time:   .asciz "time"
s_keys:   .asciz "keys"
s_sum:    .asciz "sum"
s_echo:   .asciz "echo"
s_exit:   .asciz "exit"

help_text:
        .ascii "help         this list\r\n"
        .ascii "ticks        PIT interrupts since boot (100 per second)\r\n"
        .ascii "uptime       RTC update interrupts since boot (seconds)\r\n"
        .ascii "time         RTC date and time\r\n"
        .ascii "keys         scancodes received, the last 8 in hex\r\n"
        .ascii "sum N N ...  decimal sum (32-bit)\r\n"
        .ascii "echo TEXT    print TEXT\r\n"
        .asciz "exit N       write N to the debug-exit port\r\n"

hexdigits:
        .ascii "0123456789abcdef"

# Scancode set 1 make codes (what the 8042 delivers with translation on) to characters:
# digits, minus, backspace, letters, Enter, space. 0: no character.
keymap:
        .byte 0, 0, '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', 0, 0x08, 0
        .byte 'q', 'w', 'e', 'r', 't', 'y', 'u', 'i', 'o', 'p', 0, 0, 0x0D, 0, 'a', 's'
        .byte 'd', 'f', 'g', 'h', 'j', 'k', 'l', 0, 0, 0, 0, 0, 'z', 'x', 'c', 'v'
        .byte 'b', 'n', 'm', 0, 0, 0, 0, 0, 0, ' '
keymap_end:
