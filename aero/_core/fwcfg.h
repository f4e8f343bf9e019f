/* aero core: QEMU's firmware configuration interface, fw_cfg (fwcfg.c). */
#ifndef AERO_FWCFG_H
#define AERO_FWCFG_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

/* The guest-visible state: which item is selected and how far it has been read. Both are 0
 * at power-on (item 0 is the signature). */
typedef struct aero_fwcfg {
    uint32_t offset;  /* next byte of the selected item that port 511h returns */
    uint16_t key;     /* the selected item (a word written to port 510h) */
} aero_fwcfg;

/* A file the host gives the firmware (configuration, like the ROM image: not device state,
 * never serialized). Names are at most 55 characters. */
#define AERO_FWCFG_MAX_FILES 16
typedef struct aero_fwcfg_file {
    char name[56];      /* NUL-terminated */
    uint8_t *data;      /* owned copy */
    uint32_t size;      /* bytes */
} aero_fwcfg_file;
typedef struct aero_fwcfg_files {
    uint32_t count;
    aero_fwcfg_file file[AERO_FWCFG_MAX_FILES];
} aero_fwcfg_files;

void aero_fwcfg_reset(struct aero_machine *m);
/* Ports 510h-511h: a word write to 510h selects an item, a byte read of 510h or 511h returns
 * its next byte (0 past its end); other accesses read all ones and do nothing. */
uint32_t aero_fwcfg_read(struct aero_machine *m, uint16_t port, int size);
void aero_fwcfg_write(struct aero_machine *m, uint16_t port, int size, uint32_t val);
void aero_fwcfg_free(struct aero_machine *m);
void aero_fwcfg_save(const aero_fwcfg *s, struct aero_sbuf *b);
void aero_fwcfg_load(aero_fwcfg *s, struct aero_sbuf *b);

#endif
