/* aero core: the MC146818 RTC (being written). */
#include "platform.h"
void aero_rtc_reset(aero_machine *m) { m->pc->rtc.deadline = AERO_NEVER; }
uint8_t aero_rtc_read(aero_machine *m, uint16_t port) { (void)m; (void)port; return 0xFF; }
void aero_rtc_write(aero_machine *m, uint16_t port, uint8_t val) { (void)m; (void)port; (void)val; }
void aero_rtc_set_time(aero_machine *m, int64_t t) { (void)m; (void)t; }
void aero_rtc_timer(aero_machine *m) { m->pc->rtc.deadline = AERO_NEVER; }
void aero_rtc_save(const aero_rtc *s, aero_sbuf *b) { aero_put64(b, s->deadline); }
void aero_rtc_load(aero_rtc *s, aero_sbuf *b) { s->deadline = aero_get64(b); }
