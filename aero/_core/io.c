/* aero core: port I/O dispatch.
 *
 * The debug console (0xE9) and the debug-exit port (0xF4) follow QEMU's isa-debugcon and
 * isa-debug-exit, so one guest binary runs unchanged under aero and qemu-system-i386.
 * Unclaimed ports read as all ones and ignore writes, as on an ISA bus.
 */
#include "cpu.h"

#define PORT_DEBUGCON 0xE9
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

uint32_t aero_io_read(aero_machine *m, uint16_t port, int size) {
    (void)m;
    uint32_t ones = size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    if (port == PORT_DEBUGCON && m->cfg.debug_ports) return 0xE9u | (ones & ~0xFFu); /* debugcon read-back */
    return ones;
}

void aero_io_write(aero_machine *m, uint16_t port, int size, uint32_t val) {
    if (port == PORT_DEBUGCON && m->cfg.debug_ports) {
        /* Only the low byte goes out: QEMU's debugcon is a one-byte port, and the bytes
         * above it land on the next ports. The run stops before the buffer is full. */
        (void)size;
        m->out[m->out_len++] = (uint8_t)val;
        if (m->out_len >= AERO_OUTPUT_CAP - 1) {
            m->stop = AERO_STOP_OUTPUT;
            m->exit_block = 1;
        }
        return;
    }
    if (port == PORT_DEBUG_EXIT && m->cfg.debug_ports) {
        uint32_t mask = size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
        m->exit_status = (((int64_t)(val & mask)) << 1) | 1;
        m->stop = AERO_STOP_EXIT;
        m->exit_block = 1;
        return;
    }
}
