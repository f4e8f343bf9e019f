/* aero core: the 8254 programmable interval timer and port 61h (pit.c). */
#ifndef AERO_PIT_H
#define AERO_PIT_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

typedef struct aero_pit {
    uint64_t deadline;   /* tick at which aero_pit_timer must run, AERO_NEVER: none */
} aero_pit;

void aero_pit_reset(struct aero_machine *m);
/* Ports 40h-43h and 61h. */
uint8_t aero_pit_read(struct aero_machine *m, uint16_t port);
void aero_pit_write(struct aero_machine *m, uint16_t port, uint8_t val);
void aero_pit_timer(struct aero_machine *m);
void aero_pit_save(const aero_pit *s, struct aero_sbuf *b);
void aero_pit_load(aero_pit *s, struct aero_sbuf *b);

#endif
