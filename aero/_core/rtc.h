/* aero core: the MC146818 real-time clock and CMOS NVRAM (rtc.c). */
#ifndef AERO_RTC_H
#define AERO_RTC_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

/* The clock is kept as a count, not as registers: the divider chain counts 32.768 kHz cycles
 * from chain_tick (starting at chain_c0), and the time in Unix seconds at tick t is
 * base_seconds + count(t) / 32768. The time registers are encoded from it when read. */
typedef struct aero_rtc {
    uint64_t deadline;     /* tick at which aero_rtc_timer must run, AERO_NEVER: none */
    uint8_t cmos[128];     /* the 128 bytes: NVRAM, registers A (0Ah) and B (0Bh), the alarm
                              bytes (1, 3, 5); the time bytes (0, 2, 4, 6-9, 32h) as the guest
                              sees them while B.SET holds the clock */
    uint8_t index;         /* register selected through port 70h (bits 6:0) */
    uint8_t nmi_mask;      /* port 70h bit 7 as last written (1: NMI disabled); kept for the
                              platform, which does not gate NMIs with it yet */
    uint8_t flags;         /* register C's PF, AF, UF (bits 6:4) accumulated up to synced_tick */
    uint8_t irq;           /* IRQ 8 as last driven: IRQF = flags & enables (register B) */
    uint8_t dow_offset;    /* day-of-week register minus the calendar's weekday, mod 7 (the
                              chip counts the weekday on its own; a guest may set any) */
    uint8_t powered;       /* 1 once the power-on state is set: a reset keeps time and NVRAM */
    uint16_t chain_c0;     /* divider chain count (0-32767) at chain_tick */
    uint64_t chain_tick;   /* tick from which the divider chain counts */
    uint64_t synced_tick;  /* flags hold every periodic, update and alarm event up to here */
    int64_t base_seconds;  /* Unix time at chain count 0 (running chain); the frozen time while
                              the divider is not 010 */
} aero_rtc;

void aero_rtc_reset(struct aero_machine *m);
/* Ports 70h (index, bit 7 = NMI mask) and 71h (data). */
uint8_t aero_rtc_read(struct aero_machine *m, uint16_t port);
void aero_rtc_write(struct aero_machine *m, uint16_t port, uint8_t val);
/* The wall-clock time at the current tick (AERO_EV_RTC_TIME), Unix seconds. */
void aero_rtc_set_time(struct aero_machine *m, int64_t unix_seconds);
void aero_rtc_timer(struct aero_machine *m);
/* The boot order in CMOS as QEMU's -boot gives it to SeaBIOS: 3Dh = second << 4 | first,
 * 38h = third << 4 (bit 0 clear: check the floppy boot signature), each a device code
 * (0 none, 1 floppy, 2 hard disk, 3 CD-ROM, 4 network). Outside the checksummed range. */
void aero_rtc_boot_order(struct aero_machine *m, uint8_t first, uint8_t second, uint8_t third);
void aero_rtc_save(const aero_rtc *s, struct aero_sbuf *b);
void aero_rtc_load(aero_rtc *s, struct aero_sbuf *b);

#endif
