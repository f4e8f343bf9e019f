/* aero core: the 8254 programmable interval timer and port 61h (pit.c). */
#ifndef AERO_PIT_H
#define AERO_PIT_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

/* PIT clock edges are numbered from 1: edge k has happened at guest tick t when
 * aero_clock_at(m, t, AERO_PIT_HZ) >= k. Counters are pure functions of the edge number. */
#define AERO_PIT_HZ 1193182u

/* One counter. A "segment" is one loaded count: the counting element (CE) is loaded at edge
 * `load` with `n` and counts down on the edges after it; before `load` (and while the counter
 * is not running) OUT and the count read back as pre_out / pre_count. */
typedef struct aero_pit_channel {
    uint64_t load;        /* edge at which the CE was (or will be) loaded with n */
    uint64_t run_from;    /* modes 0 and 4: edges after this one decrement while the gate is high */
    uint64_t base;        /* modes 0 and 4: decrements done before the gate last went low */
    uint64_t pend_at;     /* modes 2 and 3: edge at which pend_n is loaded, UINT64_MAX: none */
    uint64_t null_until;  /* status "null count" reads 1 while the clock is below this edge */
    uint32_t n;           /* the loaded count in clocks: 1..65536 (binary) or 1..10000 (BCD) */
    uint32_t pend_n;      /* modes 2 and 3: count waiting for the end of the (half) cycle */
    uint16_t cr;          /* count register as last written (raw, BCD digits in BCD mode) */
    uint16_t latch;       /* output latch: the latched count (raw) */
    uint16_t pre_count;   /* count read back before `load` or while not running (raw binary) */
    uint8_t mode;         /* mode field of the control word as written, 0-7 (6, 7 act as 2, 3) */
    uint8_t rw;           /* access mode: 1 LSB, 2 MSB, 3 LSB then MSB */
    uint8_t bcd;          /* 1: counts in four BCD decades */
    uint8_t running;      /* 1: a segment is counting (0: no count, waiting for a trigger, gate low in 2/3) */
    uint8_t pre_out;      /* OUT before `load` or while not running */
    uint8_t gate;         /* GATE input level */
    uint8_t have_count;   /* a complete count has been written since the control word */
    uint8_t low_start;    /* mode 3: the segment starts with the low half of the square wave */
    uint8_t pend_low;     /* mode 3: the pending segment starts with the low half */
    uint8_t wflip;        /* write flip-flop: 1 = the LSB is written, the MSB comes next */
    uint8_t wlsb;         /* the LSB waiting for its MSB */
    uint8_t rflip;        /* read flip-flop: 1 = the LSB was read, the MSB comes next */
    uint8_t latched;      /* 1: the output latch holds a count not yet fully read */
    uint8_t status;       /* latched status byte */
    uint8_t status_latched; /* 1: the next read returns `status` */
} aero_pit_channel;

typedef struct aero_pit {
    uint64_t deadline;      /* tick at which aero_pit_timer must run, AERO_NEVER: none */
    uint64_t next_edge;     /* edge of channel 0's next OUT change (deadline is its tick), UINT64_MAX: none */
    aero_pit_channel ch[3]; /* [0] IRQ 0, [1] refresh (OUT unconnected), [2] speaker (gate = 61h bit 0) */
    uint8_t port61;         /* port 61h bits 0-3 as written: gate 2, speaker data, parity/channel check enables */
} aero_pit;

void aero_pit_reset(struct aero_machine *m);
/* Ports 40h-43h and 61h. */
uint8_t aero_pit_read(struct aero_machine *m, uint16_t port);
void aero_pit_write(struct aero_machine *m, uint16_t port, uint8_t val);
void aero_pit_timer(struct aero_machine *m);
void aero_pit_save(const aero_pit *s, struct aero_sbuf *b);
void aero_pit_load(aero_pit *s, struct aero_sbuf *b);

#endif
