/* aero core: the PIIX3 IDE controller (function 00:01.1, 8086:7010) in compatibility mode and
 * one ATA hard disk, PIO only (ATA/ATAPI-6, T13/1410D: the task file, the PIO data-in and
 * non-data protocols; QEMU's hw/ide/core.c for what firmware and drivers expect).
 *
 * Ports: the primary channel at 1F0h-1F7h with its control block at 3F6h, IRQ 14; the
 * secondary (170h-177h, 376h, IRQ 15) has no drives and reads 0 everywhere, as QEMU's
 * empty channel does (so firmware sees "no device" at once instead of a floating bus). On
 * the primary the master is the disk when one is attached (`aero_disk_attach`); the slave
 * is absent: with it selected every register reads 0. Without a disk the primary is empty too.
 *
 * Every command completes at once (there is no seek or transfer time, and no timer): a
 * read's first sector is ready with DRQ set and INTRQ raised when the command is written;
 * each later sector raises INTRQ as the host finishes the previous one. Reading the status
 * register (1F7h, not the alternate status at 3F6h) or writing a command clears INTRQ; IRQ
 * 14 follows INTRQ unless nIEN (3F6h bit 1) is set. SRST (3F6h bit 2) resets the drive: the
 * ATA signature (sector count 1, sector 1, cylinder 0), error 01h (diagnostics passed).
 *
 * Commands: IDENTIFY DEVICE (ECh); READ SECTORS (20h, 21h) and READ VERIFY SECTORS (40h,
 * 41h) in LBA28 or CHS (the geometry of INITIALIZE DEVICE PARAMETERS, 91h, default 16 heads
 * of 63 sectors); SET FEATURES (EFh: transfer mode, write cache, look-ahead, reverting to
 * defaults — accepted, nothing changes); WRITE SECTORS (30h, 31h) by the PIO data-out
 * protocol on a writable disk (DRQ without INTRQ for the first sector; after each sector
 * the drive writes it to the overlay and raises INTRQ, with DRQ again until the last), and
 * with ABRT on a read-only one; IDENTIFY PACKET DEVICE (A1h) is aborted, as the standard
 * has an ATA device do. A sector outside the disk ends a command with IDNF. Any other
 * command is answered with ABRT (error 04h), as a drive answers a command it lacks, and
 * its opcode is remembered in `unmodelled` (part of the state, so a replay sees the same):
 * the host reports each one once. Not modelled: LBA48 (the EXT commands), READ/WRITE
 * MULTIPLE, DMA (the bus-master registers behind BAR4 are not decoded), ATAPI, power
 * management, the 3F7h drive address register (it belongs to the floppy controller).
 */
#include <stdlib.h>

#include "platform.h"

#define ST_BSY 0x80
#define ST_DRDY 0x40
#define ST_DSC 0x10
#define ST_DRQ 0x08
#define ST_ERR 0x01
#define ERR_ABRT 0x04
#define ERR_IDNF 0x10
#define CTL_NIEN 0x02
#define CTL_SRST 0x04
#define SEL_DRV 0x10
#define SEL_LBA 0x40

#define DEFAULT_HEADS 16
#define DEFAULT_SPT 63

static void power_on(aero_ide_channel *c) {
    memset(c, 0, sizeof *c);
    c->status = ST_DRDY | ST_DSC;
    c->error = 0x01;
    c->nsector = 1;
    c->sector = 1;
}

void aero_ide_reset(aero_machine *m) {
    aero_ide *s = &m->pc->ide;
    memset(s, 0, sizeof *s);
    power_on(&s->ch);
}

/* Is the selected drive of the primary channel the disk? */
static int present(const aero_machine *m) {
    return m->pc->disk && !(m->pc->ide.ch.select & SEL_DRV);
}

static uint64_t total_sectors(const aero_machine *m) {
    uint64_t n = m->pc->disk->size / 512;
    return n > 0x0FFFFFFFu ? 0x0FFFFFFFu : n;
}

static void update_irq(aero_machine *m) {
    aero_ide_channel *c = &m->pc->ide.ch;
    uint8_t level = c->irq_pending && !(c->control & CTL_NIEN);
    if (level != c->irq_level) {
        c->irq_level = level;
        aero_pic_set_irq(m, 14, level);
    }
}

static void raise_irq(aero_machine *m) {
    m->pc->ide.ch.irq_pending = 1;
    update_irq(m);
}

static void fail(aero_machine *m, uint8_t err) {
    aero_ide_channel *c = &m->pc->ide.ch;
    c->xfer = 0;
    c->error = err;
    c->status = ST_DRDY | ST_DSC | ST_ERR;
    raise_irq(m);
}

static void done(aero_machine *m) {
    aero_ide_channel *c = &m->pc->ide.ch;
    c->xfer = 0;
    c->status = ST_DRDY | ST_DSC;
    raise_irq(m);
}

/* The sector address in the task file (LBA28 or CHS), or -1 for an impossible CHS one. */
static int64_t task_lba(const aero_ide_channel *c) {
    if (c->select & SEL_LBA)
        return (int64_t)(((uint32_t)(c->select & 0x0F) << 24) | ((uint32_t)c->hcyl << 16) |
                         ((uint32_t)c->lcyl << 8) | c->sector);
    uint32_t heads = c->heads ? c->heads : DEFAULT_HEADS, spt = c->spt ? c->spt : DEFAULT_SPT;
    uint32_t cyl = ((uint32_t)c->hcyl << 8) | c->lcyl, head = c->select & 0x0F;
    if (c->sector == 0 || c->sector > spt || head >= heads) return -1;
    return ((int64_t)cyl * heads + head) * spt + (c->sector - 1);
}

/* Write an address back into the task file (after each sector, as a drive does). */
static void set_task_lba(aero_ide_channel *c, uint32_t lba) {
    if (c->select & SEL_LBA) {
        c->sector = (uint8_t)lba;
        c->lcyl = (uint8_t)(lba >> 8);
        c->hcyl = (uint8_t)(lba >> 16);
        c->select = (uint8_t)((c->select & 0xF0) | ((lba >> 24) & 0x0F));
        return;
    }
    uint32_t heads = c->heads ? c->heads : DEFAULT_HEADS, spt = c->spt ? c->spt : DEFAULT_SPT;
    uint32_t cyl = lba / (heads * spt), rem = lba % (heads * spt);
    c->lcyl = (uint8_t)cyl;
    c->hcyl = (uint8_t)(cyl >> 8);
    c->select = (uint8_t)((c->select & 0xF0) | (rem / spt));
    c->sector = (uint8_t)(rem % spt + 1);
}

static void put_word(uint8_t *buf, int word, uint16_t v) {
    buf[2 * word] = (uint8_t)v;
    buf[2 * word + 1] = (uint8_t)(v >> 8);
}

/* An ATA string: two characters per word, the first in the high byte, space-padded. */
static void put_string(uint8_t *buf, int word, int words, const char *s) {
    size_t n = strlen(s);
    for (int i = 0; i < 2 * words; i++) {
        uint8_t ch = (size_t)i < n ? (uint8_t)s[i] : ' ';
        buf[2 * word + (i ^ 1)] = ch;
    }
}

static void identify(aero_machine *m) {
    aero_ide_channel *c = &m->pc->ide.ch;
    uint8_t *b = c->buf;
    uint64_t n = total_sectors(m);
    uint32_t cyls = (uint32_t)(n / (DEFAULT_HEADS * DEFAULT_SPT));
    if (cyls > 16383) cyls = 16383;
    if (cyls == 0) cyls = 1; /* a disk smaller than one cylinder still has one */
    uint32_t heads = c->heads ? c->heads : DEFAULT_HEADS, spt = c->spt ? c->spt : DEFAULT_SPT;
    uint32_t ccyls = (uint32_t)(n / (heads * spt));
    if (ccyls > 65535) ccyls = 65535;
    if (ccyls == 0) ccyls = 1;
    uint32_t cchs = ccyls * heads * spt;
    memset(b, 0, 512);
    put_word(b, 0, 0x0040);   /* fixed device */
    put_word(b, 1, (uint16_t)cyls);
    put_word(b, 3, DEFAULT_HEADS);
    put_word(b, 6, DEFAULT_SPT);
    put_string(b, 10, 10, "AERO00000001");
    put_string(b, 23, 4, "1.0");
    put_string(b, 27, 20, "AERO HARDDISK");
    put_word(b, 49, 0x0200);  /* LBA supported (no DMA) */
    put_word(b, 51, 0x0200);  /* PIO timing mode 2 */
    put_word(b, 53, 0x0003);  /* words 54-58 and 64-70 are valid */
    put_word(b, 54, (uint16_t)ccyls);
    put_word(b, 55, (uint16_t)heads);
    put_word(b, 56, (uint16_t)spt);
    put_word(b, 57, (uint16_t)cchs);
    put_word(b, 58, (uint16_t)(cchs >> 16));
    put_word(b, 60, (uint16_t)n);
    put_word(b, 61, (uint16_t)(n >> 16));
    put_word(b, 64, 0x0003);  /* PIO modes 3 and 4 */
    put_word(b, 65, 120);
    put_word(b, 66, 120);
    put_word(b, 67, 120);
    put_word(b, 68, 120);
    put_word(b, 80, 0x007E);  /* ATA-1 to ATA-6 */
    put_word(b, 83, 0x4000);
    put_word(b, 84, 0x4000);
    put_word(b, 87, 0x4000);
    c->xfer = 1;
    c->left = 1;
    c->pos = 0;
    c->cmd = 0xEC;
    c->status = ST_DRDY | ST_DSC | ST_DRQ;
    raise_irq(m);
}

/* The 512 bytes of sector lba as the guest sees them: the overlay's block, else the base. */
static const uint8_t *sector_data(const aero_disk *d, uint32_t lba) {
    uint32_t blk = lba / (AERO_DISK_BLOCK / 512);
    if (d->overlay && d->overlay[blk])
        return d->overlay[blk] + (uint64_t)(lba % (AERO_DISK_BLOCK / 512)) * 512;
    return d->data + (uint64_t)lba * 512;
}

/* Write sector lba into the overlay (its block copied from the base on first write).
 * Returns 0, or -1 when the block cannot be allocated. */
static int write_sector(aero_disk *d, uint32_t lba, const uint8_t *src) {
    uint32_t blk = lba / (AERO_DISK_BLOCK / 512);
    if (!d->overlay[blk]) {
        uint8_t *b = calloc(1, AERO_DISK_BLOCK);
        if (!b) return -1;
        uint64_t off = (uint64_t)blk * AERO_DISK_BLOCK;
        uint64_t n = d->size - off < AERO_DISK_BLOCK ? d->size - off : AERO_DISK_BLOCK;
        memcpy(b, d->data + off, n);
        d->overlay[blk] = b;
        d->used++;
    }
    memcpy(d->overlay[blk] + (uint64_t)(lba % (AERO_DISK_BLOCK / 512)) * 512, src, 512);
    d->block_dirty[blk] = 1;
    return 0;
}

/* Load sector lba into buf and offer it to the host. */
static void offer_sector(aero_machine *m, uint32_t lba) {
    aero_ide_channel *c = &m->pc->ide.ch;
    if (lba >= total_sectors(m)) { /* only after a restored state that does not fit the disk */
        fail(m, ERR_IDNF);
        return;
    }
    memcpy(c->buf, sector_data(m->pc->disk, lba), 512);
    c->lba = lba;
    c->pos = 0;
    set_task_lba(c, lba);
    c->status = ST_DRDY | ST_DSC | ST_DRQ;
    raise_irq(m);
}

static void command(aero_machine *m, uint8_t cmd) {
    aero_ide_channel *c = &m->pc->ide.ch;
    c->irq_pending = 0;
    update_irq(m);
    if (!present(m)) return; /* no drive answers */
    if (c->status & ST_BSY) return;
    c->error = 0;
    c->xfer = 0;
    switch (cmd) {
    case 0xEC:
        identify(m);
        return;
    case 0x20: case 0x21: case 0x40: case 0x41: {
        uint32_t count = c->nsector ? c->nsector : 256;
        int64_t lba = task_lba(c);
        if (lba < 0 || (uint64_t)lba + count > total_sectors(m)) {
            fail(m, ERR_IDNF);
            return;
        }
        if (cmd >= 0x40) { /* READ VERIFY: check the sectors, move no data */
            set_task_lba(c, (uint32_t)lba + count - 1);
            done(m);
            return;
        }
        c->cmd = cmd;
        c->xfer = 1;
        c->left = (uint16_t)count;
        offer_sector(m, (uint32_t)lba);
        return;
    }
    case 0x30: case 0x31: {
        if (!m->pc->disk->writable) {
            fail(m, ERR_ABRT); /* the disk is read-only */
            return;
        }
        uint32_t count = c->nsector ? c->nsector : 256;
        int64_t lba = task_lba(c);
        if (lba < 0 || (uint64_t)lba + count > total_sectors(m)) {
            fail(m, ERR_IDNF);
            return;
        }
        /* PIO data-out: the first sector is asked for with DRQ and no interrupt. */
        c->cmd = cmd;
        c->xfer = 2;
        c->left = (uint16_t)count;
        c->lba = (uint32_t)lba;
        c->pos = 0;
        set_task_lba(c, (uint32_t)lba);
        c->status = ST_DRDY | ST_DSC | ST_DRQ;
        return;
    }
    case 0xA1: /* IDENTIFY PACKET DEVICE: an ATA (non-packet) device aborts it, by the standard */
        fail(m, ERR_ABRT);
        return;
    case 0x91: /* INITIALIZE DEVICE PARAMETERS: the CHS translation */
        c->heads = (uint8_t)((c->select & 0x0F) + 1);
        c->spt = c->nsector;
        if (c->spt == 0) {
            c->heads = c->spt = 0;
            fail(m, ERR_ABRT);
            return;
        }
        done(m);
        return;
    case 0xEF: /* SET FEATURES */
        switch (c->feature) {
        case 0x02: case 0x03: case 0x05: case 0x55: case 0x66: case 0x82: case 0x85:
        case 0xAA: case 0xCC:
            done(m);
            return;
        default:
            fail(m, ERR_ABRT);
            return;
        }
    default:
        m->pc->ide.unmodelled[cmd >> 3] |= (uint8_t)(1u << (cmd & 7));
        fail(m, ERR_ABRT);
        return;
    }
}

/* The host has taken the whole sector in buf. */
static void sector_done(aero_machine *m) {
    aero_ide_channel *c = &m->pc->ide.ch;
    if (--c->left == 0 || c->cmd == 0xEC) {
        c->xfer = 0;
        c->status = ST_DRDY | ST_DSC;
        return;
    }
    offer_sector(m, c->lba + 1);
}

uint32_t aero_ide_data_read(aero_machine *m, int size) {
    aero_ide_channel *c = &m->pc->ide.ch;
    if (!present(m) || c->xfer != 1) return size == 4 ? 0xFFFFFFFFu : size == 2 ? 0xFFFFu : 0xFFu;
    int n = size == 4 ? 4 : 2;
    uint32_t v = 0;
    for (int i = 0; i < n && c->xfer == 1; i++) {
        v |= (uint32_t)c->buf[c->pos++] << (8 * i);
        if (c->pos >= 512) sector_done(m);
    }
    return size == 1 ? (v & 0xFF) : v;
}

/* The host has given the whole sector in buf: write it, then ask for the next one. */
static void sector_written(aero_machine *m) {
    aero_ide_channel *c = &m->pc->ide.ch;
    aero_disk *d = m->pc->disk;
    if (c->lba >= total_sectors(m) || !d->writable) { /* only after a restored state that
                                                         does not fit the disk */
        fail(m, ERR_IDNF);
        return;
    }
    if (write_sector(d, c->lba, c->buf) != 0) {
        fail(m, ERR_ABRT); /* out of host memory: the write is refused, as a failing drive */
        return;
    }
    set_task_lba(c, c->lba);
    c->pos = 0;
    if (--c->left == 0) {
        c->xfer = 0;
        c->status = ST_DRDY | ST_DSC;
    } else {
        c->lba++;
        c->status = ST_DRDY | ST_DSC | ST_DRQ;
    }
    raise_irq(m);
}

void aero_ide_data_write(aero_machine *m, int size, uint32_t val) {
    aero_ide_channel *c = &m->pc->ide.ch;
    if (!present(m) || c->xfer != 2) return;
    int n = size == 4 ? 4 : 2;
    for (int i = 0; i < n && c->xfer == 2; i++) {
        c->buf[c->pos++] = (uint8_t)(val >> (8 * i));
        if (c->pos >= 512) sector_written(m);
    }
}

static void soft_reset(aero_machine *m) {
    aero_ide_channel *c = &m->pc->ide.ch;
    uint8_t control = c->control, heads = c->heads, spt = c->spt, level = c->irq_level;
    power_on(c);
    c->control = control;
    c->heads = heads;
    c->spt = spt;
    c->irq_level = level;
    update_irq(m);
}

uint8_t aero_ide_read8(aero_machine *m, uint16_t port) {
    aero_ide_channel *c = &m->pc->ide.ch;
    if ((port & ~7u) == 0x170 || port == 0x376 || !m->pc->disk) return 0; /* empty channel */
    if (port == 0x3F6) return present(m) ? c->status : 0;
    switch (port & 7) {
    case 0: return (uint8_t)aero_ide_data_read(m, 1);
    case 1: return present(m) ? c->error : 0;
    case 2: return present(m) ? c->nsector : 0;
    case 3: return present(m) ? c->sector : 0;
    case 4: return present(m) ? c->lcyl : 0;
    case 5: return present(m) ? c->hcyl : 0;
    case 6: return c->select;
    default:
        if (!present(m)) return 0;
        c->irq_pending = 0;
        update_irq(m);
        return c->status;
    }
}

void aero_ide_write8(aero_machine *m, uint16_t port, uint8_t val) {
    aero_ide_channel *c = &m->pc->ide.ch;
    if ((port & ~7u) == 0x170 || port == 0x376) return; /* no drives on the secondary */
    if (port == 0x3F6) {
        uint8_t old = c->control;
        c->control = val & (CTL_NIEN | CTL_SRST);
        if (val & CTL_SRST) c->status = ST_BSY;
        else if (old & CTL_SRST) soft_reset(m);
        update_irq(m);
        return;
    }
    switch (port & 7) {
    case 0: aero_ide_data_write(m, 1, val); return;
    case 1: c->feature = val; return;
    case 2: c->nsector = val; return;
    case 3: c->sector = val; return;
    case 4: c->lcyl = val; return;
    case 5: c->hcyl = val; return;
    case 6: c->select = val | 0xA0; return; /* bits 7 and 5 read as 1 (obsolete, set) */
    default: command(m, val); return;
    }
}

/* ---- PCI function 00:01.1 ---- */

static uint8_t cfg_read8(const aero_machine *m, uint32_t reg) {
    const aero_ide *s = &m->pc->ide;
    switch (reg) {
    case 0x00: return 0x86;
    case 0x01: return 0x80;
    case 0x02: return 0x10;
    case 0x03: return 0x70; /* 8086:7010 */
    case 0x04: return s->pci_cmd;
    case 0x06: return 0x80;
    case 0x07: return 0x02; /* status: fast back-to-back, medium DEVSEL */
    case 0x09: return 0x80; /* programming interface: bus master, both channels legacy */
    case 0x0A: return 0x01;
    case 0x0B: return 0x01; /* class 0101h: IDE */
    case 0x20: return (uint8_t)(s->bmiba | 1);
    case 0x21: return (uint8_t)(s->bmiba >> 8);
    case 0x22: return (uint8_t)(s->bmiba >> 16);
    case 0x23: return (uint8_t)(s->bmiba >> 24);
    default: break;
    }
    if (reg >= 0x40 && reg < 0x50) return s->cfg40[reg - 0x40];
    return 0;
}

uint32_t aero_ide_cfg_read(aero_machine *m, uint32_t reg, int size) {
    uint32_t v = 0;
    for (int i = 0; i < size; i++) v |= (uint32_t)cfg_read8(m, (reg + (uint32_t)i) & 0xFF) << (8 * i);
    return v;
}

void aero_ide_cfg_write(aero_machine *m, uint32_t reg, int size, uint32_t val) {
    aero_ide *s = &m->pc->ide;
    for (int i = 0; i < size; i++) {
        uint32_t r = (reg + (uint32_t)i) & 0xFF;
        uint8_t v = (uint8_t)(val >> (8 * i));
        if (r == 0x04) s->pci_cmd = v & 0x05; /* I/O space, bus master */
        else if (r >= 0x20 && r < 0x24) { /* 16 bytes of I/O: bits 31:4 */
            uint32_t sh = 8 * (r - 0x20);
            s->bmiba = ((s->bmiba & ~(0xFFu << sh)) | ((uint32_t)v << sh)) & 0xFFFFFFF0u;
        }
        else if (r >= 0x40 && r < 0x50) s->cfg40[r - 0x40] = v;
    }
}

/* ---- the disk ---- */

int aero_disk_attach(aero_machine *m, const uint8_t *data, uint64_t size) {
    if (!m->pc || size == 0 || size % 512 || size > ((uint64_t)1 << 40)) return -1;
    aero_disk *d = calloc(1, sizeof *d);
    uint8_t *copy = malloc(size);
    if (!d || !copy) {
        free(d);
        free(copy);
        return -1;
    }
    memcpy(copy, data, size);
    aero_ide_free(m);
    d->data = copy;
    d->size = size;
    d->blocks = (uint32_t)((size + AERO_DISK_BLOCK - 1) / AERO_DISK_BLOCK);
    m->pc->disk = d;
    /* Boot the disk first, as QEMU's -boot c tells SeaBIOS (CMOS 3Dh = 02h; revision 2 on). */
    if (m->cfg.platform_rev >= 2) aero_rtc_boot_order(m, 2, 0, 0);
    return 0;
}

static void overlay_clear(aero_disk *d) {
    if (!d->overlay) return;
    for (uint32_t i = 0; i < d->blocks; i++) {
        free(d->overlay[i]);
        d->overlay[i] = NULL;
        d->block_dirty[i] = 0;
    }
    d->used = 0;
}

int aero_disk_set_writable(aero_machine *m, int writable) {
    if (!m->pc || !m->pc->disk) return -1;
    aero_disk *d = m->pc->disk;
    if (writable && !d->overlay) {
        d->overlay = calloc(d->blocks, sizeof *d->overlay);
        d->block_hash = calloc(d->blocks, sizeof *d->block_hash);
        d->block_dirty = calloc(d->blocks, 1);
        if (!d->overlay || !d->block_hash || !d->block_dirty) {
            free(d->overlay);
            free(d->block_hash);
            free(d->block_dirty);
            d->overlay = NULL;
            d->block_hash = NULL;
            d->block_dirty = NULL;
            return -1;
        }
    }
    if (!writable) overlay_clear(d);
    d->writable = writable ? 1 : 0;
    return 0;
}

void aero_ide_free(aero_machine *m) {
    if (!m->pc || !m->pc->disk) return;
    aero_disk *d = m->pc->disk;
    overlay_clear(d);
    free(d->overlay);
    free(d->block_hash);
    free(d->block_dirty);
    free(d->data);
    free(d);
    m->pc->disk = NULL;
}

/* ---- the overlay as state ---- */

static aero_disk *rw_disk(aero_machine *m) {
    return m->pc && m->pc->disk && m->pc->disk->writable ? m->pc->disk : NULL;
}

static void rehash(aero_disk *d) {
    for (uint32_t i = 0; i < d->blocks; i++) {
        if (d->overlay[i] && d->block_dirty[i]) {
            d->block_hash[i] = aero_hash64(d->overlay[i], AERO_DISK_BLOCK, AERO_DISK_HASH_SEED | i);
            d->block_dirty[i] = 0;
        }
    }
}

uint32_t aero_disk_overlay_list(aero_machine *m, uint32_t *blocks, uint64_t *hashes, uint32_t cap) {
    aero_disk *d = rw_disk(m);
    if (!d) return 0;
    rehash(d);
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->blocks; i++) {
        if (!d->overlay[i]) continue;
        if (n < cap) {
            blocks[n] = i;
            hashes[n] = d->block_hash[i];
        }
        n++;
    }
    return n;
}

int aero_disk_read(aero_machine *m, uint64_t off, uint8_t *out, uint64_t len) {
    if (!m->pc || !m->pc->disk) return -1;
    aero_disk *d = m->pc->disk;
    if (off > d->size || len > d->size - off) return -1;
    while (len) {
        uint32_t blk = (uint32_t)(off / AERO_DISK_BLOCK);
        uint64_t in = off % AERO_DISK_BLOCK, n = AERO_DISK_BLOCK - in;
        if (n > len) n = len;
        const uint8_t *src = d->overlay && d->overlay[blk] ? d->overlay[blk] + in : d->data + off;
        memcpy(out, src, n);
        out += n;
        off += n;
        len -= n;
    }
    return 0;
}

uint64_t aero_disk_overlay_bytes(aero_machine *m) {
    aero_disk *d = rw_disk(m);
    return d ? 4 + (uint64_t)d->used * (4 + AERO_DISK_BLOCK) : 0;
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void aero_disk_overlay_save(aero_machine *m, uint8_t *out) {
    aero_disk *d = rw_disk(m);
    if (!d) return;
    put_le32(out, d->used);
    uint8_t *idx = out + 4, *data = out + 4 + 4 * (uint64_t)d->used;
    for (uint32_t i = 0; i < d->blocks; i++) {
        if (!d->overlay[i]) continue;
        put_le32(idx, i);
        idx += 4;
        memcpy(data, d->overlay[i], AERO_DISK_BLOCK);
        data += AERO_DISK_BLOCK;
    }
}

int aero_disk_overlay_check(aero_machine *m, const uint8_t *in, uint64_t len) {
    aero_disk *d = rw_disk(m);
    if (!d) return len == 0 ? 0 : -1;
    if (len < 4) return -1;
    uint32_t n = get_le32(in);
    if (n > d->blocks || len != 4 + (uint64_t)n * (4 + AERO_DISK_BLOCK)) return -1;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t b = get_le32(in + 4 + 4 * (uint64_t)j);
        if (b >= d->blocks || (j && b <= get_le32(in + 4 * (uint64_t)j))) return -1;
        if ((uint64_t)b * AERO_DISK_BLOCK + AERO_DISK_BLOCK > d->size) {
            /* the last, partial block: nothing past the image's end */
            const uint8_t *p = in + 4 + 4 * (uint64_t)n + (uint64_t)j * AERO_DISK_BLOCK;
            for (uint64_t k = d->size - (uint64_t)b * AERO_DISK_BLOCK; k < AERO_DISK_BLOCK; k++)
                if (p[k]) return -1;
        }
    }
    return 0;
}

int aero_disk_overlay_load(aero_machine *m, const uint8_t *in) {
    aero_disk *d = rw_disk(m);
    if (!d) return 0;
    uint32_t n = get_le32(in);
    uint8_t **fresh = calloc(n ? n : 1, sizeof *fresh);
    if (!fresh) return -1;
    for (uint32_t j = 0; j < n; j++) {
        fresh[j] = malloc(AERO_DISK_BLOCK);
        if (!fresh[j]) {
            for (uint32_t k = 0; k < j; k++) free(fresh[k]);
            free(fresh);
            return -1;
        }
        memcpy(fresh[j], in + 4 + 4 * (uint64_t)n + (uint64_t)j * AERO_DISK_BLOCK, AERO_DISK_BLOCK);
    }
    overlay_clear(d);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t b = get_le32(in + 4 + 4 * (uint64_t)j);
        d->overlay[b] = fresh[j];
        d->block_dirty[b] = 1;
    }
    d->used = n;
    free(fresh);
    return 0;
}

uint64_t aero_disk_overlay_fold(aero_machine *m, uint64_t h) {
    aero_disk *d = rw_disk(m);
    if (!d || d->used == 0) return h; /* nothing written yet: the state of a read-only disk */
    rehash(d);
    uint8_t row[16];
    for (uint32_t i = 0; i < d->blocks; i++) {
        if (!d->overlay[i]) continue;
        for (int k = 0; k < 4; k++) row[k] = (uint8_t)(i >> (8 * k));
        memset(row + 4, 0, 4);
        for (int k = 0; k < 8; k++) row[8 + k] = (uint8_t)(d->block_hash[i] >> (8 * k));
        h = aero_hash64(row, sizeof row, h);
    }
    return aero_hash64((const uint8_t *)"overlay", 7, h ^ d->used);
}

/* ---- state: XOR the power-on values, so an untouched controller serializes as zeros ---- */

void aero_ide_save(const aero_ide *s, aero_sbuf *b) {
    const aero_ide_channel *c = &s->ch;
    aero_put8(b, c->feature);
    aero_put8(b, c->error ^ 0x01);
    aero_put8(b, c->nsector ^ 1);
    aero_put8(b, c->sector ^ 1);
    aero_put8(b, c->lcyl);
    aero_put8(b, c->hcyl);
    aero_put8(b, c->select);
    aero_put8(b, c->status ^ (ST_DRDY | ST_DSC));
    aero_put8(b, c->control);
    aero_put8(b, c->irq_pending);
    aero_put8(b, c->irq_level);
    aero_put8(b, c->xfer);
    aero_put16(b, c->pos);
    aero_put16(b, c->left);
    aero_put32(b, c->lba);
    aero_put8(b, c->cmd);
    aero_put8(b, c->heads);
    aero_put8(b, c->spt);
    aero_put_bytes(b, c->buf, sizeof c->buf);
    aero_put8(b, s->pci_cmd);
    aero_put32(b, s->bmiba);
    aero_put_bytes(b, s->cfg40, sizeof s->cfg40);
    aero_put_bytes(b, s->unmodelled, sizeof s->unmodelled);
}

void aero_ide_load(aero_ide *s, aero_sbuf *b) {
    aero_ide_channel *c = &s->ch;
    c->feature = aero_get8(b);
    c->error = aero_get8(b) ^ 0x01;
    c->nsector = aero_get8(b) ^ 1;
    c->sector = aero_get8(b) ^ 1;
    c->lcyl = aero_get8(b);
    c->hcyl = aero_get8(b);
    c->select = aero_get8(b);
    c->status = aero_get8(b) ^ (ST_DRDY | ST_DSC);
    c->control = aero_get8(b) & (CTL_NIEN | CTL_SRST);
    c->irq_pending = aero_get8(b) & 1;
    c->irq_level = aero_get8(b) & 1;
    c->xfer = aero_get8(b) % 3;
    c->pos = aero_get16(b); /* 512 after a finished transfer; inside buf during one */
    if (c->pos > 512 || (c->xfer && c->pos == 512)) c->pos = 0;
    c->left = aero_get16(b);
    c->lba = aero_get32(b);
    c->cmd = aero_get8(b);
    c->heads = aero_get8(b);
    c->spt = aero_get8(b);
    aero_get_bytes(b, c->buf, sizeof c->buf);
    s->pci_cmd = aero_get8(b) & 0x05;
    s->bmiba = aero_get32(b) & 0xFFFFFFF0u;
    aero_get_bytes(b, s->cfg40, sizeof s->cfg40);
    aero_get_bytes(b, s->unmodelled, sizeof s->unmodelled);
}
