/* aero core: physical memory map, address translation, TLB and the memory slow paths.
 *
 * The TLB maps a linear page straight to host memory. A page is write-mapped only when
 * it is plain RAM, already marked dirty, and holds no decoded code: so the first write
 * after a fingerprint, and every write to decoded code, comes through here, which is
 * where dirty tracking and self-modifying-code invalidation happen.
 *
 * Translations are kept in two sets, one checked with supervisor rights and one with user
 * rights (CPL 3): a privilege change selects the other set instead of flushing. Pages that
 * an armed data breakpoint or a host watch covers are never mapped for the watched kind of
 * access, so those accesses come here, where the breakpoint or watch is matched.
 */
#include <stdlib.h>

#include "cpu.h"
#include "piix.h" /* aero_pam_ram: the shadow-RAM routing below 1 MB */

/* Page-table entry bits. */
#define PTE_P 0x001u
#define PTE_W 0x002u
#define PTE_U 0x004u
#define PTE_A 0x020u
#define PTE_D 0x040u
#define PTE_PS 0x080u
#define PTE_G 0x100u
/* A 4 MB PDE's bits 21:12 are reserved on a P6 without PAT and PSE-36. */
#define PDE4M_RSVD 0x003FF000u

#define PF_P 1u
#define PF_W 2u
#define PF_U 4u
#define PF_RSVD 8u

#define PG_CR4_PSE 0x010u
#define PG_CR4_PAE 0x020u
#define PG_CR4_PGE 0x080u

/* The paging controls translations depend on; a change drops global entries too. */
static uint32_t paging_ctl(const aero_machine *m) {
    return (m->cpu.cr0 & (CR0_PG | CR0_WP)) | (m->cpu.cr4 & (PG_CR4_PSE | PG_CR4_PAE | PG_CR4_PGE));
}

static void tlb_drop(aero_machine *m, int set, int i) {
    m->tlb[set][i].tag_r = AERO_TLB_INVALID;
    m->tlb[set][i].tag_w = AERO_TLB_INVALID;
    m->tlb_info[set][i] = 0;
}

void aero_tlb_flush_all(aero_machine *m) {
    m->code_epoch++;
    for (int set = 0; set < 2; set++)
        for (int i = 0; i < AERO_TLB_SIZE; i++) tlb_drop(m, set, i);
    m->tlb_ctl = paging_ctl(m);
}

void aero_tlb_flush(aero_machine *m) {
    m->code_epoch++;
    if (paging_ctl(m) != m->tlb_ctl) {
        aero_tlb_flush_all(m);
        return;
    }
    for (int set = 0; set < 2; set++)
        for (int i = 0; i < AERO_TLB_SIZE; i++)
            if (!(m->tlb_info[set][i] & AERO_TLBI_GLOBAL)) tlb_drop(m, set, i);
}

void aero_tlb_flush_page(aero_machine *m, uint32_t lin) {
    uint32_t page = lin & ~0xFFFu, big = lin & 0xFFC00000u;
    int slot = (int)aero_tlb_slot(lin);
    m->code_epoch++;
    for (int set = 0; set < 2; set++) {
        aero_tlb_entry *e = &m->tlb[set][slot];
        if (e->tag_r == page || e->tag_w == page) tlb_drop(m, set, slot);
        /* Entries made from a 4 MB page that holds lin sit in other slots too. */
        for (int i = 0; i < AERO_TLB_SIZE; i++) {
            const aero_tlb_entry *x = &m->tlb[set][i];
            uint32_t tag = x->tag_r != AERO_TLB_INVALID ? x->tag_r : x->tag_w;
            if ((m->tlb_info[set][i] & AERO_TLBI_LARGE) && tag != AERO_TLB_INVALID && (tag & 0xFFC00000u) == big)
                tlb_drop(m, set, i);
        }
    }
}

void aero_tlb_flush_writes(aero_machine *m) {
    for (int set = 0; set < 2; set++)
        for (int i = 0; i < AERO_TLB_SIZE; i++) m->tlb[set][i].tag_w = AERO_TLB_INVALID;
}

/* Is phys in the ROM's alias below 1 MB, where the chipset's PAM registers choose between
 * the ROM and RAM (piix.c)? write: the route of a write rather than of a read. */
static int rom_alias_routed(const aero_machine *m, uint32_t phys, int write) {
    uint32_t alias = m->rom_size < AERO_ROM_ALIAS_MAX ? m->rom_size : AERO_ROM_ALIAS_MAX;
    return phys >= 0x100000u - alias && phys < 0x100000u && !aero_pam_ram(m, phys, write);
}

/* Host pointer for the byte at phys as a read sees it, or NULL for unmapped space (open bus). */
uint8_t *aero_phys_ptr(aero_machine *m, uint32_t phys) {
    if (m->rom) {
        uint32_t alias = m->rom_size < AERO_ROM_ALIAS_MAX ? m->rom_size : AERO_ROM_ALIAS_MAX;
        if (rom_alias_routed(m, phys, 0))
            return m->rom + (m->rom_size - alias) + (phys - (0x100000u - alias));
        if (phys >= 0u - m->rom_size) return m->rom + (phys - (0u - m->rom_size));
    }
    if (phys < m->ram_size) return m->ram + phys;
    return NULL;
}

/* Does a write to phys reach RAM (not ROM, not unmapped)? */
static int phys_is_ram(aero_machine *m, uint32_t phys) {
    if (m->rom && (rom_alias_routed(m, phys, 1) || phys >= 0u - m->rom_size)) return 0;
    return phys < m->ram_size;
}

/* Two-level i386 page walk (4 KB pages, and 4 MB pages with CR4.PSE). Checks U/S and R/W
 * (supervisor writes to read-only pages only with CR0.WP clear) and the reserved bits of
 * 4 MB entries, sets the accessed and dirty bits through aero_write_phys (so they take part
 * in dirty tracking and code invalidation), and faults with #PF (error code, CR2) on
 * failure. Leaves the entry kind in m->walk_info. */
static uint32_t page_walk(aero_machine *m, uint32_t lin, int acc) {
    int write = acc & AERO_ACC_WRITE;
    int user = m->cpu.cpl == 3 && !(acc & AERO_ACC_SYS);
    int pge = (m->cpu.cr4 & PG_CR4_PGE) != 0;
    uint32_t pde_addr = (m->cpu.cr3 & ~0xFFFu) | ((lin >> 22) << 2);
    uint32_t pde = 0;
    aero_read_phys(m, pde_addr, (uint8_t *)&pde, 4);
    uint32_t err = (write ? PF_W : 0u) | (user ? PF_U : 0u);
    if (!(pde & PTE_P)) goto fault;
    if ((pde & PTE_PS) && (m->cpu.cr4 & PG_CR4_PSE)) {
        if (pde & PDE4M_RSVD) { err |= PF_P | PF_RSVD; goto fault; }
        int ok_u = !user || (pde & PTE_U);
        int ok_w = !write || (pde & PTE_W) || (!user && !(m->cpu.cr0 & CR0_WP));
        if (!ok_u || !ok_w) { err |= PF_P; goto fault; }
        uint32_t npde = pde | PTE_A | (write ? PTE_D : 0);
        if (npde != pde) aero_write_phys(m, pde_addr, (uint8_t *)&npde, 4);
        m->walk_info = AERO_TLBI_LARGE | ((pge && (pde & PTE_G)) ? AERO_TLBI_GLOBAL : 0);
        return (pde & 0xFFC00000u) | (lin & 0x3FFFFFu);
    }
    uint32_t pte_addr = (pde & ~0xFFFu) | (((lin >> 12) & 0x3FF) << 2);
    uint32_t pte = 0;
    aero_read_phys(m, pte_addr, (uint8_t *)&pte, 4);
    if (!(pte & PTE_P)) goto fault;
    {
        uint32_t both = pde & pte;
        int ok_u = !user || (both & PTE_U);
        int ok_w = !write || (both & PTE_W) || (!user && !(m->cpu.cr0 & CR0_WP));
        if (!ok_u || !ok_w) { err |= PF_P; goto fault; }
    }
    if (!(pde & PTE_A)) {
        uint32_t npde = pde | PTE_A;
        aero_write_phys(m, pde_addr, (uint8_t *)&npde, 4);
    }
    {
        uint32_t npte = pte | PTE_A | (write ? PTE_D : 0);
        if (npte != pte) aero_write_phys(m, pte_addr, (uint8_t *)&npte, 4);
    }
    m->walk_info = (pge && (pte & PTE_G)) ? AERO_TLBI_GLOBAL : 0;
    return (pte & ~0xFFFu) | (lin & 0xFFF);
fault:
    m->cpu.cr2 = lin;
    aero_fault(m, EXC_PF, err, 1);
}

/* The TLB set an access of kind acc uses: system accesses have supervisor rights. */
AERO_INLINE int acc_set(const aero_machine *m, int acc) {
    return !(acc & AERO_ACC_SYS) && m->cpu.cpl == 3;
}

uint32_t aero_translate_slow(aero_machine *m, uint32_t lin, int acc) {
    /* A mapped entry already holds this translation, checked for the same rights. */
    int set = acc_set(m, acc), slot = (int)aero_tlb_slot(lin);
    const aero_tlb_entry *e = &m->tlb[set][slot];
    uint32_t page = lin & ~0xFFFu, info = m->tlb_info[set][slot];
    /* A page holding code is never write-mapped, but its translation may have been checked
     * for writes already (AERO_TLBI_WOK): no walk then. */
    if ((acc & AERO_ACC_WRITE) ? (e->tag_w == page || (e->tag_r == page && (info & AERO_TLBI_WOK)))
                               : e->tag_r == page) {
        m->walk_info = info & 0xFFFu;
        return (info & ~0xFFFu) | (lin & 0xFFF);
    }
    m->walk_info = 0;
    uint32_t phys = (m->cpu.cr0 & CR0_PG) ? page_walk(m, lin, acc) : lin;
    if (!m->cpu.a20) phys &= ~0x100000u;
    return phys;
}

/* Translate for the slow paths; leaves the entry kind in m->walk_info. */
static uint32_t translate(aero_machine *m, uint32_t lin, int acc) {
    if (!(m->cpu.cr0 & CR0_PG) && m->cpu.a20) {
        m->walk_info = 0;
        return lin;
    }
    return aero_translate_slow(m, lin, acc);
}

/* Alignment checking (#AC) applies: CR0.AM, EFLAGS.AC and CPL 3. */
AERO_INLINE int ac_armed(const aero_machine *m) {
    return (m->cpu.cr0 & CR0_AM) && (m->cpu.eflags & F_AC) && m->cpu.cpl == 3;
}
static void check_alignment(aero_machine *m, uint32_t lin, uint32_t size) {
    if (size > 1 && (lin & (size - 1)) && ac_armed(m)) aero_fault(m, EXC_AC, 0, 1);
}

/* Data breakpoints armed for an access kind: bit i for DRi (R/W 01 watches writes, 11 reads
 * and writes). */
static uint32_t data_bps(const aero_machine *m, int write) {
    if (!(m->cpu.dr[7] & 0xFFu)) return 0;
    return aero_bp_enabled(m, 3) | (write ? aero_bp_enabled(m, 1) : 0);
}
/* Record the data breakpoints an access of [lin, lin+size) hits; the run loop reports them
 * as a #DB trap once the instruction has completed (the block ends here). */
static void data_bp_check(aero_machine *m, uint32_t lin, int size, int write) {
    uint32_t mask = data_bps(m, write);
    if (!mask) return;
    uint32_t hits = aero_bp_match(m, mask, lin, (uint32_t)size);
    if (hits) {
        m->dbg_hits |= hits;
        m->attn |= AERO_ATTN_DEBUG;
        m->exit_block = 1;
    }
}
/* Does a data watch of kind `kind` overlap [lin, lin+size) (linear) or [phys, phys+size)? */
static int watch_overlap(const aero_machine *m, uint32_t lin, uint32_t phys, uint32_t size,
                         uint32_t kind) {
    for (int i = 0; i < AERO_WATCH_MAX; i++) {
        const aero_watch *w = &m->watch[i];
        if (!(w->flags & kind) || (w->flags & AERO_WATCH_IO)) continue;
        uint32_t a = (w->flags & AERO_WATCH_PHYS) ? phys : lin;
        if ((uint64_t)a + size > w->addr && a <= w->last) return 1;
    }
    return 0;
}
/* Log an access to [lin, lin+size) for the logging watches; val is the value written (for a
 * read it is taken from memory here, before the access). */
static void watch_log_access(aero_machine *m, uint32_t lin, uint32_t phys, int size, uint32_t kind,
                             uint32_t val) {
    if (!m->watch_log) return;
    if (m->watch_log_len >= AERO_WATCH_LOG_MAX) {
        m->watch_log_lost++;
        return;
    }
    if (kind == AERO_WATCH_READ) {
        const uint8_t *p = aero_phys_ptr(m, phys);
        val = p ? load_le(p, size) : 0xFFFFFFFFu;
    }
    if (size < 4) val &= (1u << (8 * size)) - 1u; /* a write passes the whole register */
    uint32_t *e = m->watch_log + 5 * m->watch_log_len++;
    e[0] = lin;
    e[1] = phys;
    e[2] = (uint32_t)size;
    e[3] = kind;
    e[4] = val;
}
/* Record a data watch hit of [lin, lin+size): run() stops after the instruction (a logging
 * watch logs the access instead). val: the value of a write. */
static void watch_check(aero_machine *m, uint32_t lin, uint32_t phys, int size, uint32_t kind,
                        uint32_t val) {
    if (m->fetching) return;
    int stop = 0, log = 0;
    for (int i = 0; i < AERO_WATCH_MAX; i++) {
        const aero_watch *w = &m->watch[i];
        if (!(w->flags & kind) || (w->flags & AERO_WATCH_IO)) continue;
        uint32_t a = (w->flags & AERO_WATCH_PHYS) ? phys : lin;
        if ((uint64_t)a + (uint32_t)size > w->addr && a <= w->last) {
            if (w->flags & AERO_WATCH_LOG) log = 1;
            else stop = 1;
        }
    }
    if (log) watch_log_access(m, lin, phys, size, kind, val);
    if (!stop) return;
    if (!m->watch_hit) {
        m->watch_hit = 1;
        m->watch_hit_lin = lin;
        m->watch_hit_phys = phys;
        m->watch_hit_size = (uint32_t)size;
        m->watch_hit_kind = kind;
        m->watch_hit_value = 0;
        m->watch_hit_eip = m->cpu.eip;
    }
    m->watch_stop = 1;
    m->attn |= AERO_ATTN_WATCH;
    m->exit_block = 1;
}
/* May the TLB map this linear page (physical page phys) for this kind of access? Not while
 * a data breakpoint or a host watch covers it, so that every such access reaches
 * data_bp_check and watch_check. */
static __attribute__((noinline)) int mappable_watched(const aero_machine *m, uint32_t page,
                                                      uint32_t phys, int write) {
    uint32_t mask = data_bps(m, write);
    if (mask && aero_bp_match(m, mask, page, 0x1000u)) return 0;
    return !m->watch_data ||
           !watch_overlap(m, page, phys & ~0xFFFu, 0x1000u, write ? AERO_WATCH_WRITE : AERO_WATCH_READ);
}
AERO_INLINE int mappable(const aero_machine *m, uint32_t page, uint32_t phys, int write) {
    if (AERO_LIKELY(!((m->cpu.dr[7] & 0xFFu) | m->watch_data))) return 1;
    return mappable_watched(m, page, phys, write);
}

int aero_watch_set(aero_machine *m, uint32_t slot, uint32_t addr, uint32_t len, uint32_t flags) {
    if (slot >= AERO_WATCH_MAX || (flags && (len == 0 || (uint64_t)addr + len > 0x100000000ull)))
        return -1;
    aero_watch *w = &m->watch[slot];
    w->addr = addr;
    w->last = flags & AERO_WATCH_EXEC ? addr : addr + (len ? len - 1 : 0);
    w->flags = flags & (AERO_WATCH_READ | AERO_WATCH_WRITE | AERO_WATCH_EXEC | AERO_WATCH_PHYS |
                        AERO_WATCH_IO | AERO_WATCH_LOG);
    if ((w->flags & AERO_WATCH_LOG) && !m->watch_log) {
        m->watch_log = malloc((size_t)AERO_WATCH_LOG_MAX * 5 * sizeof *m->watch_log);
        if (!m->watch_log) {
            w->flags = 0;
            return -1;
        }
    }
    m->watch_data = 0;
    m->watch_exec = 0;
    m->watch_skip = 0; /* arming anew forgets aero_watch_resume */
    m->watch_io = 0;
    for (int i = 0; i < AERO_WATCH_MAX; i++) {
        uint32_t f = m->watch[i].flags;
        if (f & AERO_WATCH_IO) m->watch_io++;
        else m->watch_data |= f & (AERO_WATCH_READ | AERO_WATCH_WRITE);
        if (f & AERO_WATCH_EXEC) m->watch_exec++;
    }
    if (m->watch_exec) m->attn |= AERO_ATTN_WATCH;
    aero_tlb_flush_all(m); /* watched pages must not stay mapped */
    return 0;
}

int aero_watch_take(aero_machine *m, uint32_t *out) {
    if (!m->watch_hit) return 0;
    out[0] = m->watch_hit_lin;
    out[1] = m->watch_hit_phys;
    out[2] = m->watch_hit_size;
    out[3] = m->watch_hit_kind;
    out[4] = m->watch_hit_value;
    out[5] = m->watch_hit_eip;
    m->watch_hit = 0;
    return 1;
}

uint32_t aero_watch_log(aero_machine *m, uint32_t *out, uint32_t *lost) {
    uint32_t n = m->watch_log_len;
    if (n) memcpy(out, m->watch_log, (size_t)n * 5 * sizeof *out);
    *lost = m->watch_log_lost;
    m->watch_log_len = 0;
    m->watch_log_lost = 0;
    return n;
}

void aero_watch_port(aero_machine *m, uint16_t port, int size, uint32_t val, uint32_t kind) {
    int hit = 0;
    for (int i = 0; i < AERO_WATCH_MAX; i++) {
        const aero_watch *w = &m->watch[i];
        if ((w->flags & AERO_WATCH_IO) && (w->flags & kind) &&
            (uint32_t)port + (uint32_t)size > w->addr && port <= w->last) hit = 1;
    }
    if (!hit) return;
    if (!m->watch_hit) {
        m->watch_hit = 1;
        m->watch_hit_lin = m->watch_hit_phys = port;
        m->watch_hit_size = (uint32_t)size;
        m->watch_hit_kind = kind | AERO_WATCH_IO;
        m->watch_hit_value = val;
        m->watch_hit_eip = m->cpu.eip;
    }
    m->watch_stop = 1;
    m->attn |= AERO_ATTN_WATCH;
    m->exit_block = 1;
}

/* The code_bits chunks (64 bytes each) that bytes [off, off + len) of a page touch
 * (off + len <= 4096, len >= 1). */
AERO_INLINE uint64_t chunk_mask(uint32_t off, uint32_t len) {
    uint32_t first = off >> 6, last = (off + len - 1) >> 6;
    uint64_t upto = last == 63 ? ~0ull : ((1ull << (last + 1)) - 1);
    return upto & ~((1ull << first) - 1);
}

/* Record a write to bytes [off, off + len) of RAM page `page` (within the page): dirty
 * tracking and self-modifying code. Only a write to a 64-byte chunk that decoded blocks
 * were made from invalidates the page's blocks (data sharing a page with code does not). */
static void note_write(aero_machine *m, uint32_t page, uint32_t off, uint32_t len) {
    m->dirty[page] = 1;
    if (m->code_page[page] && (m->code_bits[page] & chunk_mask(off, len))) {
        m->code_page[page] = 0;
        m->code_bits[page] = 0;
        m->page_gen[page]++;
        m->code_epoch++;
        m->exit_block = 1; /* the running block may be stale */
    }
}

void aero_note_code(aero_machine *m, uint32_t phys, uint32_t len) {
    uint32_t page = phys >> 12;
    if (len == 0 || page >= m->ram_pages) return;
    if (!m->code_page[page]) {
        m->code_page[page] = 1;
        aero_tlb_flush_writes(m); /* writes to this page must now take the slow path */
    }
    m->code_bits[page] |= chunk_mask(phys & 0xFFFu, len);
}

/* Read of kind acc (0 or AERO_ACC_SYS). */
static uint32_t rd_slow(aero_machine *m, uint32_t lin, int size, int acc) {
    if (!(acc & AERO_ACC_SYS)) check_alignment(m, lin, (uint32_t)size);
    if ((lin & 0xFFF) + (uint32_t)size > 0x1000) {
        uint32_t v = 0;
        for (int i = 0; i < size; i++) v |= rd_slow(m, lin + (uint32_t)i, 1, acc) << (8 * i);
        return v;
    }
    uint32_t phys = translate(m, lin, acc);
    uint32_t info = m->walk_info;
    data_bp_check(m, lin, size, 0);
    if (AERO_UNLIKELY(m->watch_data & AERO_WATCH_READ)) watch_check(m, lin, phys, size, AERO_WATCH_READ, 0);
    uint8_t *p = aero_phys_ptr(m, phys);
    if (!p) return size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    uint32_t page = lin & ~0xFFFu;
    if (mappable(m, page, phys, 0)) {
        int set = acc_set(m, acc), slot = (int)aero_tlb_slot(lin);
        aero_tlb_entry *e = &m->tlb[set][slot];
        uintptr_t addend = (uintptr_t)(p - (phys & 0xFFF)) - page;
        if (e->tag_r != page || e->addend != addend) {
            if (e->tag_r != AERO_TLB_INVALID) m->code_epoch++; /* a translation is dropped */
            e->tag_w = AERO_TLB_INVALID; /* the write tag must describe the same translation */
            e->tag_r = page;
            e->addend = addend;
            m->tlb_info[set][slot] = (phys & ~0xFFFu) | info;
        }
    }
    return load_le(p, size);
}

uint32_t aero_rd_slow(aero_machine *m, uint32_t lin, int size) { return rd_slow(m, lin, size, 0); }

void aero_probe_write(aero_machine *m, uint32_t lin, uint32_t size) {
    if (size == 0) return;
    check_alignment(m, lin, size);
    if (!(m->cpu.cr0 & CR0_PG)) return;
    (void)aero_translate(m, lin, AERO_ACC_WRITE);
    /* A fault on the second page reports that page's first byte in CR2. */
    uint32_t second = (lin + size - 1) & ~0xFFFu;
    if (second != (lin & ~0xFFFu)) (void)aero_translate(m, second, AERO_ACC_WRITE);
}

/* Write of kind acc (0 or AERO_ACC_SYS). */
static void wr_slow(aero_machine *m, uint32_t lin, int size, uint32_t val, int acc) {
    if (!(acc & AERO_ACC_SYS)) check_alignment(m, lin, (uint32_t)size);
    if ((lin & 0xFFF) + (uint32_t)size > 0x1000) {
        /* Both pages must be writable before any byte is written. */
        if (m->cpu.cr0 & CR0_PG) {
            (void)aero_translate_slow(m, lin, acc | AERO_ACC_WRITE);
            (void)aero_translate_slow(m, (lin + (uint32_t)size - 1) & ~0xFFFu, acc | AERO_ACC_WRITE);
        }
        for (int i = 0; i < size; i++) wr_slow(m, lin + (uint32_t)i, 1, (val >> (8 * i)) & 0xFF, acc);
        return;
    }
    uint32_t phys = translate(m, lin, acc | AERO_ACC_WRITE);
    uint32_t info = m->walk_info;
    data_bp_check(m, lin, size, 1);
    if (AERO_UNLIKELY(m->watch_data & AERO_WATCH_WRITE)) watch_check(m, lin, phys, size, AERO_WATCH_WRITE, val);
    if (!phys_is_ram(m, phys)) return; /* ROM and open bus ignore writes */
    note_write(m, phys >> 12, phys & 0xFFFu, (uint32_t)size);
    uint8_t *p = m->ram + phys;
    store_le(p, size, val);
    uint32_t page = lin & ~0xFFFu;
    int set = acc_set(m, acc), slot = (int)aero_tlb_slot(lin);
    aero_tlb_entry *e = &m->tlb[set][slot];
    uintptr_t addend = (uintptr_t)(p - (phys & 0xFFF)) - page;
    if (e->tag_r != page || e->addend != addend) {
        if (e->tag_r != AERO_TLB_INVALID) m->code_epoch++; /* a translation is dropped */
        e->tag_r = AERO_TLB_INVALID;
        e->tag_w = AERO_TLB_INVALID;
        e->addend = addend;
    }
    m->tlb_info[set][slot] = (phys & ~0xFFFu) | info | AERO_TLBI_WOK;
    /* With paging, the walk above set the dirty bit for this write, so later writes may go
     * straight through: write-map the page (unless a breakpoint or a host watch covers it,
     * or it holds decoded code: those writes must come here to be checked against the code
     * chunks). */
    /* Shadow RAM whose reads still go to the ROM (PAM): never mapped, reads and writes
     * differ. */
    if (aero_phys_ptr(m, phys) != p) return;
    if (mappable(m, page, phys, 0)) e->tag_r = page;
    if (mappable(m, page, phys, 1) && !m->code_page[phys >> 12]) e->tag_w = page;
}

void aero_wr_slow(aero_machine *m, uint32_t lin, int size, uint32_t val) { wr_slow(m, lin, size, val, 0); }

void aero_invalidate_code(aero_machine *m, uint32_t phys, uint32_t len) {
    if (len == 0) return;
    uint64_t end = (uint64_t)phys + len;
    if (end > m->ram_size) end = m->ram_size;
    for (uint64_t a = phys; a < end;) {
        uint64_t stop = (a | 0xFFFu) + 1;
        if (stop > end) stop = end;
        note_write(m, (uint32_t)(a >> 12), (uint32_t)(a & 0xFFFu), (uint32_t)(stop - a));
        a = stop;
    }
}

void aero_write_phys(aero_machine *m, uint32_t addr, const uint8_t *data, uint32_t len) {
    for (uint32_t i = 0; i < len; i++) {
        uint32_t a = addr + i;
        if (phys_is_ram(m, a)) m->ram[a] = data[i];
    }
    aero_invalidate_code(m, addr, len);
}

void aero_read_phys(aero_machine *m, uint32_t addr, uint8_t *out, uint32_t len) {
    for (uint32_t i = 0; i < len; i++) {
        uint8_t *p = aero_phys_ptr(m, addr + i);
        out[i] = p ? *p : 0xFF;
    }
}

void aero_ram_modified(aero_machine *m, uint32_t addr, uint32_t len) {
    aero_invalidate_code(m, addr, len);
}

/* Descriptor tables and the TSS are accessed with supervisor rights whatever the CPL: at
 * CPL 3 through the supervisor TLB set, so user code never inherits such a mapping. */
uint32_t aero_rd_sys(aero_machine *m, uint32_t lin, int size) {
    if (m->cpu.cpl != 3) return lin_rd(m, lin, size);
    const aero_tlb_entry *e = &m->tlb[0][aero_tlb_slot(lin)];
    if (e->tag_r == (lin & ~0xFFFu) && (lin & 0xFFF) <= 0x1000u - (uint32_t)size)
        return load_le((const uint8_t *)(e->addend + lin), size);
    return rd_slow(m, lin, size, AERO_ACC_SYS);
}

void aero_wr_sys(aero_machine *m, uint32_t lin, int size, uint32_t val) {
    if (m->cpu.cpl != 3) {
        lin_wr(m, lin, size, val);
        return;
    }
    const aero_tlb_entry *e = &m->tlb[0][aero_tlb_slot(lin)];
    if (e->tag_w == (lin & ~0xFFFu) && (lin & 0xFFF) <= 0x1000u - (uint32_t)size) {
        store_le((uint8_t *)(e->addend + lin), size, val);
        return;
    }
    wr_slow(m, lin, size, val, AERO_ACC_SYS);
}
