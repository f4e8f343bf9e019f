/* aero core: port I/O dispatch.
 *
 * The debug console (0xE9) and the debug-exit port (0xF4) follow QEMU's isa-debugcon and
 * isa-debug-exit, so one guest binary runs unchanged under aero and qemu-system-i386.
 * With the PC platform the port map below dispatches to the device models. Unclaimed ports
 * read as all ones and ignore writes, as on an ISA bus.
 */
#include <stdlib.h>

#include "platform.h"

#define PORT_DEBUGCON 0xE9
#define PORT_DEBUGCON_FW 0x402 /* the port SeaBIOS writes its debug log to (QEMU: isa-debugcon
                                  iobase=0x402); the same console as E9h */
#define PORT_DEBUG_EXIT 0xF4

/* Real mode: always allowed. Protected mode at CPL <= IOPL (not virtual-8086): allowed.
 * Otherwise the I/O permission bitmap of the current 32-bit TSS decides: its offset is the
 * word at TSS offset 66h, and every bit for port..port+size-1 must be clear. The processor
 * reads two bitmap bytes for every check (SDM Vol. 1, "I/O Permission Bit Map": "the
 * processor reads two bytes from the I/O permission bit map for every access to an I/O
 * port ... an extra byte ... must be within the segment limit"), so both must lie within
 * the TSS limit; ports the map does not reach are denied. A 16-bit TSS has no bitmap. The
 * TSS is read as an implicit supervisor access, whatever the CPL. */
void aero_io_check(aero_machine *m, uint16_t port, int size) {
    if (!(m->cpu.cr0 & CR0_PE)) return;
    uint32_t iopl = (m->cpu.eflags & F_IOPL) >> 12;
    if (!(m->cpu.eflags & F_VM) && m->cpu.cpl <= iopl) return;
    const aero_segment *tr = &m->cpu.tr;
    uint32_t type = tr->attr & (SA_S | SA_TYPE);
    if ((type != 0x09 && type != 0x0B) || !(tr->attr & SA_P)) aero_fault(m, EXC_GP, 0, 1);
    if (tr->limit < 0x67) aero_fault(m, EXC_GP, 0, 1);
    uint32_t off = aero_rd_sys(m, tr->base + 0x66, 2) + ((uint32_t)port >> 3);
    if (off + 1 > tr->limit) aero_fault(m, EXC_GP, 0, 1);
    uint32_t bits = aero_rd_sys(m, tr->base + off, 2);
    uint32_t mask = ((1u << size) - 1) << (port & 7);
    if (bits & mask) aero_fault(m, EXC_GP, 0, 1);
}

/* One byte from the PC platform's port map (pc_devices), or FFh where nothing answers. */
/* Ports of the firmware devices, absent on platform revision 0 (api.h). */
static int firmware_port(uint16_t port) {
    return port == 0x510 || port == 0x511 || (port >= 0x1F0 && port <= 0x1F7) ||
           (port >= 0x170 && port <= 0x177) || port == 0x3F6 || port == 0x376 ||
           aero_vga_port(port);
}

static uint8_t pc_read8(aero_machine *m, uint16_t port) {
    switch (port) {
    case 0x20: case 0x21: case 0xA0: case 0xA1: case 0x4D0: case 0x4D1:
        return aero_pic_read(m, port);
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x61:
        return aero_pit_read(m, port);
    case 0x60: case 0x64:
        return aero_kbc_read(m, port);
    case 0x70: case 0x71:
        return aero_rtc_read(m, port);
    case 0x92:
        return aero_port92_read(m);
    case 0x80:
        return m->pc->post_code;
    default:
        break;
    }
    if (m->cfg.platform_rev == 0 && firmware_port(port)) return 0xFF;
    if ((port >= 0x1F0 && port <= 0x1F7) || (port >= 0x170 && port <= 0x177) || port == 0x3F6 ||
        port == 0x376)
        return aero_ide_read8(m, port);
    if (aero_vga_port(port)) return aero_vga_read(m, port);
    if (port >= 0x3F8 && port <= 0x3FF) return aero_uart_read(m, 0, port & 7);
    if (port >= 0x2F8 && port <= 0x2FF) return aero_uart_read(m, 1, port & 7);
    return 0xFF;
}

static int is_post_port(const aero_machine *m, uint16_t port) {
    if (port == 0x80) return 1;
    for (int i = 0; i < 4; i++)
        if (m->cfg.post_ports[i] && m->cfg.post_ports[i] == port) return 1;
    return 0;
}

static void pc_write8(aero_machine *m, uint16_t port, uint8_t val) {
    if (is_post_port(m, port)) {
        aero_post_write(m, val);
        return;
    }
    switch (port) {
    case 0x20: case 0x21: case 0xA0: case 0xA1: case 0x4D0: case 0x4D1:
        aero_pic_write(m, port, val);
        return;
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x61:
        aero_pit_write(m, port, val);
        return;
    case 0x60: case 0x64:
        aero_kbc_write(m, port, val);
        return;
    case 0x70: case 0x71:
        aero_rtc_write(m, port, val);
        return;
    case 0x92:
        aero_port92_write(m, val);
        return;
    case 0xF0: /* the coprocessor error latch: clears IRQ 13, asserts IGNNE# */
        aero_fpu_port_f0(m);
        return;
    default:
        break;
    }
    if (m->cfg.platform_rev == 0 && firmware_port(port)) return;
    if ((port >= 0x1F0 && port <= 0x1F7) || (port >= 0x170 && port <= 0x177) || port == 0x3F6 ||
        port == 0x376)
        aero_ide_write8(m, port, val);
    else if (aero_vga_port(port)) aero_vga_write(m, port, val);
    else if (port >= 0x3F8 && port <= 0x3FF) aero_uart_write(m, 0, port & 7, val);
    else if (port >= 0x2F8 && port <= 0x2FF) aero_uart_write(m, 1, port & 7, val);
}

/* Wider accesses reach consecutive byte ports, low byte first, as on the ISA bus; the PCI
 * configuration ports, fw_cfg's (510h-511h) and the IDE data port (1F0h) take 16- and 32-bit
 * accesses whole. */
static uint32_t pc_read(aero_machine *m, uint16_t port, int size) {
    uint32_t v;
    if (m->cfg.platform_rev == 0 && firmware_port(port)) {
        v = size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
    } else if (port >= 0xCF8 && port <= 0xCFF) {
        v = aero_pci_read(m, port, size);
    } else if (port == 0x510 || port == 0x511) {
        v = aero_fwcfg_read(m, port, size);
    } else if (port == 0x1F0 && size > 1) {
        v = aero_ide_data_read(m, size);
    } else {
        v = 0;
        for (int i = 0; i < size; i++) v |= (uint32_t)pc_read8(m, (uint16_t)(port + i)) << (8 * i);
    }
    aero_pc_reschedule(m);
    return v;
}

static void pc_write(aero_machine *m, uint16_t port, int size, uint32_t val) {
    if (m->cfg.platform_rev == 0 && firmware_port(port)) {
        return;
    } else if (port >= 0xCF8 && port <= 0xCFF) {
        aero_pci_write(m, port, size, val);
    } else if (port == 0x510 || port == 0x511) {
        aero_fwcfg_write(m, port, size, val);
    } else if (port == 0x1F0 && size > 1) {
        aero_ide_data_write(m, size, val);
    } else {
        for (int i = 0; i < size; i++) pc_write8(m, (uint16_t)(port + i), (uint8_t)(val >> (8 * i)));
    }
    aero_pc_reschedule(m);
}

int aero_port_log_enable(aero_machine *m, int enable) {
    free(m->port_log);
    m->port_log = NULL;
    if (!enable) return 0;
    m->port_log = calloc(0x10000, sizeof *m->port_log);
    return m->port_log ? 0 : -1;
}

const aero_port_stat *aero_port_log(aero_machine *m) { return m->port_log; }

static void port_log(aero_machine *m, uint16_t port, int size, uint32_t val, int write) {
    aero_port_stat *s = &m->port_log[port];
    if (!s->last_size) s->first_tick = aero_now(m);
    if (write) s->writes++;
    else s->reads++;
    s->last_value = val;
    s->last_size = (uint32_t)size;
}

static uint32_t io_read(aero_machine *m, uint16_t port, int size) {
    uint32_t ones = size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    if ((port == PORT_DEBUGCON || (port == PORT_DEBUGCON_FW && m->cfg.platform_rev)) &&
        m->cfg.debug_ports)
        return 0xE9u | (ones & ~0xFFu); /* debugcon read-back */
    if (m->pc) return pc_read(m, port, size);
    return ones;
}

uint32_t aero_io_read(aero_machine *m, uint16_t port, int size) {
    uint32_t v = io_read(m, port, size);
    if (AERO_UNLIKELY(m->watch_io)) aero_watch_port(m, port, size, v, AERO_WATCH_READ);
    if (m->port_log) port_log(m, port, size, v, 0);
    return v;
}

void aero_io_write(aero_machine *m, uint16_t port, int size, uint32_t val) {
    if (AERO_UNLIKELY(m->watch_io)) aero_watch_port(m, port, size, val, AERO_WATCH_WRITE);
    if (m->port_log) port_log(m, port, size, val, 1);
    if ((port == PORT_DEBUGCON || (port == PORT_DEBUGCON_FW && m->cfg.platform_rev)) &&
        m->cfg.debug_ports) {
        /* Only the low byte goes out: QEMU's debugcon is a one-byte port, and the bytes
         * above it land on the next ports. The run stops before the buffer is full. */
        m->out[m->out_len++] = (uint8_t)val;
        aero_log_output(m, AERO_CH_DEBUGCON, (uint8_t)val);
        if (m->out_len >= AERO_OUTPUT_CAP - 1) {
            m->stop = AERO_STOP_OUTPUT;
            m->exit_block = 1;
        }
        return;
    }
    if (port == PORT_DEBUG_EXIT && m->cfg.debug_ports) {
        uint32_t mask = size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
        m->exit_status = (((int64_t)(val & mask)) << 1) | 1;
        aero_log_event(m, AERO_EV_EXIT, 0, (uint64_t)m->exit_status);
        m->stop = AERO_STOP_EXIT;
        m->exit_block = 1;
        return;
    }
    if (m->pc) pc_write(m, port, size, val);
}
