/* aero core: the i440FX's PAM shadowing and the PIIX3 PCI-to-ISA bridge (piix.c). */
#ifndef AERO_PIIX_H
#define AERO_PIIX_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

/* The PIIX3 function 0 (00:01.0, 8086:7000): its chipset registers 40h-FFh. They are kept
 * XOR their power-on values, so a bridge nobody programmed serializes as zeros (the
 * fingerprints of guests that never touch it stay what they were before it existed). */
typedef struct aero_piix {
    uint8_t isa_cfg[192];  /* registers 40h-FFh of 00:01.0, XOR piix_isa_defaults */
} aero_piix;

void aero_piix_reset(struct aero_machine *m);
/* Configuration space of bus 0, device 1 (function in bits 10:8 of devfn << 8): size 1, 2 or
 * 4 bytes at reg (within one dword). Absent functions read as all ones. */
uint32_t aero_piix_cfg_read(struct aero_machine *m, uint32_t fn, uint32_t reg, int size);
void aero_piix_cfg_write(struct aero_machine *m, uint32_t fn, uint32_t reg, int size, uint32_t val);
/* The host bridge's PAM registers (59h-5Fh) changed: routes of C0000h-FFFFFh move. */
void aero_pam_changed(struct aero_machine *m);
/* Does an access to phys (C0000h-FFFFFh) reach RAM? write: 0 for reads, 1 for writes. */
int aero_pam_ram(const struct aero_machine *m, uint32_t phys, int write);
void aero_piix_save(const aero_piix *s, struct aero_sbuf *b);
void aero_piix_load(aero_piix *s, struct aero_sbuf *b);

#endif
