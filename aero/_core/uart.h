/* aero core: the 16550A UART (uart.c), two instances: COM1 and COM2. */
#ifndef AERO_UART_H
#define AERO_UART_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

typedef struct aero_uart {
    uint64_t deadline;   /* tick at which aero_uart_timer must run, AERO_NEVER: none */
} aero_uart;

void aero_uart_reset(struct aero_machine *m, int i);
/* Register reg (0-7) of UART i (0: COM1 at 3F8h/IRQ 4, 1: COM2 at 2F8h/IRQ 3). */
uint8_t aero_uart_read(struct aero_machine *m, int i, int reg);
void aero_uart_write(struct aero_machine *m, int i, int reg, uint8_t val);
/* A byte arrives on UART i's receive line (AERO_EV_SERIAL_RX). */
void aero_uart_rx(struct aero_machine *m, int i, uint8_t byte);
void aero_uart_timer(struct aero_machine *m, int i);
void aero_uart_save(const aero_uart *s, struct aero_sbuf *b);
void aero_uart_load(aero_uart *s, struct aero_sbuf *b);

#endif
