/* aero core: the 8042 keyboard controller and its PS/2 keyboard (kbc.c). */
#ifndef AERO_KBC_H
#define AERO_KBC_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

#define AERO_KBC_RAM 32   /* the 8042's internal RAM bytes reachable by 20h-3Fh / 60h-7Fh */
#define AERO_KBC_FIFO 16  /* the keyboard's output FIFO (bytes waiting to reach the 8042) */

/* Keys without a plain set-2 make code (AERO_EV_KEY's a): Print Screen is E07Ch (its make
 * code); Pause, whose set-2 sequence starts with E1h, is injected as E077h, a code no key
 * sends. */
#define AERO_KEY_PRINT_SCREEN 0xE07Cu
#define AERO_KEY_PAUSE 0xE077u

typedef struct aero_kbc {
    uint64_t deadline;            /* always AERO_NEVER: every transfer completes at once */
    /* ---- the 8042 ---- */
    uint8_t ram[AERO_KBC_RAM];    /* internal RAM; ram[0] is the command byte */
    uint8_t outport;              /* output port: bit 0 reset (1 = run), bit 1 A20, 2-3 and
                                   * 6-7 as written; bits 4-5 are computed when read */
    uint8_t obuf;                 /* output buffer (port 60h reads it) */
    uint8_t obf;                  /* 1: obuf holds a byte not read yet (status bit 0) */
    uint8_t obf_aux;              /* 1: that byte came from the auxiliary side (status bit 5) */
    uint8_t a2;                   /* status bit 3: 1 = the last write was to port 64h */
    uint8_t timeout;              /* status bit 6: the last aux transmission timed out */
    uint8_t pending_cmd;          /* controller command waiting for its port-60h byte, 0: none */
    uint8_t reply_src;            /* controller reply waiting for the output buffer: 0 none,
                                   * 1 keyboard side, 2 auxiliary side */
    uint8_t reply;                /* that reply byte */
    uint8_t xlat_break;           /* translation consumed an F0h: OR 80h into the next byte */
    /* ---- the PS/2 keyboard ---- */
    uint8_t fifo[AERO_KBC_FIFO];  /* bytes the keyboard has to send, oldest at fifo_head */
    uint8_t fifo_head;            /* index of the oldest byte */
    uint8_t fifo_len;             /* bytes waiting (0..AERO_KBC_FIFO) */
    uint8_t kbd_cmd;              /* keyboard command waiting for its parameter (EDh, F0h,
                                   * F3h), 0: none */
    uint8_t scanning;             /* 1: key events are sent (F4h), 0: disabled (F5h) */
    uint8_t scancode_set;         /* 1 or 2 */
    uint8_t leds;                 /* ED parameter: bit 0 Scroll, 1 Num, 2 Caps Lock */
    uint8_t typematic;            /* F3 parameter: rate and delay (repeat is not generated) */
    uint8_t last_sent;            /* the last byte queued, sent again on FEh (resend) */
} aero_kbc;

void aero_kbc_reset(struct aero_machine *m);
/* Ports 60h (data) and 64h (status / command). */
uint8_t aero_kbc_read(struct aero_machine *m, uint16_t port);
void aero_kbc_write(struct aero_machine *m, uint16_t port, uint8_t val);
/* A key goes down (pressed = 1) or up (AERO_EV_KEY): key is its set-2 make code, E0h-prefixed
 * keys as E000h | code. */
void aero_kbc_key(struct aero_machine *m, uint32_t key, int pressed);
void aero_kbc_timer(struct aero_machine *m);
void aero_kbc_save(const aero_kbc *s, struct aero_sbuf *b);
void aero_kbc_load(aero_kbc *s, struct aero_sbuf *b);

#endif
