/* aero core: the 16550A UART (uart.c), two instances: COM1 and COM2. */
#ifndef AERO_UART_H
#define AERO_UART_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

#define AERO_UART_FIFO 16 /* bytes in each of the receive and transmit FIFOs */

typedef struct aero_uart {
    uint64_t deadline;     /* tick at which aero_uart_timer must run, AERO_NEVER: none */
    uint64_t tx_deadline;  /* tick at which the shift register finishes its character */
    uint64_t tx_end;       /* the same moment in 1.8432 MHz clock cycles (chains characters
                              back to back without rounding drift) */
    uint64_t rx_timeout;   /* tick of the character timeout (FIFO mode), AERO_NEVER: unarmed */
    uint8_t rx_fifo[AERO_UART_FIFO]; /* received bytes (FIFOs off: only rx_fifo[rx_head]) */
    uint8_t tx_fifo[AERO_UART_FIFO]; /* bytes waiting for the transmitter (FIFOs off: the THR) */
    uint8_t rx_head;       /* index of the oldest received byte */
    uint8_t rx_count;      /* received bytes held (at most 1 with the FIFOs off) */
    uint8_t tx_head;       /* index of the oldest byte waiting to be sent */
    uint8_t tx_count;      /* bytes waiting to be sent (at most 1 with the FIFOs off) */
    uint8_t rbr;           /* the last byte read out of RBR: what an empty RBR reads */
    uint8_t tsr;           /* the byte in the transmit shift register */
    uint8_t tsr_busy;      /* 1: the shift register is sending tsr */
    uint8_t tsr_loop;      /* 1: tsr was loaded in loopback mode, it returns to the receiver */
    uint8_t ier;           /* interrupt enable register (bits 3:0) */
    uint8_t lcr;           /* line control register (bit 7: DLAB) */
    uint8_t mcr;           /* modem control register (bits 4:0; bit 4 loopback) */
    uint8_t lsr_err;       /* latched LSR error bits (overrun, bit 1), cleared by reading LSR */
    uint8_t msr_delta;     /* MSR bits 3:0: DCTS, DDSR, TERI, DDCD, cleared by reading MSR */
    uint8_t fcr;           /* FIFO control as written: bit 0 enable, bit 3 DMA mode, 7:6 trigger */
    uint8_t dll, dlm;      /* divisor latch, low and high byte */
    uint8_t scr;           /* scratch register */
    uint8_t thr_pending;   /* 1: the THR-empty interrupt is pending */
    uint8_t timeout_pending; /* 1: the character-timeout interrupt is pending */
    uint8_t irq_level;     /* level driven on the IRQ line as last computed */
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
