/* aero core: the VGA's registers for a text console (vga.c). */
#ifndef AERO_VGA_H
#define AERO_VGA_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

/* Every register a BIOS and a text-mode console program, kept as written. All 0 at power-on
 * (the DAC's pixel mask is kept XOR FFh), so an untouched VGA serializes as zeros. */
typedef struct aero_vga {
    uint8_t misc;          /* miscellaneous output (3C2h written, 3CCh read); bit 0: CRTC at 3Dxh */
    uint8_t seq_index;     /* sequencer index (3C4h) */
    uint8_t seq[8];        /* sequencer registers (3C5h) */
    uint8_t crtc_index;    /* CRT controller index (3D4h / 3B4h) */
    uint8_t crtc[32];      /* CRT controller registers (3D5h / 3B5h): 0Ch-0Dh start address,
                              0Eh-0Fh cursor location, 0Ah-0Bh cursor shape */
    uint8_t gr_index;      /* graphics controller index (3CEh) */
    uint8_t gr[16];        /* graphics controller registers (3CFh) */
    uint8_t ar_index;      /* attribute controller index (3C0h), bit 5: palette address source */
    uint8_t ar_flip;       /* 3C0h flip-flop: 0 next write is an index, 1 data; reading 3DAh clears it */
    uint8_t ar[32];        /* attribute controller registers (3C1h reads) */
    uint8_t pel_mask;      /* DAC pixel mask (3C6h) XOR FFh */
    uint8_t dac_read;      /* DAC read index (3C7h written) */
    uint8_t dac_write;     /* DAC write index (3C8h) */
    uint8_t dac_sub;       /* component (0 red, 1 green, 2 blue) the next 3C9h access moves */
    uint8_t dac_reading;   /* 1: the last index written was the read index (3C7h reads 03h) */
    uint8_t palette[768];  /* the DAC: 256 entries of 6-bit red, green, blue */
} aero_vga;

void aero_vga_reset(struct aero_machine *m);
/* Ports 3B4h-3B5h, 3BAh, 3C0h-3CFh, 3D4h-3D5h, 3DAh. */
int aero_vga_port(uint16_t port);
uint8_t aero_vga_read(struct aero_machine *m, uint16_t port);
void aero_vga_write(struct aero_machine *m, uint16_t port, uint8_t val);
void aero_vga_save(const aero_vga *s, struct aero_sbuf *b);
void aero_vga_load(aero_vga *s, struct aero_sbuf *b);

#endif
