/* aero core: the 8042 keyboard controller and its PS/2 keyboard (kbc.c). */
#ifndef AERO_KBC_H
#define AERO_KBC_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

typedef struct aero_kbc {
    uint64_t deadline;   /* tick at which aero_kbc_timer must run, AERO_NEVER: none */
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
