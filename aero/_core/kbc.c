/* aero core: the 8042 keyboard controller with a PS/2 (MF2) keyboard on its keyboard port and
 * nothing on its auxiliary port (IBM PC/AT and PS/2 technical references; QEMU's pckbd.c and
 * ps2.c for what BIOSes and operating systems rely on).
 *
 * Data paths. The keyboard queues its bytes (key codes and command replies) in a 16-byte FIFO;
 * the controller moves one byte at a time into its output buffer (port 60h) whenever the
 * buffer is empty and the keyboard interface is enabled, translating set-2 codes to set 1 on
 * the way when command-byte bit 6 asks for it. Replies of the controller itself (20h, C0h,
 * D0h, AAh, D2h, D3h ...) wait in one slot that takes priority over the keyboard. Every
 * transfer completes at once: no timer is ever armed, and IBF (status bit 1) always reads 0.
 *
 * IRQ 1 is high while the output buffer holds a keyboard-side byte and command-byte bit 0 is
 * set; IRQ 12 likewise for an auxiliary byte (only D3h makes one) and bit 1. Reading 60h drops
 * the line and the next byte raises it again, so every byte is one rising edge.
 *
 * Documented choices:
 * - Power-on command byte 45h (translation, SYS, keyboard IRQ enabled): the value the PC/AT
 *   BIOS leaves, so a guest started without a BIOS reads set-1 codes with interrupts, as it
 *   would after one. (SeaBIOS on QEMU leaves 61h plus the SYS status bit: the same but for
 *   the aux-disable bit it sets for its mouse.) AAh sets SYS (bit 2), which status bit 2 shows.
 * - Writing a byte for the keyboard to 60h enables the keyboard interface (clears command-byte
 *   bit 4), as the 8042 firmware and QEMU do.
 * - No mouse: A9h (aux interface test) answers 00h (the lines are fine); D3h loops its byte
 *   back as auxiliary data (status bits 0 and 5, IRQ 12); D4h sends into the void and sets the
 *   timeout bit (status bit 6) with no reply. A7h/A8h only set/clear command-byte bit 5.
 * - C0h (input port) answers A0h: keyboard not inhibited, no manufacturing jumper, colour
 *   display. E0h (test inputs) answers 00h. Unknown controller commands are ignored.
 * - D1h with bit 0 clear, and F0h-FFh with bit 0 clear (FEh), pulse the CPU's reset line; the
 *   output port's reset bit reads 1 afterwards (a real 8042 would hold the CPU in reset until
 *   the bit is written back, which no software relies on).
 * - D2h's byte is delivered untranslated (it comes from the controller, not the keyboard).
 * - Scancode set 3 is not modelled: F0h 03h is acknowledged and the keyboard keeps its set;
 *   F0h with a parameter above 3 answers FEh. Set-3-only commands (F7h-FDh) answer FEh like
 *   every unknown byte. Typematic repeat is not generated (the host injects repeats).
 * - A parameter byte with bit 7 set is a new command: the keyboard abandons the one waiting
 *   for its parameter (FEh, resend, keeps it waiting).
 * - Keys are dropped while scanning is disabled (F5h) or the keyboard interface is disabled
 *   (command-byte bit 4, ADh). A key that does not fit in the FIFO is dropped and the
 *   keyboard queues its overrun code (00h in set 2, FFh in set 1); keys are then dropped
 *   until the overrun code has left the FIFO.
 * - Print Screen (E07Ch) sends its unmodified sequence (E0 12 E0 7C / E0 F0 7C E0 F0 12): the
 *   keyboard does not track Shift/Ctrl/Alt. Pause is injected as E077h and sends
 *   E1 14 77 E1 F0 14 F0 77 when pressed, nothing when released. SysRq is its own code, 84h.
 */
#include "platform.h"

/* Command byte (RAM byte 0). */
#define CB_KBD_INT 0x01       /* IRQ 1 on keyboard data */
#define CB_AUX_INT 0x02       /* IRQ 12 on auxiliary data */
#define CB_SYS 0x04           /* system flag (status bit 2) */
#define CB_KBD_DISABLED 0x10  /* keyboard interface disabled (clock held low) */
#define CB_AUX_DISABLED 0x20  /* auxiliary interface disabled */
#define CB_XLATE 0x40         /* translate set 2 to set 1 */

#define CB_POWER_ON (CB_XLATE | CB_SYS | CB_KBD_INT)

/* Output port. */
#define OP_RESET 0x01         /* 0: CPU in reset */
#define OP_A20 0x02
#define OP_KBD_IRQ 0x10       /* the IRQ 1 line */
#define OP_AUX_IRQ 0x20       /* the IRQ 12 line */
#define OP_POWER_ON 0xCD      /* reset high, clock and data lines high; A20 from the config */

#define REPLY_NONE 0
#define REPLY_KBD 1
#define REPLY_AUX 2

#define KBD_ACK 0xFA
#define KBD_RESEND 0xFE
#define KBD_BAT_OK 0xAA
#define KBD_TYPEMATIC_DEFAULT 0x2B /* 10.9 characters/s after 500 ms */

/* The 8042's set-2 -> set-1 translation for bytes below 80h; bytes from 80h up pass
 * unchanged except 83h (F7) -> 41h and 84h (SysRq) -> 54h. */
static const uint8_t xlat_low[128] = {
    0xFF, 0x43, 0x41, 0x3F, 0x3D, 0x3B, 0x3C, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3E, 0x0F, 0x29, 0x59,
    0x65, 0x38, 0x2A, 0x70, 0x1D, 0x10, 0x02, 0x5A, 0x66, 0x71, 0x2C, 0x1F, 0x1E, 0x11, 0x03, 0x5B,
    0x67, 0x2E, 0x2D, 0x20, 0x12, 0x05, 0x04, 0x5C, 0x68, 0x39, 0x2F, 0x21, 0x14, 0x13, 0x06, 0x5D,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5E, 0x6A, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5F,
    0x6B, 0x33, 0x25, 0x17, 0x18, 0x0B, 0x0A, 0x60, 0x6C, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0C, 0x61,
    0x6D, 0x73, 0x28, 0x74, 0x1A, 0x0D, 0x62, 0x6E, 0x3A, 0x36, 0x1C, 0x1B, 0x75, 0x2B, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7A, 0x0E, 0x7B, 0x7C, 0x4F, 0x7D, 0x4B, 0x47, 0x7E, 0x7F, 0x6F,
    0x52, 0x53, 0x50, 0x4C, 0x4D, 0x48, 0x01, 0x45, 0x57, 0x4E, 0x51, 0x4A, 0x37, 0x49, 0x46, 0x54,
};

static uint8_t xlat(uint8_t b) {
    if (b < 0x80) return xlat_low[b];
    if (b == 0x83) return 0x41;
    if (b == 0x84) return 0x54;
    return b;
}

/* ---- the keyboard's FIFO ---- */

static void fifo_push(aero_kbc *s, uint8_t b) {
    s->fifo[(s->fifo_head + s->fifo_len) % AERO_KBC_FIFO] = b;
    s->fifo_len++;
}

static uint8_t fifo_pop(aero_kbc *s) {
    uint8_t b = s->fifo[s->fifo_head];
    s->fifo_head = (uint8_t)((s->fifo_head + 1) % AERO_KBC_FIFO);
    s->fifo_len--;
    return b;
}

/* A reply from the keyboard; dropped when the FIFO is full (the guest sent commands without
 * reading the answers). */
static void kbd_send(aero_kbc *s, uint8_t b) {
    if (s->fifo_len >= AERO_KBC_FIFO) return;
    fifo_push(s, b);
    s->last_sent = b;
}

/* ---- the controller's output buffer and IRQ lines ---- */

static void update_irqs(aero_machine *m) {
    aero_kbc *s = &m->pc->kbc;
    aero_pic_set_irq(m, 1, s->obf && !s->obf_aux && (s->ram[0] & CB_KBD_INT));
    aero_pic_set_irq(m, 12, s->obf && s->obf_aux && (s->ram[0] & CB_AUX_INT));
}

/* Fill an empty output buffer: a controller reply first, then the keyboard's next byte. */
static void service(aero_machine *m) {
    aero_kbc *s = &m->pc->kbc;
    while (!s->obf) {
        if (s->reply_src != REPLY_NONE) {
            s->obuf = s->reply;
            s->obf_aux = s->reply_src == REPLY_AUX;
            s->obf = 1;
            s->reply_src = REPLY_NONE;
            break;
        }
        if (!s->fifo_len || (s->ram[0] & CB_KBD_DISABLED)) break;
        uint8_t b = fifo_pop(s);
        if (s->ram[0] & CB_XLATE) {
            if (b == 0xF0) { /* a break prefix: it becomes bit 7 of the next byte */
                s->xlat_break = 1;
                continue;
            }
            b = (uint8_t)(xlat(b) | (s->xlat_break ? 0x80 : 0));
            s->xlat_break = 0;
        }
        s->obuf = b;
        s->obf_aux = 0;
        s->obf = 1;
    }
    update_irqs(m);
}

static void controller_reply(aero_machine *m, uint8_t b, uint8_t src) {
    aero_kbc *s = &m->pc->kbc;
    s->reply = b;
    s->reply_src = src;
    service(m);
}

/* ---- the PS/2 keyboard ---- */

static void kbd_defaults(aero_kbc *s) {
    s->scancode_set = 2;
    s->typematic = KBD_TYPEMATIC_DEFAULT;
    s->kbd_cmd = 0;
}

static void kbd_flush(aero_kbc *s) {
    s->fifo_head = 0;
    s->fifo_len = 0;
}

/* A byte the host sent to the keyboard. */
static void kbd_receive(aero_kbc *s, uint8_t val) {
    if (s->kbd_cmd && !(val & 0x80)) { /* the parameter of the command waiting for it */
        switch (s->kbd_cmd) {
        case 0xED:
            s->leds = val & 0x07;
            kbd_send(s, KBD_ACK);
            break;
        case 0xF3:
            s->typematic = val;
            kbd_send(s, KBD_ACK);
            break;
        default: /* F0h */
            if (val == 0) {
                kbd_send(s, KBD_ACK);
                kbd_send(s, s->scancode_set);
            } else if (val <= 3) {
                if (val < 3) s->scancode_set = val;
                kbd_send(s, KBD_ACK);
            } else {
                kbd_send(s, KBD_RESEND);
            }
            break;
        }
        s->kbd_cmd = 0;
        return;
    }
    if (val == 0xFE) { /* resend: the command waiting for a parameter (if any) still waits */
        kbd_send(s, s->last_sent);
        return;
    }
    s->kbd_cmd = 0;
    switch (val) {
    case 0xED: case 0xF0: case 0xF3:
        s->kbd_cmd = val;
        kbd_send(s, KBD_ACK);
        break;
    case 0xEE: /* echo */
        kbd_send(s, 0xEE);
        break;
    case 0xF2: /* identify: an MF2 keyboard */
        kbd_send(s, KBD_ACK);
        kbd_send(s, 0xAB);
        kbd_send(s, 0x83);
        break;
    case 0xF4: /* enable scanning: the keyboard also clears its buffer */
        kbd_flush(s);
        s->scanning = 1;
        kbd_send(s, KBD_ACK);
        break;
    case 0xF5: /* default and disable */
    case 0xF6: /* default and enable */
        kbd_flush(s);
        kbd_defaults(s);
        s->scanning = val == 0xF6;
        kbd_send(s, KBD_ACK);
        break;
    case 0xFF: /* reset: the self test (BAT) passes at once */
        kbd_flush(s);
        kbd_defaults(s);
        s->scanning = 1;
        s->leds = 0;
        kbd_send(s, KBD_ACK);
        kbd_send(s, KBD_BAT_OK);
        break;
    default:
        kbd_send(s, KBD_RESEND);
        break;
    }
}

void aero_kbc_key(aero_machine *m, uint32_t key, int pressed) {
    aero_kbc *s = &m->pc->kbc;
    if (!s->scanning || (s->ram[0] & CB_KBD_DISABLED)) return;
    uint8_t seq[8];
    int n = 0;
    uint8_t code = (uint8_t)key;
    if (key == AERO_KEY_PAUSE) {
        if (!pressed) return;
        static const uint8_t pause[8] = {0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77};
        for (; n < 8; n++) seq[n] = pause[n];
    } else if (key == AERO_KEY_PRINT_SCREEN) {
        static const uint8_t make[4] = {0xE0, 0x12, 0xE0, 0x7C};
        static const uint8_t brk[6] = {0xE0, 0xF0, 0x7C, 0xE0, 0xF0, 0x12};
        if (pressed) for (; n < 4; n++) seq[n] = make[n];
        else for (; n < 6; n++) seq[n] = brk[n];
    } else {
        if (key >> 8) seq[n++] = 0xE0;
        if (!pressed) seq[n++] = 0xF0;
        seq[n++] = code;
    }
    if (s->scancode_set == 1) { /* the keyboard's own set 1: the same mapping as the 8042's */
        int j = 0, brk = 0;
        for (int i = 0; i < n; i++) {
            if (seq[i] == 0xF0) { brk = 1; continue; }
            seq[j++] = (uint8_t)(xlat(seq[i]) | (brk ? 0x80 : 0));
            brk = 0;
        }
        n = j;
    }
    uint8_t overrun = s->scancode_set == 1 ? 0xFF : 0x00;
    int last = (s->fifo_head + s->fifo_len + AERO_KBC_FIFO - 1) % AERO_KBC_FIFO;
    if (s->fifo_len && s->fifo[last] == overrun) {
        /* overrun already reported: keys are lost until the host drains the FIFO */
    } else if (s->fifo_len + n > AERO_KBC_FIFO - 1) { /* the last slot is the overrun's */
        kbd_send(s, overrun);
    } else {
        for (int i = 0; i < n; i++) kbd_send(s, seq[i]);
    }
    service(m);
}

/* ---- the controller ---- */

static void write_outport(aero_machine *m, uint8_t val) {
    aero_kbc *s = &m->pc->kbc;
    s->outport = (uint8_t)((val | OP_RESET) & ~(OP_KBD_IRQ | OP_AUX_IRQ));
    aero_pc_set_a20(m, (val & OP_A20) != 0);
    if (!(val & OP_RESET)) aero_pc_reset_request(m, AERO_RESET_KBC);
}

static uint8_t read_outport(const aero_kbc *s) {
    uint8_t v = s->outport & (uint8_t)~(OP_KBD_IRQ | OP_AUX_IRQ);
    if (s->obf && !s->obf_aux && (s->ram[0] & CB_KBD_INT)) v |= OP_KBD_IRQ;
    if (s->obf && s->obf_aux && (s->ram[0] & CB_AUX_INT)) v |= OP_AUX_IRQ;
    return v;
}

static void controller_command(aero_machine *m, uint8_t cmd) {
    aero_kbc *s = &m->pc->kbc;
    if (cmd >= 0x20 && cmd <= 0x3F) {
        controller_reply(m, s->ram[cmd & 0x1F], REPLY_KBD);
        return;
    }
    if (cmd >= 0x60 && cmd <= 0x7F) {
        s->pending_cmd = cmd;
        return;
    }
    if (cmd >= 0xF0) { /* pulse output-port lines 0-3 whose bit is 0: line 0 is reset */
        if (!(cmd & 0x01)) aero_pc_reset_request(m, AERO_RESET_KBC);
        return;
    }
    switch (cmd) {
    case 0xA7: s->ram[0] |= CB_AUX_DISABLED; break;
    case 0xA8: s->ram[0] &= (uint8_t)~CB_AUX_DISABLED; break;
    case 0xA9: controller_reply(m, 0x00, REPLY_KBD); break; /* aux interface test: lines OK */
    case 0xAA: /* self test: passed, and the system flag is set */
        s->ram[0] |= CB_SYS;
        controller_reply(m, 0x55, REPLY_KBD);
        break;
    case 0xAB: controller_reply(m, 0x00, REPLY_KBD); break; /* keyboard interface test */
    case 0xAD: s->ram[0] |= CB_KBD_DISABLED; break;
    case 0xAE:
        s->ram[0] &= (uint8_t)~CB_KBD_DISABLED;
        service(m);
        break;
    case 0xC0: controller_reply(m, 0xA0, REPLY_KBD); break; /* input port */
    case 0xD0: controller_reply(m, read_outport(s), REPLY_KBD); break;
    case 0xD1: case 0xD2: case 0xD3: case 0xD4:
        s->pending_cmd = cmd;
        break;
    case 0xDD: write_outport(m, s->outport & (uint8_t)~OP_A20); break;
    case 0xDF: write_outport(m, s->outport | OP_A20); break;
    case 0xE0: controller_reply(m, 0x00, REPLY_KBD); break; /* test inputs */
    default: break; /* unknown: ignored */
    }
}

/* The data byte of the pending controller command. */
static void controller_data(aero_machine *m, uint8_t cmd, uint8_t val) {
    aero_kbc *s = &m->pc->kbc;
    if (cmd >= 0x60 && cmd <= 0x7F) {
        s->ram[cmd & 0x1F] = val;
        service(m); /* the command byte may enable the interface, translation or IRQs */
        return;
    }
    switch (cmd) {
    case 0xD1: write_outport(m, val); break;
    case 0xD2: controller_reply(m, val, REPLY_KBD); break;
    case 0xD3: controller_reply(m, val, REPLY_AUX); break;
    default: s->timeout = 1; break; /* D4h: no auxiliary device answers */
    }
}

void aero_kbc_reset(aero_machine *m) {
    aero_kbc *s = &m->pc->kbc;
    memset(s, 0, sizeof *s);
    s->deadline = AERO_NEVER;
    s->ram[0] = CB_POWER_ON;
    s->outport = (uint8_t)(OP_POWER_ON | (m->cfg.a20_enabled ? OP_A20 : 0));
    s->a2 = 1;
    kbd_defaults(s);
    s->scanning = 1;
    s->last_sent = KBD_BAT_OK; /* what the keyboard sent after its power-on self test */
}

uint8_t aero_kbc_read(aero_machine *m, uint16_t port) {
    aero_kbc *s = &m->pc->kbc;
    if (port == 0x64) {
        return (uint8_t)(s->obf | (s->ram[0] & CB_SYS) | (s->a2 << 3) | 0x10 |
                         (s->obf_aux << 5) | (s->timeout << 6));
    }
    uint8_t v = s->obuf; /* with nothing new, the last byte reads again */
    if (s->obf) {
        s->obf = 0;
        s->obf_aux = 0;
        update_irqs(m);
        service(m);
    }
    return v;
}

void aero_kbc_write(aero_machine *m, uint16_t port, uint8_t val) {
    aero_kbc *s = &m->pc->kbc;
    if (port == 0x64) {
        s->a2 = 1;
        s->pending_cmd = 0; /* a new command abandons one still waiting for its data */
        s->timeout = 0;
        controller_command(m, val);
        return;
    }
    s->a2 = 0;
    if (s->pending_cmd) {
        uint8_t cmd = s->pending_cmd;
        s->pending_cmd = 0;
        controller_data(m, cmd, val);
        return;
    }
    s->ram[0] &= (uint8_t)~CB_KBD_DISABLED;
    kbd_receive(s, val);
    service(m);
}

void aero_kbc_timer(aero_machine *m) { m->pc->kbc.deadline = AERO_NEVER; }

void aero_kbc_save(const aero_kbc *s, aero_sbuf *b) {
    aero_put_bytes(b, s->ram, AERO_KBC_RAM);
    const uint8_t f[] = {s->outport, s->obuf, s->obf, s->obf_aux, s->a2, s->timeout,
                         s->pending_cmd, s->reply_src, s->reply, s->xlat_break,
                         s->fifo_head, s->fifo_len, s->kbd_cmd, s->scanning, s->scancode_set,
                         s->leds, s->typematic, s->last_sent};
    aero_put_bytes(b, f, sizeof f);
    aero_put_bytes(b, s->fifo, AERO_KBC_FIFO);
}

void aero_kbc_load(aero_kbc *s, aero_sbuf *b) {
    uint8_t f[18];
    aero_get_bytes(b, s->ram, AERO_KBC_RAM);
    aero_get_bytes(b, f, sizeof f);
    aero_get_bytes(b, s->fifo, AERO_KBC_FIFO);
    s->deadline = AERO_NEVER;
    s->outport = (uint8_t)((f[0] | OP_RESET) & ~(OP_KBD_IRQ | OP_AUX_IRQ));
    s->obuf = f[1];
    s->obf = f[2] & 1;
    s->obf_aux = f[3] & 1;
    s->a2 = f[4] & 1;
    s->timeout = f[5] & 1;
    uint8_t pc = f[6];
    s->pending_cmd = ((pc >= 0x60 && pc <= 0x7F) || (pc >= 0xD1 && pc <= 0xD4)) ? pc : 0;
    s->reply_src = f[7] <= REPLY_AUX ? f[7] : REPLY_NONE;
    s->reply = f[8];
    s->xlat_break = f[9] & 1;
    s->fifo_head = f[10] % AERO_KBC_FIFO;
    s->fifo_len = f[11] <= AERO_KBC_FIFO ? f[11] : AERO_KBC_FIFO;
    s->kbd_cmd = (f[12] == 0xED || f[12] == 0xF0 || f[12] == 0xF3) ? f[12] : 0;
    s->scanning = f[13] & 1;
    s->scancode_set = f[14] == 1 ? 1 : 2;
    s->leds = f[15] & 0x07;
    s->typematic = f[16];
    s->last_sent = f[17];
}
