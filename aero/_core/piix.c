/* aero core: the i440FX's PAM registers (shadow RAM below 1 MB) and the PIIX3 PCI-to-ISA
 * bridge (Intel 82371SB datasheet; Intel 82441FX datasheet, "PAM[6:0]"; QEMU's
 * hw/pci-host/i440fx.c and hw/isa/piix3.c for what SeaBIOS expects of them).
 *
 * PAM: host-bridge registers 59h-5Fh hold a 2-bit attribute per region (bit 0 or 4 read
 * enable, bit 1 or 5 write enable): 59h bits 5:4 for F0000h-FFFFFh (bits 3:0 reserved), 5Ah
 * to 5Fh two 16 KB regions each from C0000h (low nibble the lower region). An access whose
 * enable bit is set reaches RAM; one whose bit is clear goes to the PCI/ISA side, which on
 * this machine is the BIOS ROM's alias (its last 128 KB below 1 MB): reads see the ROM,
 * writes are dropped. Where no ROM lies behind an address (no ROM loaded, or below the
 * alias), RAM answers whatever PAM says: the machine without firmware keeps its flat RAM,
 * and C0000h-DFFFFh behaves as QEMU's RAM-backed pc.rom area does when it holds no option
 * ROM. SeaBIOS sets 59h to 30h and the rest to 33h, copies itself from the 4 GB alias into
 * the shadow RAM, and write-protects it (10h, 11h) before booting.
 *
 * A PAM write drops every TLB entry and every decoded block: the same physical address may
 * now read other bytes. The routing itself is looked up on the memory slow path only
 * (mem.c asks aero_pam_ram), and a page whose read and write routes differ is never
 * write-mapped.
 *
 * PIIX3 function 0 (00:01.0): identification (8086:7000, class 0601h, multi-function
 * header), registers 40h-FFh stored as written (PIRQ route control 60h-63h, power-on 80h:
 * disabled; top of memory 69h; the APIC base 80h; SMI registers A0h-AFh) with QEMU's
 * power-on values. Modelled effects: none are needed by the devices present (the IDE
 * function uses IRQ 14/15 directly; there are no PCI INTx sources), so PIRQ routing is
 * storage. The ELCR (4D0h/4D1h) is part of the 8259A model (pic.c). Other functions of
 * device 1 read as absent, except the IDE function 1 (ide.c).
 */
#include "platform.h"

#define PAM0 0x59

/* QEMU's piix3_reset values for 40h-FFh (all others 0). */
static uint8_t isa_default(uint32_t reg) {
    switch (reg) {
    case 0x4C: return 0x4D;
    case 0x4E: return 0x03;
    case 0x60: case 0x61: case 0x62: case 0x63: return 0x80;
    case 0x69: return 0x02;
    case 0x70: return 0x80;
    case 0x76: case 0x77: return 0x0C;
    case 0x78: return 0x02;
    case 0xA0: return 0x08;
    case 0xA8: return 0x0F;
    default: return 0;
    }
}

void aero_piix_reset(aero_machine *m) { memset(&m->pc->piix, 0, sizeof m->pc->piix); }

/* Function 0's header: 8086:7000, command 0007h, status 0200h, class 0601h, header 80h. */
static uint8_t isa_read8(const aero_machine *m, uint32_t reg) {
    static const uint8_t hdr[16] = {0x86, 0x80, 0x00, 0x70, 0x07, 0x00, 0x00, 0x02,
                                    0x00, 0x00, 0x01, 0x06, 0x00, 0x00, 0x80, 0x00};
    if (reg < 16) return hdr[reg];
    if (reg < 0x40) return 0;
    return m->pc->piix.isa_cfg[reg - 0x40] ^ isa_default(reg);
}

uint32_t aero_piix_cfg_read(aero_machine *m, uint32_t fn, uint32_t reg, int size) {
    uint32_t v = 0;
    if (fn == 1) return aero_ide_cfg_read(m, reg, size);
    if (fn != 0) return size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
    for (int i = 0; i < size; i++) v |= (uint32_t)isa_read8(m, (reg + (uint32_t)i) & 0xFF) << (8 * i);
    return v;
}

void aero_piix_cfg_write(aero_machine *m, uint32_t fn, uint32_t reg, int size, uint32_t val) {
    if (fn == 1) {
        aero_ide_cfg_write(m, reg, size, val);
        return;
    }
    if (fn != 0) return;
    for (int i = 0; i < size; i++) {
        uint32_t r = (reg + (uint32_t)i) & 0xFF;
        if (r >= 0x40) m->pc->piix.isa_cfg[r - 0x40] = (uint8_t)(val >> (8 * i)) ^ isa_default(r);
    }
}

void aero_pam_changed(aero_machine *m) {
    aero_tlb_flush_all(m);
    aero_blocks_flush(m);
    m->exit_block = 1;
}

int aero_pam_ram(const aero_machine *m, uint32_t phys, int write) {
    if (!m->pc || phys < 0xC0000u || phys >= 0x100000u) return 1;
    if (m->cfg.platform_rev == 0) return 0; /* no PAM routing: the ROM's alias (api.h) */
    uint8_t attr;
    if (phys >= 0xF0000u) attr = m->pc->pci_cfg[PAM0] >> 4;
    else {
        uint32_t region = (phys - 0xC0000u) >> 14; /* 16 KB regions, 0-11 */
        attr = m->pc->pci_cfg[PAM0 + 1 + (region >> 1)] >> (4 * (region & 1));
    }
    return (attr >> (write ? 1 : 0)) & 1;
}

void aero_piix_save(const aero_piix *s, aero_sbuf *b) { aero_put_bytes(b, s->isa_cfg, sizeof s->isa_cfg); }

void aero_piix_load(aero_piix *s, aero_sbuf *b) { aero_get_bytes(b, s->isa_cfg, sizeof s->isa_cfg); }
