/* aero core: the cascaded pair of 8259A programmable interrupt controllers (pic.c). */
#ifndef AERO_PIC_H
#define AERO_PIC_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

/* One 8259A. */
typedef struct aero_pic8259 {
    uint8_t irr;          /* interrupt request register */
    uint8_t isr;          /* in-service register */
    uint8_t imr;          /* interrupt mask register (OCW1) */
    uint8_t lines;        /* input levels as last driven (edge detection, level requests) */
    uint8_t elcr;         /* edge/level control (ports 4D0h/4D1h): 1 = level-triggered line */
    uint8_t elcr_mask;    /* ELCR bits that exist (IRQ 0, 1, 2, 8, 13 are always edge) */
    uint8_t vector_base;  /* ICW2 with the low three bits clear */
    uint8_t init_step;    /* 0: operating; 1, 2, 3: waiting for ICW2, ICW3, ICW4 */
    uint8_t icw1;         /* ICW1: bit 0 IC4, bit 1 SNGL, bit 3 LTIM (all lines level) */
    uint8_t icw3;         /* ICW3: cascade lines (master) or the slave's identity */
    uint8_t icw4;         /* ICW4: bit 1 AEOI, bit 4 SFNM */
    uint8_t lowest;       /* the line with the lowest priority (rotation); highest is +1 */
    uint8_t read_isr;     /* OCW3 RR/RIS: 1 = reads of the command port return ISR */
    uint8_t poll;         /* OCW3 P: the next read of the command port is a poll */
    uint8_t special_mask; /* OCW3 SMM: special mask mode */
    uint8_t rotate_aeoi;  /* OCW2 R in automatic-EOI mode */
    uint8_t output;       /* INT output level as last computed */
} aero_pic8259;

typedef struct aero_pic {
    aero_pic8259 chip[2]; /* [0] master (20h/21h, vectors for IRQ 0-7), [1] slave (A0h/A1h, IRQ 8-15) on master IRQ 2 */
} aero_pic;

void aero_pic_reset(struct aero_machine *m);
/* Ports 20h, 21h, A0h, A1h, 4D0h, 4D1h. */
uint8_t aero_pic_read(struct aero_machine *m, uint16_t port);
void aero_pic_write(struct aero_machine *m, uint16_t port, uint8_t val);
/* Drive ISA IRQ line irq (0-15) to level (0 or 1). Edge-triggered lines request on 0 -> 1. */
void aero_pic_set_irq(struct aero_machine *m, int irq, int level);
/* The CPU's interrupt-acknowledge cycle: the vector to deliver. */
int aero_pic_ack(struct aero_machine *m, void *ctx);
void aero_pic_save(const aero_pic *s, struct aero_sbuf *b);
void aero_pic_load(aero_pic *s, struct aero_sbuf *b);

#endif
