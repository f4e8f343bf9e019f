/* aero core: port I/O dispatch.
 *
 * The debug console (0xE9) and the debug-exit port (0xF4) follow QEMU's isa-debugcon and
 * isa-debug-exit, so one guest binary runs unchanged under aero and qemu-system-i386.
 * Unclaimed ports read as all ones and ignore writes, as on an ISA bus.
 */
#include "cpu.h"

#define PORT_DEBUGCON 0xE9
#define PORT_DEBUG_EXIT 0xF4

void aero_io_check(aero_machine *m, uint16_t port, int size) {
    (void)port;
    (void)size;
    if (!(m->cpu.cr0 & CR0_PE)) return;
    uint32_t iopl = (m->cpu.eflags & F_IOPL) >> 12;
    if (!(m->cpu.eflags & F_VM) && m->cpu.cpl <= iopl) return;
    aero_fault(m, EXC_GP, 0, 1); /* the TSS I/O bitmap is consulted by the system-architecture work */
}

uint32_t aero_io_read(aero_machine *m, uint16_t port, int size) {
    (void)m;
    uint32_t ones = size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    if (port == PORT_DEBUGCON) return 0xE9u | (ones & ~0xFFu); /* debugcon read-back */
    return ones;
}

void aero_io_write(aero_machine *m, uint16_t port, int size, uint32_t val) {
    if (port == PORT_DEBUGCON) {
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
    if (port == PORT_DEBUG_EXIT) {
        uint32_t mask = size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
        m->exit_status = (((int64_t)(val & mask)) << 1) | 1;
        m->stop = AERO_STOP_EXIT;
        m->exit_block = 1;
        return;
    }
}
