/* aero core: QEMU's fw_cfg, the firmware configuration interface (QEMU's
 * docs/specs/fw_cfg.rst and hw/nvram/fw_cfg.c; SeaBIOS's src/fw/paravirt.c is the reader).
 *
 * Ports 510h (selector, 16-bit writes) and 511h (data, 8-bit reads), as QEMU's i386 machines
 * place them; a byte read of 510h also returns data, as QEMU's combined region does. The DMA
 * interface (514h) is not offered: the ID item says "traditional interface only", so SeaBIOS
 * reads everything with IN/INS. Writes to items are ignored (nothing here is writable).
 *
 * Items, generated from the machine configuration when read (nothing is stored but the
 * selector and the read offset, which are the device state):
 *   0000h signature "QEMU"          0001h ID = 1 (traditional interface)
 *   0002h UUID, 16 zero bytes       0003h RAM size (u64)
 *   0004h no-graphic flag (u16, 0)  0005h CPUs (u16, 1)       000Fh max CPUs (u16, 1)
 *   000Dh NUMA nodes (u64, 0)       000Eh boot menu (u16, 0)
 *   0019h the file directory: a big-endian count, then per file a big-endian size, a
 *         big-endian select key, two reserved bytes and a 56-byte name
 *   8000h ACPI tables (u16 count 0) 8001h SMBIOS entries (u16 count 0)
 *   8003h E820 reservations (u32 count 0)
 *   0020h+ the files: "etc/e820" (one RAM entry, 0 to the RAM size, as QEMU gives it),
 *         "etc/boot-fail-wait" (u32 FFFFFFFFh: when nothing boots SeaBIOS says so and waits,
 *         as under QEMU's default -boot reboot-timeout=-1, instead of rebooting after 60 s),
 *         then those the host added (aero_fwcfg_add_file), in that order.
 * Any other key reads as zeros, as in QEMU.
 */
#include <stdlib.h>

#include "platform.h"

#define KEY_SIGNATURE 0x0000
#define KEY_ID 0x0001
#define KEY_UUID 0x0002
#define KEY_RAM_SIZE 0x0003
#define KEY_NOGRAPHIC 0x0004
#define KEY_NB_CPUS 0x0005
#define KEY_NUMA 0x000D
#define KEY_BOOT_MENU 0x000E
#define KEY_MAX_CPUS 0x000F
#define KEY_FILE_DIR 0x0019
#define KEY_FILE_FIRST 0x0020
#define KEY_ACPI_TABLES 0x8000
#define KEY_SMBIOS 0x8001
#define KEY_E820 0x8003

#define E820_BYTES 20u /* u64 address, u64 length, u32 type */
#define GENERATED_FILES 2u

void aero_fwcfg_reset(aero_machine *m) { memset(&m->pc->fwcfg, 0, sizeof m->pc->fwcfg); }

static uint32_t file_count(const aero_machine *m) {
    return GENERATED_FILES + (m->pc->fw_files ? m->pc->fw_files->count : 0);
}

/* Little-endian byte i of v. */
static uint8_t le_byte(uint64_t v, uint32_t i, uint32_t size) {
    return i < size ? (uint8_t)(v >> (8 * i)) : 0;
}
static uint8_t be_byte(uint64_t v, uint32_t i, uint32_t size) {
    return i < size ? (uint8_t)(v >> (8 * (size - 1 - i))) : 0;
}

/* File n (0: etc/e820, 1: etc/boot-fail-wait): its name, size and, for host files, data. */
static void file_info(const aero_machine *m, uint32_t n, const char **name, uint32_t *size,
                      const uint8_t **data) {
    if (n == 0) {
        *name = "etc/e820";
        *size = E820_BYTES;
        *data = NULL;
        return;
    }
    if (n == 1) {
        *name = "etc/boot-fail-wait";
        *size = 4;
        *data = NULL;
        return;
    }
    const aero_fwcfg_file *f = &m->pc->fw_files->file[n - GENERATED_FILES];
    *name = f->name;
    *size = f->size;
    *data = f->data;
}

static uint8_t item_byte(const aero_machine *m, uint16_t key, uint32_t off) {
    switch (key) {
    case KEY_SIGNATURE: return off < 4 ? (uint8_t)"QEMU"[off] : 0;
    case KEY_ID: return le_byte(1, off, 4);
    case KEY_RAM_SIZE: return le_byte(m->cfg.ram_size, off, 8);
    case KEY_NB_CPUS: case KEY_MAX_CPUS: return le_byte(1, off, 2);
    case KEY_FILE_DIR: {
        uint32_t n = file_count(m);
        if (off < 4) return be_byte(n, off, 4);
        off -= 4;
        uint32_t i = off / 64, o = off % 64;
        if (i >= n) return 0;
        const char *name;
        uint32_t size;
        const uint8_t *data;
        file_info(m, i, &name, &size, &data);
        if (o < 4) return be_byte(size, o, 4);
        if (o < 6) return be_byte(KEY_FILE_FIRST + i, o - 4, 2);
        if (o < 8) return 0;
        o -= 8;
        return o < strlen(name) ? (uint8_t)name[o] : 0;
    }
    default: break;
    }
    if (key >= KEY_FILE_FIRST && (uint32_t)(key - KEY_FILE_FIRST) < file_count(m)) {
        const char *name;
        uint32_t size;
        const uint8_t *data;
        file_info(m, key - KEY_FILE_FIRST, &name, &size, &data);
        if (off >= size) return 0;
        if (data) return data[off];
        if (key == KEY_FILE_FIRST + 1) return 0xFF; /* etc/boot-fail-wait: -1 */
        /* etc/e820: RAM from 0 to the RAM size (type 1). */
        if (off < 8) return 0;
        if (off < 16) return le_byte(m->cfg.ram_size, off - 8, 8);
        return le_byte(1, off - 16, 4);
    }
    return 0; /* UUID, no-graphic, NUMA, boot menu, ACPI, SMBIOS, E820 counts; unknown keys */
}

uint32_t aero_fwcfg_read(aero_machine *m, uint16_t port, int size) {
    (void)port;
    if (size != 1) return size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    aero_fwcfg *s = &m->pc->fwcfg;
    uint8_t v = item_byte(m, s->key, s->offset);
    if (s->offset < 0xFFFFFFFFu) s->offset++;
    return v;
}

void aero_fwcfg_write(aero_machine *m, uint16_t port, int size, uint32_t val) {
    if (size != 2 || port != 0x510) return; /* data writes: nothing is writable */
    m->pc->fwcfg.key = (uint16_t)val;
    m->pc->fwcfg.offset = 0;
}

int aero_fwcfg_add_file(aero_machine *m, const char *name, const uint8_t *data, uint32_t size) {
    if (!m->pc || !name || strlen(name) == 0 || strlen(name) > 55) return -1;
    if (!m->pc->fw_files) {
        m->pc->fw_files = calloc(1, sizeof *m->pc->fw_files);
        if (!m->pc->fw_files) return -1;
    }
    aero_fwcfg_files *t = m->pc->fw_files;
    if (t->count >= AERO_FWCFG_MAX_FILES) return -1;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return -1;
    memcpy(copy, data, size);
    aero_fwcfg_file *f = &t->file[t->count++];
    memset(f->name, 0, sizeof f->name);
    memcpy(f->name, name, strlen(name));
    f->data = copy;
    f->size = size;
    return 0;
}

void aero_fwcfg_free(aero_machine *m) {
    if (!m->pc || !m->pc->fw_files) return;
    for (uint32_t i = 0; i < m->pc->fw_files->count; i++) free(m->pc->fw_files->file[i].data);
    free(m->pc->fw_files);
    m->pc->fw_files = NULL;
}

void aero_fwcfg_save(const aero_fwcfg *s, aero_sbuf *b) {
    aero_put16(b, s->key);
    aero_put32(b, s->offset);
}

void aero_fwcfg_load(aero_fwcfg *s, aero_sbuf *b) {
    s->key = aero_get16(b);
    s->offset = aero_get32(b);
}
