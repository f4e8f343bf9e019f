/* aero core: the 16550A UART (National Semiconductor NS16550A datasheet), COM1 and COM2.
 *
 * Registers (DLAB = LCR bit 7): 0 RBR/THR (DLL), 1 IER (DLM), 2 IIR/FCR, 3 LCR, 4 MCR,
 * 5 LSR, 6 MSR, 7 SCR. With the FIFOs off the receive and transmit FIFOs stand in for RBR
 * and THR with a capacity of one byte.
 *
 * Timing comes from the guest clock only. The baud generator runs from a 1.8432 MHz clock;
 * a character of 1 start bit, 5-8 data bits, an optional parity bit and 1, 1.5 or 2 stop bits
 * takes bits * 16 * divisor clock cycles. A divisor of 0 counts as 65536 (the 16-bit counter
 * wraps). The transmitter moves a byte from the THR/FIFO into the shift register as soon as
 * the shift register is idle; that moment is when the byte leaves the machine (an OUTPUT
 * event on channel AERO_CH_COM1 + i), and the shift register is empty again one character
 * time later (a deadline). Back-to-back characters are chained in clock cycles, so their
 * spacing never drifts from rounding to ticks.
 *
 * Receiving: an injected byte is a character that has just completed on the RX line. FIFOs
 * on: it enters the FIFO, or is lost with LSR.OE set when the FIFO is full (the FIFO keeps
 * its contents). FIFOs off: it replaces RBR, and OE is set if the previous byte was unread
 * (the datasheet's "destroying the previous character"). Nothing produces parity, framing
 * or break errors, so LSR bits 2-4 and 7 (error in RX FIFO, which an overrun does not set)
 * read 0.
 *
 * The character timeout (FIFO mode) is a deadline 4 character times after the last received
 * byte or the last RBR read while the FIFO holds data; it is cleared and restarted by an RBR
 * read. A byte arriving while the timeout is already pending leaves it pending.
 *
 * Modem lines: the far end is a connected terminal, CTS, DSR and DCD asserted, RI not. In
 * loopback (MCR bit 4) the transmitter feeds the receiver (the byte arrives when its
 * character completes, and is not output), the receive line is disconnected (injected bytes
 * are logged by the platform but ignored), and RTS, DTR, OUT1, OUT2 appear as CTS, DSR, RI,
 * DCD. The datasheet forces the OUT2 pin inactive in loopback; on the PC that pin gates the
 * IRQ line, so the IRQ stays low in loopback while IIR still reports the interrupts.
 *
 * IRQ (PC wiring): level = an enabled interrupt is pending AND MCR.OUT2 AND not loopback.
 *
 * Not modelled: break transmission (LCR bit 6) and reception, parity generation/checking
 * (stick parity), DMA mode signalling (FCR bit 3 is stored only), the start-bit alignment to
 * the 16x clock, and the short THRE delay after the first write to an empty FIFO.
 */
#include "platform.h"

#define UART_HZ 1843200u

#define IER_RDA 0x01
#define IER_THRE 0x02
#define IER_RLS 0x04
#define IER_MS 0x08

#define IIR_NONE 0x01
#define IIR_MS 0x00
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_RLS 0x06
#define IIR_CTI 0x0C

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define FCR_ENABLE 0x01

static int irq_of(int i) { return i == 0 ? 4 : 3; }

static int fifo_on(const aero_uart *s) { return s->fcr & FCR_ENABLE; }

static uint32_t capacity(const aero_uart *s) { return fifo_on(s) ? AERO_UART_FIFO : 1; }

static uint32_t trigger(const aero_uart *s) {
    static const uint8_t level[4] = {1, 4, 8, 14};
    return level[s->fcr >> 6];
}

/* One character on the line, in 1.8432 MHz cycles: half bits * 8 cycles * divisor. */
static uint64_t char_cycles(const aero_uart *s) {
    uint32_t divisor = (uint32_t)s->dll | (uint32_t)s->dlm << 8;
    if (divisor == 0) divisor = 65536;
    uint32_t data = 5 + (s->lcr & 3u), parity = (s->lcr >> 3) & 1u;
    uint32_t stop_half = !(s->lcr & 0x04) ? 2 : (data == 5 ? 3 : 4);
    uint32_t half_bits = 2 * (1 + data + parity) + stop_half;
    return (uint64_t)half_bits * 8u * divisor;
}

/* Modem status inputs as MSR bits 7:4 (DCD, RI, DSR, CTS). */
static uint8_t modem_lines(const aero_uart *s) {
    if (!(s->mcr & MCR_LOOP)) return 0xB0; /* a terminal: DCD, DSR, CTS */
    uint8_t m = s->mcr;
    return (uint8_t)(((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4));
}

static uint8_t lsr(const aero_uart *s) {
    uint8_t v = s->lsr_err;
    if (s->rx_count) v |= LSR_DR;
    if (!s->tx_count) {
        v |= LSR_THRE;
        if (!s->tsr_busy) v |= LSR_TEMT;
    }
    return v;
}

/* The highest-priority enabled interrupt (IIR bits 3:0). */
static uint8_t interrupt_id(const aero_uart *s) {
    if ((s->ier & IER_RLS) && s->lsr_err) return IIR_RLS;
    if ((s->ier & IER_RDA) && s->rx_count && (!fifo_on(s) || s->rx_count >= trigger(s)))
        return IIR_RDA;
    if ((s->ier & IER_RDA) && s->timeout_pending) return IIR_CTI;
    if ((s->ier & IER_THRE) && s->thr_pending) return IIR_THRE;
    if ((s->ier & IER_MS) && s->msr_delta) return IIR_MS;
    return IIR_NONE;
}

static void update_deadline(aero_uart *s) {
    uint64_t d = s->tsr_busy ? s->tx_deadline : AERO_NEVER;
    s->deadline = s->rx_timeout < d ? s->rx_timeout : d;
}

/* Recompute the IRQ line and the deadline after any change. */
static void update(aero_machine *m, int i) {
    aero_uart *s = &m->pc->uart[i];
    int level = interrupt_id(s) != IIR_NONE && (s->mcr & MCR_OUT2) && !(s->mcr & MCR_LOOP);
    if (level != s->irq_level) {
        s->irq_level = (uint8_t)level;
        aero_pic_set_irq(m, irq_of(i), level);
    }
    update_deadline(s);
}

static void arm_timeout(aero_machine *m, aero_uart *s) {
    uint64_t start = aero_clock_at(m, aero_now(m), UART_HZ);
    s->rx_timeout = aero_tick_of(m, start + 4 * char_cycles(s), UART_HZ);
}

static void rx_clear(aero_uart *s) {
    s->rx_head = s->rx_count = 0;
    s->timeout_pending = 0;
    s->rx_timeout = AERO_NEVER;
}

static void receive(aero_machine *m, aero_uart *s, uint8_t byte) {
    if (!fifo_on(s)) {
        if (s->rx_count) s->lsr_err |= LSR_OE; /* the unread byte is destroyed */
        s->rx_fifo[s->rx_head] = byte;
        s->rx_count = 1;
        return;
    }
    if (s->rx_count >= AERO_UART_FIFO) {
        s->lsr_err |= LSR_OE; /* the new character is lost, the FIFO is kept */
        return;
    }
    s->rx_fifo[(s->rx_head + s->rx_count) % AERO_UART_FIFO] = byte;
    s->rx_count++;
    if (!s->timeout_pending) arm_timeout(m, s);
}

/* The shift register is idle: load the next waiting byte, its character starting at cycle
 * start. The byte leaves the machine now (loopback: it reaches the receiver at the end). */
static void tx_load(aero_machine *m, int i, uint64_t start) {
    aero_uart *s = &m->pc->uart[i];
    if (s->tsr_busy || !s->tx_count) return;
    s->tsr = s->tx_fifo[s->tx_head];
    s->tx_head = (uint8_t)((s->tx_head + 1) % AERO_UART_FIFO);
    s->tx_count--;
    s->tsr_busy = 1;
    s->tsr_loop = (s->mcr & MCR_LOOP) != 0;
    s->tx_end = start + char_cycles(s);
    s->tx_deadline = aero_tick_of(m, s->tx_end, UART_HZ);
    if (!s->tx_count) s->thr_pending = 1; /* the THR/FIFO just became empty */
    if (!s->tsr_loop) aero_log_output(m, AERO_CH_COM1 + (uint32_t)i, s->tsr);
}

void aero_uart_reset(aero_machine *m, int i) {
    aero_uart *s = &m->pc->uart[i];
    memset(s, 0, sizeof *s);
    /* The divisor latch is undefined after a master reset: 12 (9600 baud), what PC BIOSes
     * program for their console. */
    s->dll = 12;
    s->rx_timeout = AERO_NEVER;
    s->tx_deadline = AERO_NEVER;
    aero_pic_set_irq(m, irq_of(i), 0);
    update(m, i);
}

static uint8_t read_rbr(aero_machine *m, aero_uart *s) {
    if (!s->rx_count) return s->rbr;
    s->rbr = s->rx_fifo[s->rx_head];
    s->rx_head = (uint8_t)((s->rx_head + 1) % AERO_UART_FIFO);
    s->rx_count--;
    s->timeout_pending = 0;
    if (fifo_on(s) && s->rx_count) arm_timeout(m, s);
    else s->rx_timeout = AERO_NEVER;
    return s->rbr;
}

uint8_t aero_uart_read(aero_machine *m, int i, int reg) {
    aero_uart *s = &m->pc->uart[i];
    int dlab = (s->lcr & 0x80) != 0;
    uint8_t v;
    switch (reg & 7) {
    case 0: v = dlab ? s->dll : read_rbr(m, s); break;
    case 1: v = dlab ? s->dlm : s->ier; break;
    case 2:
        v = interrupt_id(s);
        if (v == IIR_THRE) s->thr_pending = 0; /* reading IIR that reports THRE clears it */
        if (fifo_on(s)) v |= 0xC0;
        break;
    case 3: v = s->lcr; break;
    case 4: v = s->mcr; break;
    case 5:
        v = lsr(s);
        s->lsr_err = 0;
        break;
    case 6:
        v = (uint8_t)(modem_lines(s) | s->msr_delta);
        s->msr_delta = 0;
        break;
    default: v = s->scr; break;
    }
    update(m, i);
    return v;
}

static void write_fcr(aero_uart *s, uint8_t val) {
    if (!(val & FCR_ENABLE)) {
        /* FIFOs off: both are cleared if they were on; the other bits need FCR0 set. */
        if (fifo_on(s)) {
            rx_clear(s);
            s->tx_head = s->tx_count = 0;
        }
        s->fcr = 0;
        return;
    }
    int clear_rx = (val & 0x02) || !fifo_on(s), clear_tx = (val & 0x04) || !fifo_on(s);
    s->fcr = val & 0xC9;
    if (clear_rx) rx_clear(s);
    if (clear_tx) {
        if (s->tx_count) s->thr_pending = 1;
        s->tx_head = s->tx_count = 0;
    }
}

static void write_mcr(aero_uart *s, uint8_t val) {
    uint8_t before = modem_lines(s);
    s->mcr = val & 0x1F;
    uint8_t after = modem_lines(s), changed = before ^ after;
    if (changed & 0x10) s->msr_delta |= 0x01;                 /* DCTS */
    if (changed & 0x20) s->msr_delta |= 0x02;                 /* DDSR */
    if ((before & 0x40) && !(after & 0x40)) s->msr_delta |= 0x04; /* TERI: RI trailing edge */
    if (changed & 0x80) s->msr_delta |= 0x08;                 /* DDCD */
}

void aero_uart_write(aero_machine *m, int i, int reg, uint8_t val) {
    aero_uart *s = &m->pc->uart[i];
    int dlab = (s->lcr & 0x80) != 0;
    switch (reg & 7) {
    case 0:
        if (dlab) {
            s->dll = val;
            break;
        }
        /* A write to a full THR/FIFO is lost (the datasheet leaves it undefined). */
        if (s->tx_count < capacity(s)) {
            s->tx_fifo[(s->tx_head + s->tx_count) % AERO_UART_FIFO] = val;
            s->tx_count++;
        }
        s->thr_pending = 0;
        tx_load(m, i, aero_clock_at(m, aero_now(m), UART_HZ));
        break;
    case 1:
        if (dlab) {
            s->dlm = val;
        } else {
            uint8_t changed = (uint8_t)((s->ier ^ val) & IER_THRE);
            s->ier = val & 0x0F;
            /* Enabling the THRE interrupt while THR is empty raises it at once. */
            if (changed) s->thr_pending = (s->ier & IER_THRE) && !s->tx_count;
        }
        break;
    case 2: write_fcr(s, val); break;
    case 3: s->lcr = val; break;
    case 4: write_mcr(s, val); break;
    case 5: case 6: break; /* LSR and MSR are read-only here (factory test writes ignored) */
    default: s->scr = val; break;
    }
    update(m, i);
}

void aero_uart_rx(aero_machine *m, int i, uint8_t byte) {
    aero_uart *s = &m->pc->uart[i];
    if (s->mcr & MCR_LOOP) return; /* loopback disconnects the receive line */
    receive(m, s, byte);
    update(m, i);
}

void aero_uart_timer(aero_machine *m, int i) {
    aero_uart *s = &m->pc->uart[i];
    uint64_t now = aero_now(m);
    /* Each pass frees the shift register or takes a byte from the FIFO, so this ends. */
    while (s->tsr_busy && s->tx_deadline <= now) {
        s->tsr_busy = 0;
        if (s->tsr_loop) receive(m, s, s->tsr);
        tx_load(m, i, s->tx_end);
    }
    if (s->rx_timeout <= now) {
        s->rx_timeout = AERO_NEVER;
        if (fifo_on(s) && s->rx_count) s->timeout_pending = 1;
    }
    update(m, i);
}

void aero_uart_save(const aero_uart *s, aero_sbuf *b) {
    aero_put64(b, s->tx_deadline);
    aero_put64(b, s->tx_end);
    aero_put64(b, s->rx_timeout);
    aero_put_bytes(b, s->rx_fifo, AERO_UART_FIFO);
    aero_put_bytes(b, s->tx_fifo, AERO_UART_FIFO);
    const uint8_t f[] = {s->rx_head, s->rx_count, s->tx_head, s->tx_count, s->rbr, s->tsr,
                         s->tsr_busy, s->tsr_loop, s->ier, s->lcr, s->mcr, s->lsr_err,
                         s->msr_delta, s->fcr, s->dll, s->dlm, s->scr, s->thr_pending,
                         s->timeout_pending, s->irq_level};
    aero_put_bytes(b, f, sizeof f);
}

void aero_uart_load(aero_uart *s, aero_sbuf *b) {
    s->tx_deadline = aero_get64(b);
    s->tx_end = aero_get64(b);
    s->rx_timeout = aero_get64(b);
    aero_get_bytes(b, s->rx_fifo, AERO_UART_FIFO);
    aero_get_bytes(b, s->tx_fifo, AERO_UART_FIFO);
    uint8_t f[20];
    aero_get_bytes(b, f, sizeof f);
    /* Positions and counts are clamped: they index the FIFOs. */
    s->fcr = f[13] & 0xC9;
    s->rx_head = f[0] % AERO_UART_FIFO;
    s->rx_count = f[1] > capacity(s) ? (uint8_t)capacity(s) : f[1];
    s->tx_head = f[2] % AERO_UART_FIFO;
    s->tx_count = f[3] > capacity(s) ? (uint8_t)capacity(s) : f[3];
    s->rbr = f[4];
    s->tsr = f[5];
    s->tsr_busy = f[6] & 1;
    s->tsr_loop = f[7] & 1;
    s->ier = f[8] & 0x0F;
    s->lcr = f[9];
    s->mcr = f[10] & 0x1F;
    s->lsr_err = f[11] & LSR_OE;
    s->msr_delta = f[12] & 0x0F;
    s->dll = f[14];
    s->dlm = f[15];
    s->scr = f[16];
    s->thr_pending = f[17] & 1;
    s->timeout_pending = f[18] & 1;
    s->irq_level = f[19] & 1;
    update_deadline(s);
}
