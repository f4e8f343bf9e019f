/* aero core: the MC146818A real-time clock and its 128 bytes of CMOS RAM (Motorola MC146818A
 * datasheet; QEMU's hw/rtc/mc146818rtc.c for what PC firmware expects).
 *
 * Ports: 70h selects a register (bits 6:0; bit 7 masks NMI on a PC and is kept, not yet
 * applied); 71h reads or writes it. 70h is write-only and reads FFh.
 *
 * The clock is a count, never a per-tick update: the divider chain counts 32.768 kHz cycles
 * from (chain_tick, chain_c0), and the time at tick t is base_seconds + count(t) / 32768
 * seconds, in exact integer arithmetic. An injected time (aero_rtc_set_time) restarts the
 * chain at count 0 at the current tick, so the seconds change exactly every tick_hz ticks
 * from there; periodic interrupts restart their phase with it. Without one, the clock starts
 * at 2000-01-01 00:00:00 UTC (RTC_DEFAULT_TIME) at power-on (tick 0).
 *
 * Register A: the divider DV2-0 (bits 6:4). A PC's crystal is 32.768 kHz, so only 010 runs
 * the clock; 11x holds the chain in reset and every other value (other time bases, test
 * modes) is treated the same way: the time stands still and no PF/UF/AF is set. Going back to
 * 010 starts the chain at half a second, so the first update comes 500 ms later, as the
 * datasheet says for leaving the reset. RS3-0 select the periodic rate: 32768 >> (rate - 1)
 * Hz, rates 1 and 2 behaving as 8 and 9 (the 32.768 kHz table), rate 0 none. UIP reads 1
 * during the 244 us before each second boundary (the boundary itself is the update; the
 * registers change at once, there is no 1984 us update cycle during which they are hidden).
 *
 * Register B: SET stops updates (the chain, and the periodic flag, run on); setting it clears
 * UIE and latches the time into the time bytes, which the guest then reads and writes as
 * plain bytes; clearing it makes the clock continue from them at the chain's next second
 * boundary. Time bytes written with SET clear take effect at once (the same conversion, one
 * byte at a time). DM (binary) and 24/12 choose how the time bytes are encoded when read;
 * since the clock is a count, switching them re-encodes the running time (the chip would
 * keep the old bytes until rewritten; firmware rewrites them anyway). The alarm bytes are
 * plain bytes compared with the encoded time, C0h-FFh meaning "any". DSE (daylight saving)
 * is stored but not applied: the clock keeps UTC, or whatever the host injects. The century
 * byte (32h) is part of the clock, as QEMU and PC firmware treat it; years show modulo 10000.
 * Written dates are normalized (February 30th is March 1st or 2nd), as the clock is a count.
 *
 * Register C: PF, AF, UF are computed lazily from ticks between accesses (synced_tick):
 * flags of disabled sources appear too, but only enabled sources (PIE/AIE/UIE) whose flag is
 * still clear arm the deadline, at the tick their flag will be set. IRQ 8 follows IRQF =
 * (PF & PIE) | (AF & AIE) | (UF & UIE); reading C returns the flags and clears them. Register
 * D reads 80h (VRT: the battery is good).
 *
 * Power-on fills the NVRAM as SeaBIOS reads it (rtc_power_on). A reset (the reset button)
 * keeps time and NVRAM and, as the RESET pin does, clears PIE, AIE, UIE, SQWE and the flags.
 */
#include "platform.h"

#define REG_A 0x0A
#define REG_B 0x0B
#define REG_C 0x0C
#define REG_D 0x0D
#define REG_CENTURY 0x32

#define A_UIP 0x80
#define A_DV 0x70
#define A_DV_32K 0x20 /* DV2-0 = 010: the 32.768 kHz time base */
#define B_SET 0x80
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define B_SQWE 0x08
#define B_DM 0x04 /* 1: binary, 0: BCD */
#define B_24H 0x02
#define C_IRQF 0x80
#define C_PF 0x40
#define C_AF 0x20
#define C_UF 0x10
#define C_FLAGS (C_PF | C_AF | C_UF)

#define CHAIN_HZ 32768u
#define SECOND_SHIFT 15       /* chain cycles per second: 1 << 15 */
#define HALF_SECOND 16384u
#define UIP_US 244u           /* UIP is set this long before an update (tBUC) */
#define RTC_DEFAULT_TIME 946684800LL   /* 2000-01-01 00:00:00 UTC */
#define RTC_MIN_TIME (-62167219200LL)  /* 0000-01-01 00:00:00: an injected time is clamped */
#define RTC_MAX_TIME 253402300799LL    /* 9999-12-31 23:59:59 */
#define RTC_BASE_LIMIT (1LL << 60)     /* |base_seconds| after a load: no overflow below 2^63 */

typedef unsigned __int128 u128;

/* ---- calendar (proleptic Gregorian, UTC; no libc: it would read the host's time zone) ---- */

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

/* Days since 1970-01-01 of year y, month mon (1-12), day d (1-31); H. Hinnant's algorithm. */
static int64_t days_from_civil(int64_t y, int mon, int d) {
    y -= mon <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *mon, int *d) {
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *mon = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*mon <= 2);
}

/* ---- register encoding ---- */

static int binary(const aero_rtc *s) { return (s->cmos[REG_B] & B_DM) != 0; }

static uint8_t enc(const aero_rtc *s, int v) {
    return binary(s) ? (uint8_t)v : (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* Like the chip, BCD bytes with digits above 9 are taken at face value (QEMU does the same). */
static int dec(const aero_rtc *s, uint8_t v) { return binary(s) ? v : (v >> 4) * 10 + (v & 15); }

static uint8_t enc_hour(const aero_rtc *s, int h) {
    if (s->cmos[REG_B] & B_24H) return enc(s, h);
    return (uint8_t)(enc(s, h % 12 ? h % 12 : 12) | (h >= 12 ? 0x80 : 0));
}

static int dec_hour(const aero_rtc *s, uint8_t v) {
    int h = dec(s, v & 0x7F);
    if (s->cmos[REG_B] & B_24H) return h;
    return h % 12 + (v & 0x80 ? 12 : 0);
}

/* The time bytes (0, 2, 4, 6, 7, 8, 9, 32h) for Unix time t, into out (indexed like cmos). */
static void encode_time(const aero_rtc *s, int64_t t, uint8_t *out) {
    int64_t days = floor_div(t, 86400), sod = t - days * 86400, year;
    int mon, mday;
    civil_from_days(days, &year, &mon, &mday);
    year = floor_mod(year, 10000);
    out[0] = enc(s, (int)(sod % 60));
    out[2] = enc(s, (int)(sod / 60 % 60));
    out[4] = enc_hour(s, (int)(sod / 3600));
    out[6] = enc(s, (int)((floor_mod(days + 4, 7) + s->dow_offset) % 7) + 1); /* 1 = Sunday */
    out[7] = enc(s, mday);
    out[8] = enc(s, mon);
    out[9] = enc(s, (int)(year % 100));
    out[REG_CENTURY] = enc(s, (int)(year / 100));
}

static int is_time_reg(unsigned idx) {
    return idx == 0 || idx == 2 || idx == 4 || (idx >= 6 && idx <= 9) || idx == REG_CENTURY;
}

/* ---- the divider chain and the clock ---- */

static int running(const aero_rtc *s) { return (s->cmos[REG_A] & A_DV) == A_DV_32K; }

/* Chain count (32.768 kHz cycles) at tick t. */
static u128 chain_at(const aero_machine *m, const aero_rtc *s, uint64_t t) {
    uint64_t dt = t > s->chain_tick ? t - s->chain_tick : 0;
    return s->chain_c0 + (u128)dt * CHAIN_HZ / m->cfg.tick_hz;
}

/* The first tick at which the chain count reaches c. */
static uint64_t tick_of_count(const aero_machine *m, const aero_rtc *s, u128 c) {
    if (c <= s->chain_c0) return s->chain_tick;
    u128 t = s->chain_tick + ((c - s->chain_c0) * m->cfg.tick_hz + CHAIN_HZ - 1) / CHAIN_HZ;
    return t >= AERO_NEVER ? AERO_NEVER - 1 : (uint64_t)t;
}

/* The time at tick t, Unix seconds (with SET, what the clock would read without it). */
static int64_t seconds_at(const aero_machine *m, const aero_rtc *s, uint64_t t) {
    if (!running(s)) return s->base_seconds;
    return s->base_seconds + (int64_t)(chain_at(m, s, t) >> SECOND_SHIFT);
}

/* Make the time at the current tick t (seconds); the chain's phase is kept. */
static void set_clock(aero_machine *m, int64_t t) {
    aero_rtc *s = &m->pc->rtc;
    s->base_seconds = running(s) ? t - (int64_t)(chain_at(m, s, aero_now(m)) >> SECOND_SHIFT) : t;
}

/* The time the time bytes in cmos hold; also takes the day-of-week byte as written. */
static int64_t decode_time(aero_rtc *s) {
    const uint8_t *c = s->cmos;
    int64_t year = (int64_t)dec(s, c[REG_CENTURY]) * 100 + dec(s, c[9]);
    int64_t mon0 = dec(s, c[8]) - 1;
    year += floor_div(mon0, 12);
    int64_t days = days_from_civil(year, (int)floor_mod(mon0, 12) + 1, 1) + dec(s, c[7]) - 1;
    int64_t t = days * 86400 + (int64_t)dec_hour(s, c[4]) * 3600 + dec(s, c[2]) * 60 + dec(s, c[0]);
    int wday = dec(s, c[6]);
    s->dow_offset = wday >= 1 && wday <= 7 ? (uint8_t)floor_mod(wday - 1 - (days + 4), 7) : 0;
    return t;
}

/* Periodic rate (RS3-0, nonzero) -> log2 of its period in chain cycles. */
static unsigned period_shift(unsigned rate) { return (rate <= 2 ? rate + 7 : rate) - 1; }

/* ---- the alarm ---- */

static int alarm_hit(uint8_t alarm, uint8_t reg) { return (alarm & 0xC0) == 0xC0 || alarm == reg; }

/* Seconds from t to the first time at or after t whose encoded time matches the alarm bytes,
 * or -1 if none ever does. */
static int64_t alarm_next(const aero_rtc *s, int64_t t) {
    uint64_t sm = 0, mm = 0;
    uint32_t hm = 0;
    for (int v = 0; v < 60; v++) {
        if (alarm_hit(s->cmos[1], enc(s, v))) sm |= 1ull << v;
        if (alarm_hit(s->cmos[3], enc(s, v))) mm |= 1ull << v;
        if (v < 24 && alarm_hit(s->cmos[5], enc_hour(s, v))) hm |= 1u << v;
    }
    if (!sm || !mm || !hm) return -1;
    int64_t sod = floor_mod(t, 86400);
    int h0 = (int)(sod / 3600), m0 = (int)(sod / 60 % 60), s0 = (int)(sod % 60);
    for (int d = 0; d < 2; d++) {
        for (int h = d ? 0 : h0; h < 24; h++) {
            if (!(hm >> h & 1)) continue;
            int same_h = !d && h == h0;
            for (int mi = same_h ? m0 : 0; mi < 60; mi++) {
                if (!(mm >> mi & 1)) continue;
                uint64_t rest = sm & (~0ull << (same_h && mi == m0 ? s0 : 0));
                if (rest) return d * 86400 + h * 3600 + mi * 60 + __builtin_ctzll(rest) - sod;
            }
        }
    }
    return -1;
}

/* ---- flags, IRQ 8, the deadline ---- */

/* Accumulate the flags of everything that happened in (synced_tick, now]. */
static void sync(aero_machine *m) {
    aero_rtc *s = &m->pc->rtc;
    uint64_t now = aero_now(m);
    if (now > s->synced_tick && running(s)) {
        u128 ca = chain_at(m, s, s->synced_tick), cb = chain_at(m, s, now);
        unsigned rate = s->cmos[REG_A] & 0x0F;
        if (rate && (cb >> period_shift(rate)) > (ca >> period_shift(rate))) s->flags |= C_PF;
        u128 ka = ca >> SECOND_SHIFT, kb = cb >> SECOND_SHIFT;
        if (!(s->cmos[REG_B] & B_SET) && kb > ka) {
            s->flags |= C_UF;
            int64_t d = alarm_next(s, s->base_seconds + (int64_t)ka + 1);
            if (d >= 0 && (u128)d < kb - ka) s->flags |= C_AF;
        }
    }
    s->synced_tick = now;
}

static void update_irq(aero_machine *m) {
    aero_rtc *s = &m->pc->rtc;
    s->irq = (s->flags & s->cmos[REG_B] & C_FLAGS) != 0;
    aero_pic_set_irq(m, 8, s->irq);
}

/* Arm the deadline for the next event of each enabled source whose flag is still clear (a set
 * flag already holds IRQ 8 high until register C is read). */
static void rearm(aero_machine *m) {
    aero_rtc *s = &m->pc->rtc;
    uint8_t want = s->cmos[REG_B] & C_FLAGS & (uint8_t)~s->flags;
    uint64_t d = AERO_NEVER;
    if (want && running(s)) {
        u128 c = chain_at(m, s, aero_now(m)), next_second = ((c >> SECOND_SHIFT) + 1) << SECOND_SHIFT;
        unsigned rate = s->cmos[REG_A] & 0x0F;
        if ((want & C_PF) && rate) {
            unsigned sh = period_shift(rate);
            uint64_t t = tick_of_count(m, s, ((c >> sh) + 1) << sh);
            if (t < d) d = t;
        }
        if (!(s->cmos[REG_B] & B_SET)) {
            if (want & C_UF) {
                uint64_t t = tick_of_count(m, s, next_second);
                if (t < d) d = t;
            }
            if (want & C_AF) {
                int64_t k = alarm_next(s, s->base_seconds + (int64_t)(c >> SECOND_SHIFT) + 1);
                if (k >= 0) {
                    uint64_t t = tick_of_count(m, s, next_second + ((u128)k << SECOND_SHIFT));
                    if (t < d) d = t;
                }
            }
        }
    }
    s->deadline = d;
}

static int uip(const aero_machine *m, const aero_rtc *s) {
    if (!running(s) || (s->cmos[REG_B] & B_SET)) return 0;
    uint64_t now = aero_now(m);
    u128 c = chain_at(m, s, now);
    uint64_t next = tick_of_count(m, s, ((c >> SECOND_SHIFT) + 1) << SECOND_SHIFT);
    return (u128)(next - now) * 1000000u <= (u128)m->cfg.tick_hz * UIP_US;
}

/* ---- power-on and reset ---- */

static void put16be(uint8_t *c, unsigned at, uint32_t v) {
    c[at] = (uint8_t)(v >> 8);
    c[at + 1] = (uint8_t)v;
}

static void power_on(aero_machine *m) {
    aero_rtc *s = &m->pc->rtc;
    memset(s, 0, sizeof *s);
    uint8_t *c = s->cmos;
    c[REG_A] = A_DV_32K | 0x06; /* 32.768 kHz, 1024 Hz periodic rate: what firmware programs */
    c[REG_B] = B_24H;
    c[REG_D] = 0x80;
    /* The memory sizes SeaBIOS and other PC firmware read (little-endian pairs). */
    uint32_t ram = m->ram_size, kb = ram / 1024;
    uint32_t base = kb < 640 ? kb : 640;
    uint32_t ext = kb > 1024 ? kb - 1024 : 0;
    uint32_t high = ram > (16u << 20) ? (ram - (16u << 20)) / 65536 : 0;
    if (ext > 0xFFFF) ext = 0xFFFF;
    if (high > 0xFFFF) high = 0xFFFF;
    c[0x10] = 0x00; /* no floppy drives */
    c[0x12] = 0x00; /* no hard disks */
    c[0x14] = 0x00; /* equipment: no floppy, EGA/VGA (bits 5:4 = 00), no coprocessor (bit 1) */
    c[0x15] = (uint8_t)base;
    c[0x16] = (uint8_t)(base >> 8);
    c[0x17] = c[0x30] = (uint8_t)ext;
    c[0x18] = c[0x31] = (uint8_t)(ext >> 8);
    c[0x34] = (uint8_t)high;
    c[0x35] = (uint8_t)(high >> 8);
    uint32_t sum = 0;
    for (unsigned i = 0x10; i <= 0x2D; i++) sum += c[i];
    put16be(c, 0x2E, sum);
    s->base_seconds = RTC_DEFAULT_TIME;
    s->chain_tick = s->synced_tick = aero_now(m);
    encode_time(s, RTC_DEFAULT_TIME, c); /* the century byte and a consistent picture */
    s->powered = 1;
}

void aero_rtc_boot_order(aero_machine *m, uint8_t first, uint8_t second, uint8_t third) {
    uint8_t *c = m->pc->rtc.cmos;
    c[0x3D] = (uint8_t)((second & 0x0F) << 4 | (first & 0x0F));
    c[0x38] = (uint8_t)((third & 0x0F) << 4);
}

void aero_rtc_reset(aero_machine *m) {
    aero_rtc *s = &m->pc->rtc;
    if (!s->powered) {
        power_on(m);
    } else {
        s->cmos[REG_B] &= (uint8_t)~(B_PIE | B_AIE | B_UIE | B_SQWE);
        s->flags = 0;
        s->synced_tick = aero_now(m);
    }
    update_irq(m);
    rearm(m);
}

/* ---- ports ---- */

uint8_t aero_rtc_read(aero_machine *m, uint16_t port) {
    aero_rtc *s = &m->pc->rtc;
    if (!(port & 1)) return 0xFF;
    unsigned idx = s->index & 0x7F;
    if (is_time_reg(idx)) {
        if (s->cmos[REG_B] & B_SET) return s->cmos[idx];
        uint8_t t[128] = {0};
        encode_time(s, seconds_at(m, s, aero_now(m)), t);
        return t[idx];
    }
    switch (idx) {
    case REG_A:
        return (uint8_t)((s->cmos[REG_A] & 0x7F) | (uip(m, s) ? A_UIP : 0));
    case REG_C: {
        sync(m);
        uint8_t v = s->flags;
        if (v & s->cmos[REG_B] & C_FLAGS) v |= C_IRQF;
        s->flags = 0;
        update_irq(m);
        rearm(m);
        return v;
    }
    case REG_D:
        return 0x80;
    default:
        return s->cmos[idx];
    }
}

void aero_rtc_write(aero_machine *m, uint16_t port, uint8_t val) {
    aero_rtc *s = &m->pc->rtc;
    if (!(port & 1)) {
        s->index = val & 0x7F;
        s->nmi_mask = val >> 7;
        return;
    }
    unsigned idx = s->index & 0x7F;
    uint64_t now = aero_now(m);
    if (idx == REG_C || idx == REG_D) return; /* read-only */
    if (!is_time_reg(idx) && idx != 1 && idx != 3 && idx != 5 && idx != REG_A && idx != REG_B) {
        s->cmos[idx] = val; /* NVRAM */
        return;
    }
    sync(m);
    if (is_time_reg(idx)) {
        if (s->cmos[REG_B] & B_SET) {
            s->cmos[idx] = val;
        } else {
            encode_time(s, seconds_at(m, s, now), s->cmos);
            s->cmos[idx] = val;
            set_clock(m, decode_time(s));
        }
    } else if (idx == REG_A) {
        int was = running(s);
        int64_t t = seconds_at(m, s, now);
        s->cmos[REG_A] = val & 0x7F; /* UIP is read-only */
        if (was && !running(s)) {
            s->base_seconds = t; /* the chain stops: the time stands */
        } else if (!was && running(s)) {
            s->chain_tick = now; /* the first update half a second later */
            s->chain_c0 = HALF_SECOND;
        }
    } else if (idx == REG_B) {
        uint8_t old = s->cmos[REG_B];
        if (val & B_SET) val &= (uint8_t)~B_UIE;
        if ((val & B_SET) && !(old & B_SET))
            encode_time(s, seconds_at(m, s, now), s->cmos); /* in the old format */
        s->cmos[REG_B] = val;
        if (!(val & B_SET) && (old & B_SET)) set_clock(m, decode_time(s)); /* in the new one */
    } else {
        s->cmos[idx] = val; /* an alarm byte */
    }
    update_irq(m);
    rearm(m);
}

void aero_rtc_set_time(aero_machine *m, int64_t unix_seconds) {
    aero_rtc *s = &m->pc->rtc;
    sync(m);
    if (unix_seconds < RTC_MIN_TIME) unix_seconds = RTC_MIN_TIME;
    if (unix_seconds > RTC_MAX_TIME) unix_seconds = RTC_MAX_TIME;
    /* Count 0 now: the seconds change every tick_hz ticks from here. While SET holds the
     * clock the guest's bytes win when it clears SET, as they would on the chip. */
    s->chain_tick = aero_now(m);
    s->chain_c0 = 0;
    s->base_seconds = unix_seconds;
    s->dow_offset = 0;
    update_irq(m);
    rearm(m);
}

void aero_rtc_timer(aero_machine *m) {
    sync(m);
    update_irq(m);
    rearm(m);
}

/* ---- state ---- */

void aero_rtc_save(const aero_rtc *s, aero_sbuf *b) {
    aero_put64(b, s->deadline);
    aero_put_bytes(b, s->cmos, sizeof s->cmos);
    aero_put8(b, s->index);
    aero_put8(b, s->nmi_mask);
    aero_put8(b, s->flags);
    aero_put8(b, s->irq);
    aero_put8(b, s->dow_offset);
    aero_put8(b, s->powered);
    aero_put16(b, s->chain_c0);
    aero_put64(b, s->chain_tick);
    aero_put64(b, s->synced_tick);
    aero_put64(b, (uint64_t)s->base_seconds);
}

void aero_rtc_load(aero_rtc *s, aero_sbuf *b) {
    s->deadline = aero_get64(b);
    aero_get_bytes(b, s->cmos, sizeof s->cmos);
    s->index = aero_get8(b) & 0x7F;
    s->nmi_mask = aero_get8(b) & 1;
    s->flags = aero_get8(b) & C_FLAGS;
    s->irq = aero_get8(b) & 1;
    s->dow_offset = aero_get8(b) % 7;
    s->powered = aero_get8(b) & 1;
    s->chain_c0 = aero_get16(b) & (CHAIN_HZ - 1);
    s->chain_tick = aero_get64(b);
    s->synced_tick = aero_get64(b);
    int64_t base = (int64_t)aero_get64(b);
    if (base < -RTC_BASE_LIMIT) base = -RTC_BASE_LIMIT;
    if (base > RTC_BASE_LIMIT) base = RTC_BASE_LIMIT;
    s->base_seconds = base;
}
