/* aero core: the PC platform — what every device model sees of the machine.
 *
 * A device is one C file with one state struct (its header) and these entry points:
 *   aero_X_reset(m)                 power-on state
 *   aero_X_read(m, port) / write    port I/O, one byte at a time (wider accesses are split)
 *   aero_X_timer(m)                 called when the guest clock reaches the device's deadline
 *   aero_X_save(state, buf) / load  canonical serialization (snapshots, fingerprints)
 * Devices keep no pointers and read no host state: they see the guest clock (aero_now),
 * raise IRQ lines through the PIC, and log what they do through aero_log_event.
 *
 * Deadlines: a timed device keeps `deadline`, the tick at which aero_X_timer must run
 * (AERO_NEVER when none). After any device entry point the platform recomputes the earliest
 * deadline and, if the CPU is running, shortens the slice so the run loop stops exactly there.
 */
#ifndef AERO_PLATFORM_H
#define AERO_PLATFORM_H

#include "cpu.h"

#define AERO_NEVER UINT64_MAX

/* ---- canonical serialization ----
 * Little-endian, field by field, independent of the struct layout. A read past the end or a
 * write past the capacity sets err instead of touching memory. */
typedef struct aero_sbuf {
    uint8_t *p;          /* next byte (reading: cast from const, never written through) */
    const uint8_t *end;  /* one past the last byte */
    int err;             /* 1: overflow, the contents are invalid */
} aero_sbuf;

AERO_INLINE void aero_put(aero_sbuf *b, uint64_t v, int bytes) {
    if (b->err || b->end - b->p < bytes) { b->err = 1; return; }
    for (int i = 0; i < bytes; i++) *b->p++ = (uint8_t)(v >> (8 * i));
}
AERO_INLINE uint64_t aero_get(aero_sbuf *b, int bytes) {
    if (b->err || b->end - b->p < bytes) { b->err = 1; return 0; }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)*b->p++ << (8 * i);
    return v;
}
#define aero_put8(b, v) aero_put((b), (uint8_t)(v), 1)
#define aero_put16(b, v) aero_put((b), (uint16_t)(v), 2)
#define aero_put32(b, v) aero_put((b), (uint32_t)(v), 4)
#define aero_put64(b, v) aero_put((b), (uint64_t)(v), 8)
#define aero_get8(b) ((uint8_t)aero_get((b), 1))
#define aero_get16(b) ((uint16_t)aero_get((b), 2))
#define aero_get32(b) ((uint32_t)aero_get((b), 4))
#define aero_get64(b) aero_get((b), 8)
/* Byte arrays. */
AERO_INLINE void aero_put_bytes(aero_sbuf *b, const uint8_t *src, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) aero_put8(b, src[i]);
}
AERO_INLINE void aero_get_bytes(aero_sbuf *b, uint8_t *dst, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) dst[i] = aero_get8(b);
}

/* ---- device clocks ----
 * A device running at hz cycles per guest second: the number of its cycles completed by
 * guest tick t, and the first tick by which c cycles have completed. Exact integer math
 * (128-bit intermediate), so both directions agree: clock_at(tick_of(c)) >= c. */
AERO_INLINE uint64_t aero_clock_at(const aero_machine *m, uint64_t tick, uint64_t hz) {
    return (uint64_t)(((unsigned __int128)tick * hz) / m->cfg.tick_hz);
}
AERO_INLINE uint64_t aero_tick_of(const aero_machine *m, uint64_t cycles, uint64_t hz) {
    unsigned __int128 t = ((unsigned __int128)cycles * m->cfg.tick_hz + hz - 1) / hz;
    return t > (unsigned __int128)(AERO_NEVER - 1) ? AERO_NEVER - 1 : (uint64_t)t;
}

/* ---- the event log ---- (kinds in api.h, AERO_EV_*) */
void aero_log_event(aero_machine *m, uint32_t kind, uint32_t a, uint64_t b);
/* A guest output byte on channel ch (AERO_CH_*). */
void aero_log_output(aero_machine *m, uint32_t ch, uint8_t byte);

/* ---- the devices ---- */
#include "kbc.h"
#include "pic.h"
#include "pit.h"
#include "rtc.h"
#include "uart.h"
#include "piix.h"
#include "fwcfg.h"
#include "ide.h"
#include "vga.h"

/* Device ids: AERO_EV_TIMER's argument. */
#define AERO_DEV_PIT 1
#define AERO_DEV_UART0 2
#define AERO_DEV_UART1 3
#define AERO_DEV_RTC 4
#define AERO_DEV_KBC 5

#define AERO_PCI_HOST_ID 0x12378086u /* 8086:1237, the i440FX host bridge QEMU's pc has */

/* The platform: every device's state. Owned by aero_machine (m->pc). */
typedef struct aero_pc {
    aero_pic pic;          /* the cascaded 8259A pair */
    aero_pit pit;          /* the 8254 and the port-61h gate/speaker bits */
    aero_uart uart[2];     /* COM1 (3F8h, IRQ 4) and COM2 (2F8h, IRQ 3) */
    aero_rtc rtc;          /* the MC146818 and its NVRAM */
    aero_kbc kbc;          /* the 8042 and its PS/2 keyboard */
    uint8_t port92;        /* system control port A: bit 1 = A20 (bit 0, reset, reads 0) */
    uint8_t a20_kbc;       /* A20 as the 8042's output port drives it (bit 1) */
    uint8_t post_code;     /* last byte written to a POST port */
    uint32_t pci_addr;     /* CONFIG_ADDRESS (CF8h) of configuration mechanism #1 */
    uint8_t pci_cfg[256];  /* the host bridge's configuration space (bus 0, device 0) */
    aero_piix piix;        /* the PIIX3 PCI-to-ISA bridge (00:01.0) */
    aero_fwcfg fwcfg;      /* QEMU's fw_cfg selector and read offset */
    aero_fwcfg_files *fw_files; /* configuration, not state: files the host gave fw_cfg
                                   (NULL: none); never serialized, kept across resets */
    aero_ide ide;          /* the PIIX3 IDE function (00:01.1) and its primary channel */
    aero_disk *disk;       /* configuration, not state: the primary master's image (NULL: none) */
    aero_vga vga;          /* the VGA's registers (its text frame buffer is RAM at B8000h) */
} aero_pc;

/* Platform services for devices. */
void aero_pc_set_a20(aero_machine *m, int enabled);
/* A reset the guest asked for (8042 command FEh, port 92h bit 0): cause = AERO_RESET_*. */
void aero_pc_reset_request(aero_machine *m, uint32_t cause);
/* Recompute the earliest device deadline and shorten a running slice to it. */
void aero_pc_reschedule(aero_machine *m);

/* For the machine (machine.c, io.c). */
int aero_pc_init(aero_machine *m);
void aero_pc_free(aero_machine *m);
void aero_pc_reset_devices(aero_machine *m);
void aero_pc_fire_timers(aero_machine *m);
void aero_pc_do_reset(aero_machine *m, uint32_t cause);
uint8_t aero_port92_read(aero_machine *m);
void aero_port92_write(aero_machine *m, uint8_t val);
void aero_post_write(aero_machine *m, uint8_t val);
uint32_t aero_pci_read(aero_machine *m, uint16_t port, int size);
void aero_pci_write(aero_machine *m, uint16_t port, int size, uint32_t val);

#endif
