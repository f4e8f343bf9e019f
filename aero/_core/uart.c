/* aero core: the 16550A UART (being written). */
#include "platform.h"
void aero_uart_reset(aero_machine *m, int i) { m->pc->uart[i].deadline = AERO_NEVER; }
uint8_t aero_uart_read(aero_machine *m, int i, int reg) { (void)m; (void)i; (void)reg; return 0xFF; }
void aero_uart_write(aero_machine *m, int i, int reg, uint8_t val) { if (reg == 0) aero_log_output(m, AERO_CH_COM1 + (uint32_t)i, val); }
void aero_uart_rx(aero_machine *m, int i, uint8_t byte) { (void)m; (void)i; (void)byte; }
void aero_uart_timer(aero_machine *m, int i) { m->pc->uart[i].deadline = AERO_NEVER; }
void aero_uart_save(const aero_uart *s, aero_sbuf *b) { aero_put64(b, s->deadline); }
void aero_uart_load(aero_uart *s, aero_sbuf *b) { s->deadline = aero_get64(b); }
