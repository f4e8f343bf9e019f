/* aero core: the PIIX3 IDE controller (00:01.1) and an ATA hard disk (ide.c). */
#ifndef AERO_IDE_H
#define AERO_IDE_H

#include <stdint.h>

struct aero_machine;
struct aero_sbuf;

/* One channel's task-file registers and PIO transfer state. Serialized XOR the power-on
 * values (status 50h, error 01h, sector count and number 01h), so a channel nobody touched
 * adds only zeros to the device state. */
typedef struct aero_ide_channel {
    uint8_t feature;     /* features register (1F1h written) */
    uint8_t error;       /* error register (1F1h read) */
    uint8_t nsector;     /* sector count (1F2h) */
    uint8_t sector;      /* sector number / LBA 7:0 (1F3h) */
    uint8_t lcyl;        /* cylinder low / LBA 15:8 (1F4h) */
    uint8_t hcyl;        /* cylinder high / LBA 23:16 (1F5h) */
    uint8_t select;      /* drive/head (1F6h): bit 4 drive, bit 6 LBA, bits 3:0 head / LBA 27:24 */
    uint8_t status;      /* status (1F7h read): BSY 80h, DRDY 40h, DF 20h, DSC 10h, DRQ 08h, ERR 01h */
    uint8_t control;     /* device control (3F6h written): bit 1 nIEN, bit 2 SRST */
    uint8_t irq_pending; /* INTRQ: 1 from a command's completion until status is read or a command is written */
    uint8_t irq_level;   /* the IRQ line as last driven (INTRQ and not nIEN) */
    uint8_t xfer;        /* PIO transfer in progress: 0 none, 1 to the host (read), 2 from it (write) */
    uint16_t pos;        /* next byte of buf the data port moves */
    uint16_t left;       /* sectors left in the transfer, this one included */
    uint32_t lba;        /* the sector in buf */
    uint8_t cmd;         /* the command of the transfer in progress */
    uint8_t heads;       /* logical geometry set by INITIALIZE DEVICE PARAMETERS (0: default) */
    uint8_t spt;         /* sectors per track of that geometry (0: default) */
    uint8_t buf[512];    /* the sector being transferred (or IDENTIFY data) */
} aero_ide_channel;

typedef struct aero_ide {
    aero_ide_channel ch;      /* the primary channel (1F0h-1F7h, 3F6h, IRQ 14); the secondary
                                 (170h-177h, 376h) has no drives and keeps no state */
    uint8_t pci_cmd;          /* PCI command register bits 0-2 (power-on 0) */
    uint32_t bmiba;           /* bus-master base (BAR4, 20h) bits 31:4 as written (bit 0, I/O
                                 space, reads 1; 16 bytes, not decoded) */
    uint8_t cfg40[16];        /* registers 40h-4Fh (IDETIM, SIDETIM), stored */
    uint8_t unmodelled[32];   /* bit per ATA command opcode that was answered with ABRT
                                 because it is not modelled (each is reported once) */
} aero_ide;

/* The disk: the base image (configuration like the ROM image, copied in at attach time and
 * never written) and, for a writable disk, the copy-on-write overlay, which is machine state
 * (snapshots carry it, fingerprints cover it). The overlay is kept in blocks of 4096 bytes
 * (8 sectors): a sector's first write copies its block from the base. Without `writable`,
 * WRITE SECTORS fails with ABRT, as on a write-protected drive. */
#define AERO_DISK_BLOCK 4096
typedef struct aero_disk {
    uint8_t *data;        /* the base image, size bytes (never written) */
    uint64_t size;        /* a multiple of 512 */
    uint8_t writable;     /* configuration: writes go to the overlay (1) or are refused (0) */
    uint32_t blocks;      /* overlay blocks covering the image: ceil(size / 4096) */
    uint32_t used;        /* blocks present in the overlay */
    uint8_t **overlay;    /* per block: NULL (read the base) or its 4096 written bytes; the
                             part of the last block past the image's end stays zero */
    uint64_t *block_hash; /* per overlaid block: XXH64 of it, seed AERO_DISK_HASH_SEED | block */
    uint8_t *block_dirty; /* per block: written since its hash was taken */
} aero_disk;
#define AERO_DISK_HASH_SEED 0x4449534B00000000ull /* "DISK": overlay block hashes */

void aero_ide_reset(struct aero_machine *m);
uint8_t aero_ide_read8(struct aero_machine *m, uint16_t port);
void aero_ide_write8(struct aero_machine *m, uint16_t port, uint8_t val);
/* The primary data port (1F0h) moves 16 or 32 bits at a time (8: one word, its low byte). */
uint32_t aero_ide_data_read(struct aero_machine *m, int size);
void aero_ide_data_write(struct aero_machine *m, int size, uint32_t val);
uint32_t aero_ide_cfg_read(struct aero_machine *m, uint32_t reg, int size);
void aero_ide_cfg_write(struct aero_machine *m, uint32_t reg, int size, uint32_t val);
void aero_ide_free(struct aero_machine *m);
void aero_ide_save(const aero_ide *s, struct aero_sbuf *b);
void aero_ide_load(aero_ide *s, struct aero_sbuf *b);
/* The overlay in snapshots: bytes it takes (0 for a read-only or absent disk), writing it,
 * checking a serialized one (0 valid) and replacing the overlay with a checked one. */
uint64_t aero_disk_overlay_bytes(struct aero_machine *m);
void aero_disk_overlay_save(struct aero_machine *m, uint8_t *out);
int aero_disk_overlay_check(struct aero_machine *m, const uint8_t *in, uint64_t len);
int aero_disk_overlay_load(struct aero_machine *m, const uint8_t *in);
/* Fold the overlay (block numbers and content hashes) into a fingerprint (unchanged while
 * the overlay is empty, so a writable disk nobody wrote hashes as a read-only one). */
uint64_t aero_disk_overlay_fold(struct aero_machine *m, uint64_t h);

#endif
