/* aero core: the 8254 programmable interval timer and port 61h (Intel 8254 datasheet, order
 * no. 231164).
 *
 * Nothing steps per instruction: the PIT clock (1,193,182 Hz) is derived from the guest
 * clock, and every counter's count and OUT are pure functions of the number of PIT clock
 * edges completed (aero_clock_at). A count written between edges c and c+1 is loaded into the
 * counting element on edge c+1 ("on the next CLK pulse") and decrements on the edges after
 * it. Only channel 0 needs a deadline: its OUT drives IRQ 0, and the timer runs at each OUT
 * transition so that the IRQ line always equals OUT.
 *
 * Mode summary (n = the count in clocks, e = decrements since the load edge):
 *   0 interrupt on terminal count  OUT low until e = n, then high        gate low pauses
 *   1 retriggerable one-shot       OUT low from the trigger until e = n  gate rise triggers
 *   2 rate generator               OUT low for the last clock of each n  gate low stops, rise reloads
 *   3 square wave                  OUT high ceil(n/2), low floor(n/2)     gate low stops, rise reloads
 *   4 software strobe              OUT low for one clock at e = n        gate low pauses
 *   5 hardware strobe              OUT low for one clock at e = n        gate rise triggers
 * Modes 2 and 3 take a count written while counting at the end of the current cycle (mode 2)
 * or half-cycle (mode 3), as the datasheet says.
 */
#include "platform.h"

#define PIT_NONE UINT64_MAX
#define REFRESH_CLOCKS 18u /* port 61h bit 4 toggles every 18 PIT clocks (about 15 us) */

/* The view of one loaded count: where it was loaded, its length, its mode-3 phase. */
typedef struct pit_seg {
    uint64_t load;
    uint32_t n;
    uint32_t low;
} pit_seg;

/* Behaviour of the mode field: 6 and 7 are 2 and 3 with a don't-care bit. */
static int bmode(const aero_pit_channel *ch) { return ch->mode >= 6 ? ch->mode - 4 : ch->mode; }

static uint32_t modulus(const aero_pit_channel *ch) { return ch->bcd ? 10000u : 65536u; }

static uint32_t half(uint32_t n) { return (n + 1) / 2; }

static uint32_t bcd_to_bin(uint16_t v) {
    return ((v >> 12) & 15u) * 1000u + ((v >> 8) & 15u) * 100u + ((v >> 4) & 15u) * 10u + (v & 15u);
}

static uint16_t bin_to_bcd(uint32_t v) {
    return (uint16_t)(((v / 1000) % 10) << 12 | ((v / 100) % 10) << 8 | ((v / 10) % 10) << 4 | (v % 10));
}

/* A written count in clocks: 0 stands for the modulus (65536 or 10000). Digits above 9 in
 * BCD mode are weighted as written and the result taken modulo 10000. */
static uint32_t count_value(const aero_pit_channel *ch, uint16_t raw) {
    uint32_t v = ch->bcd ? bcd_to_bin(raw) % 10000u : raw;
    return v ? v : modulus(ch);
}

static uint64_t pit_clock(const aero_machine *m) { return aero_clock_at(m, aero_now(m), AERO_PIT_HZ); }

static pit_seg seg_at(const aero_pit_channel *ch, uint64_t c) {
    pit_seg s;
    if (ch->pend_at != PIT_NONE && c >= ch->pend_at) {
        s.load = ch->pend_at; s.n = ch->pend_n; s.low = ch->pend_low;
    } else {
        s.load = ch->load; s.n = ch->n; s.low = ch->low_start;
    }
    return s;
}

/* Decrements done by edge c (c >= s.load). Modes 0 and 4 count only while the gate is high. */
static uint64_t elapsed(const aero_pit_channel *ch, const pit_seg *s, uint64_t c) {
    int md = bmode(ch);
    if (md == 0 || md == 4) return ch->base + (ch->gate && c > ch->run_from ? c - ch->run_from : 0);
    return c - s->load;
}

/* Mode 3: position in the square wave, 0 .. n-1; the high half is 0 .. half(n)-1. */
static uint32_t wave_pos(const pit_seg *s, uint64_t e) {
    return (uint32_t)((e + (s->low ? half(s->n) : 0)) % s->n);
}

static int out_at(const aero_pit_channel *ch, uint64_t c) {
    if (!ch->running) return ch->pre_out;
    pit_seg s = seg_at(ch, c);
    if (c < s.load) return ch->pre_out;
    uint64_t e = elapsed(ch, &s, c);
    switch (bmode(ch)) {
    case 0: case 1: return e >= s.n;
    case 4: case 5: return e != s.n;
    case 2: return s.n <= 1 || e % s.n != s.n - 1;
    default: return wave_pos(&s, e) < half(s.n);
    }
}

/* The count as the counting element holds it at edge c (binary, below the modulus). */
static uint32_t count_at(const aero_pit_channel *ch, uint64_t c) {
    uint32_t mod = modulus(ch);
    if (!ch->running) return ch->pre_count % mod;
    pit_seg s = seg_at(ch, c);
    if (c < s.load) return ch->pre_count % mod;
    uint64_t e = elapsed(ch, &s, c);
    switch (bmode(ch)) {
    case 2: return (s.n - (uint32_t)(e % s.n)) % mod;
    case 3: {
        uint32_t p = wave_pos(&s, e), h = half(s.n);
        uint32_t q = p < h ? p : p - h;
        /* Odd counts load n-1 and count down by two; OUT changes one clock after 0. */
        return ((s.n & ~1u) - 2 * q) % mod;
    }
    default: return (s.n + mod - (uint32_t)(e % mod)) % mod;
    }
}

/* First edge after c at which OUT changes within segment s (c >= s.load), PIT_NONE if none. */
static uint64_t seg_next(const aero_pit_channel *ch, const pit_seg *s, uint64_t c) {
    uint64_t e = elapsed(ch, s, c);
    int md = bmode(ch);
    uint64_t from = (md == 0 || md == 4) && ch->run_from > c ? ch->run_from : c;
    if ((md == 0 || md == 4) && !ch->gate) return PIT_NONE;
    switch (md) {
    case 0: case 1: return e < s->n ? from + (s->n - e) : PIT_NONE;
    case 4: case 5: /* low on the clock that reaches 0, high again on the next */
        return e < s->n ? from + (s->n - e) : e == s->n ? from + 1 : PIT_NONE;
    case 2: {
        if (s->n <= 1) return PIT_NONE;
        uint32_t p = (uint32_t)(e % s->n);
        return p < s->n - 1 ? c + (s->n - 1 - p) : c + 1;
    }
    default: {
        if (s->n <= 1) return PIT_NONE;
        uint32_t p = wave_pos(s, e), h = half(s->n);
        return p < h ? c + (h - p) : c + (s->n - p);
    }
    }
}

/* First edge after c at which OUT differs from OUT at c, PIT_NONE if none. */
static uint64_t next_change(const aero_pit_channel *ch, uint64_t c) {
    if (!ch->running) return PIT_NONE;
    pit_seg s = seg_at(ch, c);
    if (c < s.load) {
        if (ch->pre_out != out_at(ch, s.load)) return s.load;
        c = s.load;
    }
    if (ch->pend_at != PIT_NONE && c < ch->pend_at) {
        pit_seg cur = seg_at(ch, c);
        uint64_t x = seg_next(ch, &cur, c);
        if (x < ch->pend_at) return x;
        if (out_at(ch, c) != out_at(ch, ch->pend_at)) return ch->pend_at;
        c = ch->pend_at;
    }
    s = seg_at(ch, c);
    return seg_next(ch, &s, c);
}

/* Make a pending count that has been loaded by edge c the current one. */
static void normalize(aero_pit_channel *ch, uint64_t c) {
    if (ch->pend_at != PIT_NONE && c >= ch->pend_at) {
        ch->load = ch->pend_at;
        ch->n = ch->pend_n;
        ch->low_start = ch->pend_low;
        ch->pend_at = PIT_NONE;
    }
}

/* Load n on the edge after c. */
static void start(aero_pit_channel *ch, uint64_t c, uint32_t n) {
    ch->running = 1;
    ch->load = c + 1;
    ch->run_from = ch->load;
    ch->base = 0;
    ch->n = n;
    ch->low_start = 0;
    ch->pend_at = PIT_NONE;
    ch->null_until = ch->load;
}

/* Channel 0: drive IRQ 0 to OUT and arm the timer for the next transition. */
static void sync0(aero_machine *m) {
    aero_pit *s = &m->pc->pit;
    uint64_t c = pit_clock(m);
    aero_pic_set_irq(m, 0, out_at(&s->ch[0], c));
    uint64_t x = next_change(&s->ch[0], c);
    if (x <= c) x = PIT_NONE; /* only a damaged snapshot gets here: never arm a past deadline */
    s->next_edge = x;
    s->deadline = x == PIT_NONE ? AERO_NEVER : aero_tick_of(m, x, AERO_PIT_HZ);
}

static void write_count(aero_machine *m, int i, uint16_t raw) {
    aero_pit_channel *ch = &m->pc->pit.ch[i];
    uint64_t c = pit_clock(m);
    normalize(ch, c);
    uint32_t n = count_value(ch, raw);
    ch->cr = raw;
    ch->have_count = 1;
    switch (bmode(ch)) {
    case 0: case 4:
        /* Loaded on the next clock, whatever the gate (a low gate holds it there). */
        ch->pre_count = (uint16_t)count_at(ch, c);
        ch->pre_out = bmode(ch) == 4;
        start(ch, c, n);
        break;
    case 1: case 5:
        ch->null_until = PIT_NONE; /* loaded by the next trigger */
        break;
    default:
        if (ch->running && c >= ch->load) {
            /* Counting: the new count waits for the end of the cycle (mode 2) or half-cycle
             * (mode 3); a second write before then replaces it. */
            pit_seg cur = seg_at(ch, c);
            uint64_t e = c - cur.load;
            if (bmode(ch) == 2) {
                ch->pend_at = c + (cur.n - (uint32_t)(e % cur.n));
                ch->pend_low = 0;
            } else {
                uint32_t p = wave_pos(&cur, e), h = half(cur.n);
                ch->pend_at = p < h ? c + (h - p) : c + (cur.n - p);
                ch->pend_low = p < h;
            }
            ch->pend_n = n;
            ch->null_until = ch->pend_at;
        } else if (ch->running) {
            ch->n = n; /* not loaded yet: the load edge takes the new count */
        } else if (ch->gate) {
            ch->pre_count = (uint16_t)count_at(ch, c);
            ch->pre_out = 1;
            start(ch, c, n);
        } else {
            ch->null_until = PIT_NONE; /* loaded by the gate's rising edge */
        }
        break;
    }
}

static void set_gate(aero_machine *m, int i, int level) {
    aero_pit_channel *ch = &m->pc->pit.ch[i];
    level = level != 0;
    if (ch->gate == level) return;
    uint64_t c = pit_clock(m);
    normalize(ch, c);
    switch (bmode(ch)) {
    case 0: case 4:
        if (!level) ch->base += c > ch->run_from ? c - ch->run_from : 0;
        else ch->run_from = c > ch->load ? c : ch->load;
        break;
    case 1: case 5:
        if (level && ch->have_count) { /* trigger: (re)load on the next clock */
            ch->pre_count = (uint16_t)count_at(ch, c);
            ch->pre_out = (uint8_t)out_at(ch, c);
            start(ch, c, count_value(ch, ch->cr));
        }
        break;
    default:
        if (!level && ch->running) { /* counting stops, OUT goes high at once */
            ch->pre_count = (uint16_t)count_at(ch, c);
            ch->pre_out = 1;
            ch->running = 0;
            ch->pend_at = PIT_NONE;
            if (c < ch->null_until) ch->null_until = PIT_NONE;
        } else if (level && ch->have_count) { /* trigger: reload on the next clock */
            ch->pre_count = (uint16_t)count_at(ch, c);
            ch->pre_out = 1;
            start(ch, c, count_value(ch, ch->cr));
        }
        break;
    }
    ch->gate = (uint8_t)level;
}

/* The count in the format the guest reads it (BCD digits in BCD mode). */
static uint16_t read_value(const aero_pit_channel *ch, uint64_t c) {
    uint32_t v = count_at(ch, c);
    return ch->bcd ? bin_to_bcd(v) : (uint16_t)v;
}

static void latch_count(aero_pit_channel *ch, uint64_t c) {
    if (ch->latched) return; /* a second latch before the read is ignored */
    ch->latch = read_value(ch, c);
    ch->latched = 1;
    ch->rflip = 0;
}

static void latch_status(aero_pit_channel *ch, uint64_t c) {
    if (ch->status_latched) return;
    ch->status = (uint8_t)(out_at(ch, c) << 7 | (c < ch->null_until) << 6 | ch->rw << 4 |
                           ch->mode << 1 | ch->bcd);
    ch->status_latched = 1;
}

static void write_control(aero_machine *m, uint8_t val) {
    aero_pit *s = &m->pc->pit;
    uint64_t c = pit_clock(m);
    int sc = val >> 6, rw = (val >> 4) & 3;
    if (sc == 3) { /* read-back: bit 5 low latches counts, bit 4 low latches status */
        for (int i = 0; i < 3; i++) {
            if (!(val & (2u << i))) continue;
            if (!(val & 0x20)) latch_count(&s->ch[i], c);
            if (!(val & 0x10)) latch_status(&s->ch[i], c);
        }
        return;
    }
    aero_pit_channel *ch = &s->ch[sc];
    if (rw == 0) { /* counter latch command */
        latch_count(ch, c);
        return;
    }
    normalize(ch, c);
    /* A control word resets the counter's logic: it stops with its current count until a
     * new count arrives; OUT goes low in mode 0 and high in the others. */
    ch->pre_count = (uint16_t)count_at(ch, c);
    ch->running = 0;
    ch->mode = (val >> 1) & 7;
    ch->rw = (uint8_t)rw;
    ch->bcd = val & 1;
    ch->pre_out = bmode(ch) != 0;
    ch->have_count = 0;
    ch->pend_at = PIT_NONE;
    ch->null_until = PIT_NONE;
    ch->wflip = ch->rflip = 0;
    ch->latched = ch->status_latched = 0;
    if (sc == 0) sync0(m);
}

static void write_counter(aero_machine *m, int i, uint8_t val) {
    aero_pit_channel *ch = &m->pc->pit.ch[i];
    switch (ch->rw) {
    case 1: write_count(m, i, val); break;
    case 2: write_count(m, i, (uint16_t)(val << 8)); break;
    default:
        if (!ch->wflip) {
            ch->wlsb = val;
            ch->wflip = 1;
            if (bmode(ch) == 0) { /* the first byte stops mode 0 with OUT low */
                uint64_t c = pit_clock(m);
                normalize(ch, c);
                ch->pre_count = (uint16_t)count_at(ch, c);
                ch->pre_out = 0;
                ch->running = 0;
            }
        } else {
            ch->wflip = 0;
            write_count(m, i, (uint16_t)(ch->wlsb | val << 8));
        }
        break;
    }
    if (i == 0) sync0(m);
}

static uint8_t read_counter(aero_machine *m, int i) {
    aero_pit_channel *ch = &m->pc->pit.ch[i];
    if (ch->status_latched) {
        ch->status_latched = 0;
        return ch->status;
    }
    uint16_t v = ch->latched ? ch->latch : read_value(ch, pit_clock(m));
    uint8_t byte;
    switch (ch->rw) {
    case 1: byte = (uint8_t)v; ch->latched = 0; break;
    case 2: byte = (uint8_t)(v >> 8); ch->latched = 0; break;
    default:
        byte = ch->rflip ? (uint8_t)(v >> 8) : (uint8_t)v;
        ch->rflip ^= 1;
        if (!ch->rflip) ch->latched = 0;
        break;
    }
    return byte;
}

void aero_pit_reset(aero_machine *m) {
    aero_pit *s = &m->pc->pit;
    /* The 8254 powers up undefined; this one has every counter in mode 0 with no count, OUT
     * low, so IRQ 0 stays quiet until the guest programs channel 0. */
    for (int i = 0; i < 3; i++) {
        aero_pit_channel *ch = &s->ch[i];
        memset(ch, 0, sizeof *ch);
        ch->rw = 3;
        ch->n = ch->pend_n = 65536;
        ch->gate = i != 2; /* channel 2's gate is port 61h bit 0 */
        ch->pend_at = PIT_NONE;
        ch->null_until = PIT_NONE;
    }
    s->port61 = 0;
    sync0(m);
}

uint8_t aero_pit_read(aero_machine *m, uint16_t port) {
    aero_pit *s = &m->pc->pit;
    if (port == 0x61) {
        uint64_t c = pit_clock(m);
        return (uint8_t)((s->port61 & 0x0F) | ((c / REFRESH_CLOCKS) & 1) << 4 |
                         out_at(&s->ch[2], c) << 5);
    }
    if (port >= 0x40 && port <= 0x42) return read_counter(m, port - 0x40);
    return 0xFF; /* the control word register cannot be read */
}

void aero_pit_write(aero_machine *m, uint16_t port, uint8_t val) {
    aero_pit *s = &m->pc->pit;
    if (port == 0x61) {
        s->port61 = val & 0x0F;
        set_gate(m, 2, val & 1);
    } else if (port == 0x43) {
        write_control(m, val);
    } else if (port >= 0x40 && port <= 0x42) {
        write_counter(m, port - 0x40, val);
    }
}

void aero_pit_timer(aero_machine *m) {
    aero_pit *s = &m->pc->pit;
    aero_pit_channel *ch = &s->ch[0];
    uint64_t c = pit_clock(m), x = s->next_edge;
    /* When the guest clock is coarser than the PIT's, several transitions can fall in one
     * tick: show the one the deadline was for before OUT's current level, so that a one-clock
     * low pulse still makes a rising edge. */
    if (x <= c) aero_pic_set_irq(m, 0, out_at(ch, x));
    normalize(ch, c);
    sync0(m);
}

static void channel_save(const aero_pit_channel *ch, aero_sbuf *b) {
    aero_put64(b, ch->load);
    aero_put64(b, ch->run_from);
    aero_put64(b, ch->base);
    aero_put64(b, ch->pend_at);
    aero_put64(b, ch->null_until);
    aero_put32(b, ch->n);
    aero_put32(b, ch->pend_n);
    aero_put16(b, ch->cr);
    aero_put16(b, ch->latch);
    aero_put16(b, ch->pre_count);
    const uint8_t f[] = {ch->mode, ch->rw, ch->bcd, ch->running, ch->pre_out, ch->gate,
                         ch->have_count, ch->low_start, ch->pend_low, ch->wflip, ch->wlsb,
                         ch->rflip, ch->latched, ch->status, ch->status_latched};
    aero_put_bytes(b, f, sizeof f);
}

/* A count in clocks from a snapshot: it divides (modulo), so it must be 1..modulus. */
static uint32_t clamp_count(uint32_t n, uint32_t mod) { return n == 0 || n > mod ? mod : n; }

static void channel_load(aero_pit_channel *ch, aero_sbuf *b) {
    ch->load = aero_get64(b);
    ch->run_from = aero_get64(b);
    ch->base = aero_get64(b);
    ch->pend_at = aero_get64(b);
    ch->null_until = aero_get64(b);
    ch->n = aero_get32(b);
    ch->pend_n = aero_get32(b);
    ch->cr = aero_get16(b);
    ch->latch = aero_get16(b);
    ch->pre_count = aero_get16(b);
    uint8_t f[15];
    aero_get_bytes(b, f, sizeof f);
    ch->mode = f[0] & 7;
    ch->rw = (f[1] & 3) ? (f[1] & 3) : 3;
    ch->bcd = f[2] & 1;
    ch->running = f[3] & 1;
    ch->pre_out = f[4] & 1;
    ch->gate = f[5] & 1;
    ch->have_count = f[6] & 1;
    ch->low_start = f[7] & 1;
    ch->pend_low = f[8] & 1;
    ch->wflip = f[9] & 1;
    ch->wlsb = f[10];
    ch->rflip = f[11] & 1;
    ch->latched = f[12] & 1;
    ch->status = f[13];
    ch->status_latched = f[14] & 1;
    ch->n = clamp_count(ch->n, modulus(ch));
    ch->pend_n = clamp_count(ch->pend_n, modulus(ch));
}

void aero_pit_save(const aero_pit *s, aero_sbuf *b) {
    aero_put64(b, s->deadline);
    aero_put64(b, s->next_edge);
    for (int i = 0; i < 3; i++) channel_save(&s->ch[i], b);
    aero_put8(b, s->port61);
}

void aero_pit_load(aero_pit *s, aero_sbuf *b) {
    s->deadline = aero_get64(b);
    s->next_edge = aero_get64(b);
    for (int i = 0; i < 3; i++) channel_load(&s->ch[i], b);
    s->port61 = aero_get8(b) & 0x0F;
    /* Channels 0 and 1 have their gates tied high; channel 2's is port 61h bit 0. */
    s->ch[0].gate = s->ch[1].gate = 1;
    s->ch[2].gate = s->port61 & 1;
}
