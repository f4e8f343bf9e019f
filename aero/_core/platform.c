/* aero core: the PC platform — device lifetime, deadlines, the event log, input injection,
 * the small ports (92h, POST codes, PCI configuration mechanism #1) and device state
 * serialization. The port map itself is in io.c.
 */
#include <stdlib.h>

#include "platform.h"

/* Room past AERO_EVENT_CAP: run() stops once the log reaches the cap, but the instruction
 * (or timer) that reached it may still add a few events. */
#define EVENT_SLACK 4096

int aero_pc_init(aero_machine *m) {
    m->events = malloc((AERO_EVENT_CAP + EVENT_SLACK) * sizeof *m->events);
    if (!m->events) return -1;
    m->deadline = AERO_NEVER;
    if (!m->cfg.pc_devices) return 0;
    m->pc = calloc(1, sizeof *m->pc);
    if (!m->pc) return -1;
    aero_set_intr_controller(m, aero_pic_ack, NULL);
    aero_pc_reset_devices(m);
    return 0;
}

void aero_pc_free(aero_machine *m) {
    aero_fwcfg_free(m);
    aero_ide_free(m);
    free(m->pc);
    free(m->events);
}

void aero_pc_reset_devices(aero_machine *m) {
    if (!m->pc) return;
    aero_pc *pc = m->pc;
    aero_pic_reset(m);
    aero_pit_reset(m);
    aero_uart_reset(m, 0);
    aero_uart_reset(m, 1);
    aero_rtc_reset(m);
    aero_kbc_reset(m);
    aero_piix_reset(m);
    aero_fwcfg_reset(m);
    aero_ide_reset(m);
    aero_vga_reset(m);
    /* Port 92h's A20 bit reads 0 at power-on; the 8042's output port carries the
     * configured initial state, so either source can turn A20 off later. */
    pc->port92 = 0;
    pc->a20_kbc = m->cfg.a20_enabled ? 1 : 0;
    pc->post_code = 0;
    pc->pci_addr = 0;
    memset(pc->pci_cfg, 0, sizeof pc->pci_cfg);
    /* The i440FX host bridge, as far as a guest's bus scan looks: IDs, command, class. */
    uint8_t *c = pc->pci_cfg;
    c[0x00] = 0x86; c[0x01] = 0x80; c[0x02] = 0x37; c[0x03] = 0x12; /* vendor 8086, device 1237 */
    c[0x04] = 0x06; /* command: memory space, bus master */
    c[0x06] = 0x80; c[0x07] = 0x02; /* status: fast back-to-back, medium DEVSEL */
    c[0x08] = 0x02; /* revision */
    c[0x0A] = 0x00; c[0x0B] = 0x06; /* class 0600: host bridge */
    aero_pam_changed(m); /* PAM registers 59h-5Fh are 0 again: C0000h-FFFFFh reach the ROM */
    aero_pc_reschedule(m);
}

/* ---- the event log ---- */

void aero_log_event(aero_machine *m, uint32_t kind, uint32_t a, uint64_t b) {
    if (m->ev_len >= AERO_EVENT_CAP + EVENT_SLACK) {
        m->ev_lost++; /* reported by aero_event_log_lost; the host treats it as an error */
        return;
    }
    aero_event *e = &m->events[m->ev_len++];
    e->tick = aero_now(m);
    e->kind = kind;
    e->a = a;
    e->b = b;
    if (m->ev_len >= AERO_EVENT_CAP && m->stop < 0) {
        m->stop = AERO_STOP_EVENTS;
        m->exit_block = 1;
    }
}

void aero_log_output(aero_machine *m, uint32_t ch, uint8_t byte) {
    aero_log_event(m, AERO_EV_OUTPUT, ch, byte);
}

const aero_event *aero_event_log(aero_machine *m, uint32_t *count) {
    *count = m->ev_len;
    return m->events;
}

void aero_event_log_clear(aero_machine *m) { m->ev_len = 0; }

uint32_t aero_event_log_lost(aero_machine *m) { return m->ev_lost; }

/* ---- deadlines ---- */

void aero_pc_reschedule(aero_machine *m) {
    uint64_t d = AERO_NEVER;
    aero_pc *pc = m->pc;
    if (pc) {
        if (pc->pit.deadline < d) d = pc->pit.deadline;
        if (pc->uart[0].deadline < d) d = pc->uart[0].deadline;
        if (pc->uart[1].deadline < d) d = pc->uart[1].deadline;
        if (pc->rtc.deadline < d) d = pc->rtc.deadline;
        if (pc->kbc.deadline < d) d = pc->kbc.deadline;
    }
    m->deadline = d;
    /* Running: end the slice at the deadline (countdown and slice_end move together, so the
     * clock aero_now reads does not change). */
    if (m->stop < 0 && d < m->slice_end) {
        uint64_t now = aero_now(m), end = d > now ? d : now;
        m->countdown -= (int64_t)(m->slice_end - end);
        m->slice_end = end;
        m->exit_block = 1;
    }
}

uint64_t aero_next_deadline(aero_machine *m) { return m->deadline; }

/* Run the timers whose deadline has come (the clock stands at aero_now). */
void aero_pc_fire_timers(aero_machine *m) {
    aero_pc *pc = m->pc;
    if (!pc) return;
    uint64_t now = aero_now(m);
    if (pc->pit.deadline <= now) {
        aero_log_event(m, AERO_EV_TIMER, AERO_DEV_PIT, 0);
        aero_pit_timer(m);
    }
    for (int i = 0; i < 2; i++) {
        if (pc->uart[i].deadline <= now) {
            aero_log_event(m, AERO_EV_TIMER, AERO_DEV_UART0 + (uint32_t)i, 0);
            aero_uart_timer(m, i);
        }
    }
    if (pc->rtc.deadline <= now) {
        aero_log_event(m, AERO_EV_TIMER, AERO_DEV_RTC, 0);
        aero_rtc_timer(m);
    }
    if (pc->kbc.deadline <= now) {
        aero_log_event(m, AERO_EV_TIMER, AERO_DEV_KBC, 0);
        aero_kbc_timer(m);
    }
    aero_pc_reschedule(m);
}

/* ---- A20 and reset ---- */

static void apply_a20(aero_machine *m) {
    uint32_t on = m->pc->a20_kbc || (m->pc->port92 & 0x02);
    if (on != m->cpu.a20) {
        m->cpu.a20 = on;
        aero_tlb_flush_all(m); /* translations of addresses with bit 20 set change */
        m->exit_block = 1;
    }
}

void aero_pc_set_a20(aero_machine *m, int enabled) {
    m->pc->a20_kbc = enabled != 0;
    apply_a20(m);
}

void aero_pc_reset_request(aero_machine *m, uint32_t cause) {
    /* Taken between instructions by the run loop (the instruction asking for it completes). */
    m->reset_pending = cause;
    m->attn |= AERO_ATTN_RESET;
    m->exit_block = 1;
}

/* The CPU's RESET line: the processor restarts at the reset vector; the devices keep their
 * state, as the 8042 and port 92h only pulse the CPU's RESET (the BIOS reprograms the rest). */
void aero_pc_do_reset(aero_machine *m, uint32_t cause) {
    aero_log_event(m, AERO_EV_GUEST_RESET, cause, 0);
    aero_reset(m);
    if (m->pc) {
        if (cause == AERO_RESET_BUTTON) aero_pc_reset_devices(m);
        m->cpu.a20 = m->pc->a20_kbc || (m->pc->port92 & 0x02);
    }
}

/* ---- port 92h, POST codes, PCI ---- */

uint8_t aero_port92_read(aero_machine *m) { return m->pc->port92 & 0x02; }

void aero_port92_write(aero_machine *m, uint8_t val) {
    m->pc->port92 = val & 0x02;
    apply_a20(m);
    if (val & 0x01) aero_pc_reset_request(m, AERO_RESET_PORT92); /* fast reset */
}

void aero_post_write(aero_machine *m, uint8_t val) {
    m->pc->post_code = val;
    aero_log_output(m, AERO_CH_POST, val);
}

/* Configuration mechanism #1: CF8h holds the address (bit 31 enable, bus 23:16, device
 * 15:11, function 10:8, register 7:2); CFCh-CFFh the data. On bus 0, device 0 function 0 is
 * the host bridge and device 1 the PIIX3 (piix.c); every other function reads as absent
 * (FFFFh vendor). The host bridge's subsystem IDs (2Ch-2Fh) are QEMU's 1AF4:1100, by which
 * SeaBIOS knows it runs on QEMU's machine (and so reads fw_cfg); they are constants, not
 * stored. */
#define PCI_DEV1 0x00000800u /* bus 0, device 1 in CONFIG_ADDRESS bits 23:11 */
static const uint8_t host_subsys[4] = {0xF4, 0x1A, 0x00, 0x11};
uint32_t aero_pci_read(aero_machine *m, uint16_t port, int size) {
    aero_pc *pc = m->pc;
    uint32_t ones = size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
    if (port == 0xCF8 && size == 4) return pc->pci_addr;
    if (port < 0xCFC) return ones;
    uint32_t a = pc->pci_addr;
    if (!(a & 0x80000000u)) return ones;
    uint32_t reg = (a & 0xFC) + (port & 3u), v = 0;
    int rev0 = m->cfg.platform_rev == 0; /* no PIIX3 functions, no subsystem IDs (api.h) */
    if ((a & 0x00FFF800u) == PCI_DEV1 && !rev0)
        return aero_piix_cfg_read(m, (a >> 8) & 7, reg, size);
    if ((a & 0x00FFFF00u) != 0) return ones;
    for (int i = 0; i < size; i++) {
        uint32_t r = (reg + (uint32_t)i) & 0xFF;
        v |= (uint32_t)(r >= 0x2C && r < 0x30 && !rev0 ? host_subsys[r - 0x2C] : pc->pci_cfg[r])
             << (8 * i);
    }
    return v;
}

void aero_pci_write(aero_machine *m, uint16_t port, int size, uint32_t val) {
    aero_pc *pc = m->pc;
    if (port == 0xCF8) {
        if (size == 4) pc->pci_addr = val & 0x80FFFFFCu;
        return;
    }
    if (port < 0xCFC) return;
    uint32_t a = pc->pci_addr;
    if (!(a & 0x80000000u)) return;
    uint32_t reg = (a & 0xFC) + (port & 3u);
    if ((a & 0x00FFF800u) == PCI_DEV1 && m->cfg.platform_rev > 0) {
        aero_piix_cfg_write(m, (a >> 8) & 7, reg, size, val);
        return;
    }
    if ((a & 0x00FFFF00u) != 0) return;
    uint8_t pam[7];
    memcpy(pam, pc->pci_cfg + 0x59, sizeof pam);
    for (int i = 0; i < size; i++) {
        uint32_t r = (reg + (uint32_t)i) & 0xFF;
        /* Writable: the command register's enable bits and the chipset registers above the
         * header; identification, status and class are read-only. */
        if (r == 0x04) pc->pci_cfg[r] = (uint8_t)(val >> (8 * i)) & 0x07;
        else if (r >= 0x40) pc->pci_cfg[r] = (uint8_t)(val >> (8 * i));
    }
    if (memcmp(pam, pc->pci_cfg + 0x59, sizeof pam) != 0) aero_pam_changed(m);
}

/* ---- input injection ---- */

int aero_inject(aero_machine *m, uint32_t kind, uint32_t a, uint64_t b) {
    switch (kind) {
    case AERO_EV_SERIAL_RX:
        if (!m->pc || a > 1 || b > 0xFF) return -1;
        aero_log_event(m, kind, a, b);
        aero_uart_rx(m, (int)a, (uint8_t)b);
        break;
    case AERO_EV_KEY:
        if (!m->pc || b > 1 || (a > 0xFF && (a >> 8) != 0xE0)) return -1;
        aero_log_event(m, kind, a, b);
        aero_kbc_key(m, a, (int)b);
        break;
    case AERO_EV_RTC_TIME:
        if (!m->pc) return -1;
        aero_log_event(m, kind, a, b);
        aero_rtc_set_time(m, (int64_t)b);
        break;
    case AERO_EV_RESET:
        aero_log_event(m, kind, a, b);
        aero_pc_do_reset(m, AERO_RESET_BUTTON);
        break;
    case AERO_EV_NMI:
        aero_log_event(m, kind, a, b);
        aero_raise_nmi_internal(m);
        break;
    case AERO_EV_INTR:
        if (a > 0xFF || m->intr_count >= AERO_INTR_QUEUE) return -1;
        aero_log_event(m, kind, a, b);
        aero_raise_interrupt_internal(m, a);
        break;
    default:
        return -1;
    }
    aero_pc_reschedule(m);
    return 0;
}

/* ---- host port access ---- */

uint32_t aero_port_read(aero_machine *m, uint16_t port, int size) {
    if (size != 1 && size != 2 && size != 4) return 0;
    return aero_io_read(m, port, size);
}

void aero_port_write(aero_machine *m, uint16_t port, int size, uint32_t val) {
    if (size != 1 && size != 2 && size != 4) return;
    aero_io_write(m, port, size, val);
}

/* ---- device state ---- */

#define DEV_STATE_VERSION 1u

void aero_devices_save(aero_machine *m, uint8_t *out) {
    memset(out, 0, AERO_DEV_STATE_BYTES);
    aero_sbuf b = {out, out + AERO_DEV_STATE_BYTES, 0};
    aero_put32(&b, DEV_STATE_VERSION);
    aero_put32(&b, m->pc ? 1 : 0);
    if (!m->pc) return;
    aero_pc *pc = m->pc;
    aero_pic_save(&pc->pic, &b);
    aero_pit_save(&pc->pit, &b);
    aero_uart_save(&pc->uart[0], &b);
    aero_uart_save(&pc->uart[1], &b);
    aero_rtc_save(&pc->rtc, &b);
    aero_kbc_save(&pc->kbc, &b);
    aero_put8(&b, pc->port92);
    aero_put8(&b, pc->a20_kbc);
    aero_put8(&b, pc->post_code);
    aero_put32(&b, pc->pci_addr);
    aero_put_bytes(&b, pc->pci_cfg, sizeof pc->pci_cfg);
    aero_put32(&b, m->reset_pending);
    /* Added later: all zeros while untouched, so earlier fingerprints stay valid. */
    aero_piix_save(&pc->piix, &b);
    aero_fwcfg_save(&pc->fwcfg, &b);
    aero_ide_save(&pc->ide, &b);
    aero_vga_save(&pc->vga, &b);
}

int aero_devices_load(aero_machine *m, const uint8_t *in) {
    aero_sbuf b = {(uint8_t *)(uintptr_t)in, in + AERO_DEV_STATE_BYTES, 0};
    if (aero_get32(&b) != DEV_STATE_VERSION) return -1;
    uint32_t has = aero_get32(&b);
    if (has != (m->pc ? 1u : 0u)) return -1;
    if (!m->pc) return 0;
    aero_pc *pc = malloc(sizeof *pc);
    if (!pc) return -1;
    *pc = *m->pc;
    aero_pic_load(&pc->pic, &b);
    aero_pit_load(&pc->pit, &b);
    aero_uart_load(&pc->uart[0], &b);
    aero_uart_load(&pc->uart[1], &b);
    aero_rtc_load(&pc->rtc, &b);
    aero_kbc_load(&pc->kbc, &b);
    pc->port92 = aero_get8(&b) & 0x02;
    pc->a20_kbc = aero_get8(&b) & 1;
    pc->post_code = aero_get8(&b);
    pc->pci_addr = aero_get32(&b) & 0x80FFFFFCu;
    aero_get_bytes(&b, pc->pci_cfg, sizeof pc->pci_cfg);
    uint32_t reset = aero_get32(&b);
    aero_piix_load(&pc->piix, &b);
    aero_fwcfg_load(&pc->fwcfg, &b);
    aero_ide_load(&pc->ide, &b);
    aero_vga_load(&pc->vga, &b);
    if (b.err || reset > AERO_RESET_TRIPLE) {
        free(pc);
        return -1;
    }
    *m->pc = *pc;
    free(pc);
    m->reset_pending = reset;
    if (reset) m->attn |= AERO_ATTN_RESET;
    aero_pam_changed(m); /* the PAM registers may differ */
    aero_set_intr(m, m->pc->pic.chip[0].output);
    aero_pc_reschedule(m);
    return 0;
}
