/* aero core: the 8042 (being written). */
#include "platform.h"
void aero_kbc_reset(aero_machine *m) { m->pc->kbc.deadline = AERO_NEVER; }
uint8_t aero_kbc_read(aero_machine *m, uint16_t port) { (void)m; (void)port; return 0xFF; }
void aero_kbc_write(aero_machine *m, uint16_t port, uint8_t val) { (void)m; (void)port; (void)val; }
void aero_kbc_key(aero_machine *m, uint32_t key, int pressed) { (void)m; (void)key; (void)pressed; }
void aero_kbc_timer(aero_machine *m) { m->pc->kbc.deadline = AERO_NEVER; }
void aero_kbc_save(const aero_kbc *s, aero_sbuf *b) { aero_put64(b, s->deadline); }
void aero_kbc_load(aero_kbc *s, aero_sbuf *b) { s->deadline = aero_get64(b); }
