/* aero core: the 8254 PIT (being written). */
#include "platform.h"
void aero_pit_reset(aero_machine *m) { m->pc->pit.deadline = AERO_NEVER; }
uint8_t aero_pit_read(aero_machine *m, uint16_t port) { (void)m; (void)port; return 0xFF; }
void aero_pit_write(aero_machine *m, uint16_t port, uint8_t val) { (void)m; (void)port; (void)val; }
void aero_pit_timer(aero_machine *m) { m->pc->pit.deadline = AERO_NEVER; }
void aero_pit_save(const aero_pit *s, aero_sbuf *b) { aero_put64(b, s->deadline); }
void aero_pit_load(aero_pit *s, aero_sbuf *b) { s->deadline = aero_get64(b); }
