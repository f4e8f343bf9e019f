/* aero core: a VGA for text consoles (IBM VGA Technical Reference; QEMU's hw/display/vga.c
 * for the read-back details firmware relies on).
 *
 * The frame buffer is plain RAM: A0000h-BFFFFh is ordinary memory in this machine, so text
 * written at B8000h (character, attribute) stays there, takes part in dirty tracking and
 * fingerprints like any RAM, and is read back as the screen (aero.machine.Machine.screen).
 * The planar memory organisation (sequencer map mask, graphics read/write modes, odd/even
 * addressing, plane 2's font) is not modelled: graphics modes do not display anything, and
 * the font a BIOS loads lands in RAM at A0000h. Text mode, which is what firmware, boot
 * loaders and Linux's vgacon use, needs none of it.
 *
 * Ports: the registers are stored as written and read back: miscellaneous output (3C2h,
 * read at 3CCh), sequencer (3C4h/3C5h), graphics controller (3CEh/3CFh), attribute
 * controller (3C0h index/data flip-flop, 3C1h read), CRT controller at 3D4h/3D5h when the
 * miscellaneous output's bit 0 is set and at 3B4h/3B5h when it is clear (the other pair
 * reads FFh), and the DAC (3C6h mask, 3C7h/3C8h indexes, 3C9h data in red, green, blue
 * order, 6 bits each). Input status 1 (3DAh, or 3BAh in mono) resets the attribute
 * flip-flop and reports display enable and vertical retrace from the guest clock: a 70 Hz
 * frame of 449 lines at 31,469 lines per second, lines 400-448 blanked, 412-413 in vertical
 * retrace, and the last fifth of each line in horizontal blanking (bit 0). So a BIOS that
 * waits for a retrace edge sees one, at the same tick on every run.
 *
 * Not modelled: the VGA enable port 3C3h and 46E8h, feature control, the CRTC write
 * protection (CR11 bit 7), the memory map select's effect on the window (the window is
 * always RAM), the Bochs VBE extensions (SeaVGABIOS then falls back to plain VGA).
 */
#include "platform.h"

#define LINE_HZ 31469u
#define FRAME_LINES 449u

void aero_vga_reset(aero_machine *m) { memset(&m->pc->vga, 0, sizeof m->pc->vga); }

int aero_vga_port(uint16_t port) {
    return (port >= 0x3C0 && port <= 0x3CF) || port == 0x3B4 || port == 0x3B5 || port == 0x3BA ||
           port == 0x3D4 || port == 0x3D5 || port == 0x3DA;
}

/* The CRTC pair (3D4h or 3B4h) and status port the miscellaneous output selects. */
static uint16_t crtc_base(const aero_vga *v) { return (v->misc & 1) ? 0x3D0 : 0x3B0; }

static uint8_t input_status1(aero_machine *m) {
    uint64_t sub = aero_clock_at(m, aero_now(m), (uint64_t)LINE_HZ * 5);
    uint64_t line = (sub / 5) % FRAME_LINES;
    uint8_t v = 0;
    if (line >= 400 || sub % 5 == 4) v |= 0x01; /* display disabled (blanking) */
    if (line >= 412 && line < 414) v |= 0x08;   /* vertical retrace */
    m->pc->vga.ar_flip = 0;
    return v;
}

uint8_t aero_vga_read(aero_machine *m, uint16_t port) {
    aero_vga *v = &m->pc->vga;
    if ((port & 0xFFF0) == 0x3B0 || (port & 0xFFF0) == 0x3D0) {
        if ((port & 0xFFF0) != crtc_base(v)) return 0xFF;
        switch (port & 0xF) {
        case 0x4: return v->crtc_index;
        case 0x5: return v->crtc[v->crtc_index & 0x1F];
        case 0xA: return input_status1(m);
        default: return 0xFF;
        }
    }
    switch (port) {
    case 0x3C0: return v->ar_index;
    case 0x3C1: return v->ar[v->ar_index & 0x1F];
    case 0x3C2: return 0x10; /* input status 0: the switch sense line reads 1 (a colour monitor) */
    case 0x3C4: return v->seq_index;
    case 0x3C5: return v->seq[v->seq_index & 7];
    case 0x3C6: return v->pel_mask ^ 0xFF;
    case 0x3C7: return v->dac_reading ? 0x03 : 0x00;
    case 0x3C8: return v->dac_write;
    case 0x3C9: {
        uint8_t val = v->palette[v->dac_read * 3u + v->dac_sub];
        if (++v->dac_sub == 3) {
            v->dac_sub = 0;
            v->dac_read++;
        }
        return val;
    }
    case 0x3CC: return v->misc;
    case 0x3CE: return v->gr_index;
    case 0x3CF: return v->gr[v->gr_index & 0xF];
    default: return 0xFF;
    }
}

void aero_vga_write(aero_machine *m, uint16_t port, uint8_t val) {
    aero_vga *v = &m->pc->vga;
    if ((port & 0xFFF0) == 0x3B0 || (port & 0xFFF0) == 0x3D0) {
        if ((port & 0xFFF0) != crtc_base(v)) return;
        if ((port & 0xF) == 0x4) v->crtc_index = val;
        else if ((port & 0xF) == 0x5) v->crtc[v->crtc_index & 0x1F] = val;
        return; /* 3DAh written: feature control, not modelled */
    }
    switch (port) {
    case 0x3C0:
        if (v->ar_flip) v->ar[v->ar_index & 0x1F] = val;
        else v->ar_index = val & 0x3F;
        v->ar_flip ^= 1;
        return;
    case 0x3C2: v->misc = val; return;
    case 0x3C4: v->seq_index = val; return;
    case 0x3C5: v->seq[v->seq_index & 7] = val; return;
    case 0x3C6: v->pel_mask = val ^ 0xFF; return;
    case 0x3C7:
        v->dac_read = val;
        v->dac_sub = 0;
        v->dac_reading = 1;
        return;
    case 0x3C8:
        v->dac_write = val;
        v->dac_sub = 0;
        v->dac_reading = 0;
        return;
    case 0x3C9:
        v->palette[v->dac_write * 3u + v->dac_sub] = val & 0x3F;
        if (++v->dac_sub == 3) {
            v->dac_sub = 0;
            v->dac_write++;
        }
        return;
    case 0x3CE: v->gr_index = val; return;
    case 0x3CF: v->gr[v->gr_index & 0xF] = val; return;
    default: return;
    }
}

void aero_vga_save(const aero_vga *s, aero_sbuf *b) {
    aero_put8(b, s->misc);
    aero_put8(b, s->seq_index);
    aero_put_bytes(b, s->seq, sizeof s->seq);
    aero_put8(b, s->crtc_index);
    aero_put_bytes(b, s->crtc, sizeof s->crtc);
    aero_put8(b, s->gr_index);
    aero_put_bytes(b, s->gr, sizeof s->gr);
    aero_put8(b, s->ar_index);
    aero_put8(b, s->ar_flip);
    aero_put_bytes(b, s->ar, sizeof s->ar);
    aero_put8(b, s->pel_mask);
    aero_put8(b, s->dac_read);
    aero_put8(b, s->dac_write);
    aero_put8(b, s->dac_sub);
    aero_put8(b, s->dac_reading);
    aero_put_bytes(b, s->palette, sizeof s->palette);
}

void aero_vga_load(aero_vga *s, aero_sbuf *b) {
    s->misc = aero_get8(b);
    s->seq_index = aero_get8(b);
    aero_get_bytes(b, s->seq, sizeof s->seq);
    s->crtc_index = aero_get8(b);
    aero_get_bytes(b, s->crtc, sizeof s->crtc);
    s->gr_index = aero_get8(b);
    aero_get_bytes(b, s->gr, sizeof s->gr);
    s->ar_index = aero_get8(b) & 0x3F;
    s->ar_flip = aero_get8(b) & 1;
    aero_get_bytes(b, s->ar, sizeof s->ar);
    s->pel_mask = aero_get8(b);
    s->dac_read = aero_get8(b);
    s->dac_write = aero_get8(b);
    s->dac_sub = aero_get8(b) % 3;
    s->dac_reading = aero_get8(b) & 1;
    aero_get_bytes(b, s->palette, sizeof s->palette);
}
