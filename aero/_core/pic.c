/* aero core: the cascaded 8259A pair (Intel 8259A datasheet, order no. 231468).
 *
 * The master's IRQ 2 input is the slave's INT output; the master's INT output drives the
 * CPU's INTR line. Priorities rotate: `lowest` names the line with the lowest priority, so
 * line (lowest + 1) & 7 has the highest (after ICW1, IR7 is lowest and IR0 highest).
 * Level-triggered lines (ICW1 LTIM, or the PIIX ELCR at 4D0h/4D1h that BIOSes and Linux
 * program) request for as long as they are high; edge-triggered lines latch a request on a
 * rising edge, and the request stays latched until it is acknowledged.
 */
#include "platform.h"

#define PIC_MASTER 0
#define PIC_SLAVE 1

static int level_triggered(const aero_pic8259 *p, int line) {
    return (p->icw1 & 0x08) || (p->elcr >> line & 1);
}

/* Priority rank 0 (highest) .. 7 of the highest-priority bit in mask, 8 if none. */
static int rank(const aero_pic8259 *p, uint8_t mask) {
    if (!mask) return 8;
    int r = 0;
    while (!(mask & (1u << ((r + p->lowest + 1) & 7)))) r++;
    return r;
}

static int line_of(const aero_pic8259 *p, int r) { return (r + p->lowest + 1) & 7; }

/* The line this chip would present now, or -1: the highest unmasked request that outranks
 * every interrupt in service (special mask mode: masked in-service lines do not count;
 * special fully nested mode: the master lets its cascade line interrupt itself). */
static int pending(const aero_pic8259 *p, int master) {
    int r = rank(p, p->irr & ~p->imr);
    if (r == 8) return -1;
    uint8_t busy = p->isr;
    if (p->special_mask) busy &= ~p->imr;
    if (master && (p->icw4 & 0x10)) busy &= ~(1u << 2);
    return r < rank(p, busy) ? line_of(p, r) : -1;
}

static void chip_line(aero_pic8259 *p, int line, int level) {
    uint8_t bit = (uint8_t)(1u << line);
    if (level_triggered(p, line)) {
        if (level) p->irr |= bit;
        else p->irr &= (uint8_t)~bit;
    } else if (level && !(p->lines & bit)) {
        p->irr |= bit;
    }
    if (level) p->lines |= bit;
    else p->lines &= (uint8_t)~bit;
}

/* Propagate: slave INT -> master IRQ 2 -> CPU INTR. */
static void update(aero_machine *m) {
    aero_pic *s = &m->pc->pic;
    aero_pic8259 *ma = &s->chip[PIC_MASTER], *sl = &s->chip[PIC_SLAVE];
    sl->output = pending(sl, 0) >= 0;
    chip_line(ma, 2, sl->output);
    int out = pending(ma, 1) >= 0;
    ma->output = (uint8_t)out;
    aero_set_intr(m, out);
}

static void chip_reset(aero_pic8259 *p, uint8_t elcr_mask) {
    uint8_t elcr = p->elcr;
    memset(p, 0, sizeof *p);
    p->elcr = elcr & elcr_mask;
    p->elcr_mask = elcr_mask;
    p->lowest = 7;
}

void aero_pic_reset(aero_machine *m) {
    aero_pic *s = &m->pc->pic;
    s->chip[PIC_MASTER].elcr = s->chip[PIC_SLAVE].elcr = 0;
    chip_reset(&s->chip[PIC_MASTER], 0xF8);
    chip_reset(&s->chip[PIC_SLAVE], 0xDE);
    update(m);
}

void aero_pic_set_irq(aero_machine *m, int irq, int level) {
    if (irq < 0 || irq > 15) return;
    if (irq == 2) irq = 9; /* on the AT bus, the IRQ 2 pin is wired to the slave's IR1 */
    aero_pic *s = &m->pc->pic;
    aero_pic8259 *p = &s->chip[irq >> 3];
    int line = irq & 7;
    level = level != 0;
    if (((p->lines >> line) & 1) == level) return; /* no change */
    aero_log_event(m, AERO_EV_IRQ, (uint32_t)irq, (uint64_t)level);
    chip_line(p, line, level);
    update(m);
}

/* Acknowledge line on one chip: it goes in service (unless automatic EOI), and an edge
 * request is consumed. */
static void intack(aero_pic8259 *p, int line) {
    uint8_t bit = (uint8_t)(1u << line);
    if (p->icw4 & 0x02) {
        if (p->rotate_aeoi) p->lowest = (uint8_t)line;
    } else {
        p->isr |= bit;
    }
    if (!level_triggered(p, line)) p->irr &= (uint8_t)~bit;
}

int aero_pic_ack(aero_machine *m, void *ctx) {
    (void)ctx;
    aero_pic *s = &m->pc->pic;
    aero_pic8259 *ma = &s->chip[PIC_MASTER], *sl = &s->chip[PIC_SLAVE];
    int line = pending(ma, 1), vector;
    if (line < 0) {
        vector = ma->vector_base | 7; /* the request went away: spurious IRQ 7 */
    } else if (line == 2) {
        int l2 = pending(sl, 0);
        if (l2 >= 0) intack(sl, l2);
        else l2 = 7; /* spurious IRQ 15: the master still sees its cascade line in service */
        vector = sl->vector_base | l2;
        intack(ma, 2);
    } else {
        vector = ma->vector_base | line;
        intack(ma, line);
    }
    update(m);
    return vector;
}

/* Non-specific EOI: clear the highest-priority bit in service. */
static void eoi(aero_pic8259 *p, int rotate) {
    int r = rank(p, p->isr);
    if (r == 8) return;
    int line = line_of(p, r);
    p->isr &= (uint8_t)~(1u << line);
    if (rotate) p->lowest = (uint8_t)line;
}

static void write_command(aero_pic8259 *p, uint8_t val) {
    if (val & 0x10) { /* ICW1: start initialization */
        uint8_t elcr = p->elcr, mask = p->elcr_mask, lines = p->lines;
        chip_reset(p, mask);
        p->elcr = elcr;
        p->lines = lines;
        p->icw1 = val;
        /* Edge latches are cleared; a level-triggered request is the line itself, including
         * a line that was edge-triggered until this ICW1 set LTIM. */
        p->irr = (uint8_t)(p->lines & ((val & 0x08) ? 0xFF : p->elcr));
        p->init_step = 1;
        return;
    }
    if (val & 0x08) { /* OCW3 */
        if (val & 0x04) p->poll = 1;
        if (val & 0x02) p->read_isr = val & 1;
        if (val & 0x40) p->special_mask = (val >> 5) & 1;
        return;
    }
    int line = val & 7; /* OCW2 */
    switch (val >> 5) {
    case 0: p->rotate_aeoi = 0; break;                   /* rotate in AEOI mode: clear */
    case 4: p->rotate_aeoi = 1; break;                   /* rotate in AEOI mode: set */
    case 1: eoi(p, 0); break;                            /* non-specific EOI */
    case 5: eoi(p, 1); break;                            /* rotate on non-specific EOI */
    case 3: p->isr &= (uint8_t)~(1u << line); break;     /* specific EOI */
    case 7:                                              /* rotate on specific EOI */
        p->isr &= (uint8_t)~(1u << line);
        p->lowest = (uint8_t)line;
        break;
    case 6: p->lowest = (uint8_t)line; break;            /* set priority */
    default: break;                                      /* 010: no operation */
    }
}

static void write_data(aero_pic8259 *p, uint8_t val) {
    switch (p->init_step) {
    case 1: /* ICW2 */
        p->vector_base = val & 0xF8;
        p->init_step = (p->icw1 & 0x02) ? ((p->icw1 & 0x01) ? 3 : 0) : 2;
        break;
    case 2: /* ICW3 */
        p->icw3 = val;
        p->init_step = (p->icw1 & 0x01) ? 3 : 0;
        break;
    case 3: /* ICW4 */
        p->icw4 = val;
        p->init_step = 0;
        break;
    default: /* OCW1 */
        p->imr = val;
        break;
    }
}

/* Poll: the command port returns 80h | line of the highest request, which is acknowledged
 * as by an INTA cycle; 0 when there is none. */
static uint8_t poll(aero_machine *m, int c) {
    aero_pic *s = &m->pc->pic;
    aero_pic8259 *p = &s->chip[c];
    p->poll = 0;
    int line = pending(p, c == PIC_MASTER);
    if (line < 0) return 0;
    if (c == PIC_MASTER && line == 2) {
        /* Polling the master for the cascade: the slave answers the next poll. */
        intack(p, line);
        return 0x82;
    }
    intack(p, line);
    return (uint8_t)(0x80 | line);
}

uint8_t aero_pic_read(aero_machine *m, uint16_t port) {
    aero_pic *s = &m->pc->pic;
    if (port == 0x4D0 || port == 0x4D1) return s->chip[port & 1].elcr;
    int c = (port & 0x80) ? PIC_SLAVE : PIC_MASTER;
    aero_pic8259 *p = &s->chip[c];
    uint8_t v;
    if (p->poll) {
        v = poll(m, c);
        update(m);
    } else if (port & 1) {
        v = p->imr;
    } else {
        v = p->read_isr ? p->isr : p->irr;
    }
    return v;
}

void aero_pic_write(aero_machine *m, uint16_t port, uint8_t val) {
    aero_pic *s = &m->pc->pic;
    if (port == 0x4D0 || port == 0x4D1) {
        aero_pic8259 *p = &s->chip[port & 1];
        p->elcr = val & p->elcr_mask;
        /* A line switched to level mode requests while it is high; to edge mode, it keeps
         * its latched request. */
        for (int l = 0; l < 8; l++)
            if ((p->elcr >> l & 1) && (p->lines >> l & 1)) p->irr |= (uint8_t)(1u << l);
        update(m);
        return;
    }
    aero_pic8259 *p = &s->chip[(port & 0x80) ? PIC_SLAVE : PIC_MASTER];
    if (port & 1) write_data(p, val);
    else write_command(p, val);
    update(m);
}

static void chip_save(const aero_pic8259 *p, aero_sbuf *b) {
    const uint8_t f[] = {p->irr, p->isr, p->imr, p->lines, p->elcr, p->elcr_mask, p->vector_base,
                         p->init_step, p->icw1, p->icw3, p->icw4, p->lowest, p->read_isr, p->poll,
                         p->special_mask, p->rotate_aeoi, p->output};
    aero_put_bytes(b, f, sizeof f);
}

static void chip_load(aero_pic8259 *p, aero_sbuf *b) {
    uint8_t f[17];
    aero_get_bytes(b, f, sizeof f);
    p->irr = f[0]; p->isr = f[1]; p->imr = f[2]; p->lines = f[3]; p->elcr = f[4];
    p->elcr_mask = f[5]; p->vector_base = f[6] & 0xF8; p->init_step = f[7] & 3; p->icw1 = f[8];
    p->icw3 = f[9]; p->icw4 = f[10]; p->lowest = f[11] & 7; p->read_isr = f[12] & 1;
    p->poll = f[13] & 1; p->special_mask = f[14] & 1; p->rotate_aeoi = f[15] & 1; p->output = f[16] & 1;
}

void aero_pic_save(const aero_pic *s, aero_sbuf *b) {
    chip_save(&s->chip[0], b);
    chip_save(&s->chip[1], b);
}

void aero_pic_load(aero_pic *s, aero_sbuf *b) {
    chip_load(&s->chip[0], b);
    chip_load(&s->chip[1], b);
}
