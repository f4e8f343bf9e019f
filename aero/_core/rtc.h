/* aero core: the MC146818 real-time clock and CMOS NVRAM (rtc.c). */
#ifndef AERO_RTC_H
#define AERO_RTC_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

typedef struct aero_rtc {
    uint64_t deadline;   /* tick at which aero_rtc_timer must run, AERO_NEVER: none */
} aero_rtc;

void aero_rtc_reset(struct aero_machine *m);
/* Ports 70h (index, bit 7 = NMI mask) and 71h (data). */
uint8_t aero_rtc_read(struct aero_machine *m, uint16_t port);
void aero_rtc_write(struct aero_machine *m, uint16_t port, uint8_t val);
/* The wall-clock time at the current tick (AERO_EV_RTC_TIME), Unix seconds. */
void aero_rtc_set_time(struct aero_machine *m, int64_t unix_seconds);
void aero_rtc_timer(struct aero_machine *m);
void aero_rtc_save(const aero_rtc *s, struct aero_sbuf *b);
void aero_rtc_load(aero_rtc *s, struct aero_sbuf *b);

#endif
