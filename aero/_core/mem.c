/* aero core: physical memory map, address translation, TLB and the memory slow paths.
 *
 * The TLB maps a linear page straight to host memory. A page is write-mapped only when
 * it is plain RAM, already marked dirty, and holds no decoded code: so the first write
 * after a fingerprint, and every write to decoded code, comes through here, which is
 * where dirty tracking and self-modifying-code invalidation happen.
 */
#include "cpu.h"

void aero_tlb_flush(aero_machine *m) {
    for (int i = 0; i < AERO_TLB_SIZE; i++) {
        m->tlb[i].tag_r = AERO_TLB_INVALID;
        m->tlb[i].tag_w = AERO_TLB_INVALID;
    }
}

void aero_tlb_flush_writes(aero_machine *m) {
    for (int i = 0; i < AERO_TLB_SIZE; i++) m->tlb[i].tag_w = AERO_TLB_INVALID;
}

/* Host pointer for the byte at phys, or NULL for unmapped space (open bus). */
uint8_t *aero_phys_ptr(aero_machine *m, uint32_t phys) {
    if (m->rom) {
        uint32_t alias = m->rom_size < AERO_ROM_ALIAS_MAX ? m->rom_size : AERO_ROM_ALIAS_MAX;
        if (phys >= 0x100000u - alias && phys < 0x100000u)
            return m->rom + (m->rom_size - alias) + (phys - (0x100000u - alias));
        if (phys >= 0u - m->rom_size) return m->rom + (phys - (0u - m->rom_size));
    }
    if (phys < m->ram_size) return m->ram + phys;
    return NULL;
}

/* Is phys in writable RAM (not ROM, not unmapped)? */
static int phys_is_ram(aero_machine *m, uint32_t phys) {
    uint8_t *p = aero_phys_ptr(m, phys);
    return p && p >= m->ram && p < m->ram + m->ram_size;
}

/* Two-level i386 page walk. Sets accessed/dirty bits; faults with #PF on failure. */
static uint32_t page_walk(aero_machine *m, uint32_t lin, int acc) {
    int write = acc & AERO_ACC_WRITE;
    int user = m->cpu.cpl == 3 && !(acc & AERO_ACC_SYS);
    uint32_t pde_addr = (m->cpu.cr3 & ~0xFFFu) | ((lin >> 22) << 2);
    uint32_t pde = 0;
    aero_read_phys(m, pde_addr, (uint8_t *)&pde, 4);
    uint32_t err = (write ? 2u : 0u) | (user ? 4u : 0u);
    if (!(pde & 1)) goto fault;
    if ((pde & 0x80) && (m->cpu.cr4 & 0x10)) {
        /* 4 MB page (CR4.PSE). */
        int ok_u = !user || (pde & 4);
        int ok_w = !write || (pde & 2) || (!user && !(m->cpu.cr0 & CR0_WP));
        if (!ok_u || !ok_w) { err |= 1; goto fault; }
        uint32_t npde = pde | 0x20 | (write ? 0x40 : 0);
        if (npde != pde) aero_write_phys(m, pde_addr, (uint8_t *)&npde, 4);
        return (pde & 0xFFC00000u) | (lin & 0x3FFFFFu);
    }
    uint32_t pte_addr = (pde & ~0xFFFu) | (((lin >> 12) & 0x3FF) << 2);
    uint32_t pte = 0;
    aero_read_phys(m, pte_addr, (uint8_t *)&pte, 4);
    if (!(pte & 1)) goto fault;
    {
        uint32_t both = pde & pte;
        int ok_u = !user || (both & 4);
        int ok_w = !write || (both & 2) || (!user && !(m->cpu.cr0 & CR0_WP));
        if (!ok_u || !ok_w) { err |= 1; goto fault; }
    }
    if (!(pde & 0x20)) {
        uint32_t npde = pde | 0x20;
        aero_write_phys(m, pde_addr, (uint8_t *)&npde, 4);
    }
    {
        uint32_t npte = pte | 0x20 | (write ? 0x40 : 0);
        if (npte != pte) aero_write_phys(m, pte_addr, (uint8_t *)&npte, 4);
    }
    return (pte & ~0xFFFu) | (lin & 0xFFF);
fault:
    m->cpu.cr2 = lin;
    aero_fault(m, EXC_PF, err, 1);
}

uint32_t aero_translate_slow(aero_machine *m, uint32_t lin, int acc) {
    uint32_t phys = (m->cpu.cr0 & CR0_PG) ? page_walk(m, lin, acc) : lin;
    if (!m->cpu.a20) phys &= ~0x100000u;
    return phys;
}

/* Record a write to RAM page `page`: dirty tracking and self-modifying code. */
static void note_write(aero_machine *m, uint32_t page) {
    m->dirty[page] = 1;
    if (m->code_page[page]) {
        m->code_page[page] = 0;
        m->page_gen[page]++;
        m->exit_block = 1; /* the running block may be stale */
    }
}

uint32_t aero_rd_slow(aero_machine *m, uint32_t lin, int size) {
    if ((lin & 0xFFF) + (uint32_t)size > 0x1000) {
        uint32_t v = 0;
        for (int i = 0; i < size; i++) v |= aero_rd_slow(m, lin + (uint32_t)i, 1) << (8 * i);
        return v;
    }
    uint32_t phys = aero_translate(m, lin, 0);
    uint8_t *p = aero_phys_ptr(m, phys);
    if (!p) return size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    aero_tlb_entry *e = &m->tlb[(lin >> 12) & (AERO_TLB_SIZE - 1)];
    uintptr_t addend = (uintptr_t)(p - (phys & 0xFFF)) - (lin & ~0xFFFu);
    if (e->addend != addend) e->tag_w = AERO_TLB_INVALID;
    e->tag_r = lin & ~0xFFFu;
    e->addend = addend;
    return load_le(p, size);
}

void aero_probe_write(aero_machine *m, uint32_t lin, uint32_t size) {
    if (!(m->cpu.cr0 & CR0_PG) || size == 0) return;
    (void)aero_translate(m, lin, 1);
    if (((lin + size - 1) & ~0xFFFu) != (lin & ~0xFFFu)) (void)aero_translate(m, lin + size - 1, 1);
}

void aero_wr_slow(aero_machine *m, uint32_t lin, int size, uint32_t val) {
    if ((lin & 0xFFF) + (uint32_t)size > 0x1000) {
        /* Both pages must be writable before any byte is written. */
        aero_probe_write(m, lin, (uint32_t)size);
        for (int i = 0; i < size; i++) aero_wr_slow(m, lin + (uint32_t)i, 1, (val >> (8 * i)) & 0xFF);
        return;
    }
    uint32_t phys = aero_translate(m, lin, 1);
    if (!phys_is_ram(m, phys)) return; /* ROM and open bus ignore writes */
    uint32_t page = phys >> 12;
    note_write(m, page);
    uint8_t *p = m->ram + phys;
    store_le(p, size, val);
    aero_tlb_entry *e = &m->tlb[(lin >> 12) & (AERO_TLB_SIZE - 1)];
    e->addend = (uintptr_t)(p - (phys & 0xFFF)) - (lin & ~0xFFFu);
    e->tag_r = lin & ~0xFFFu;
    /* With paging, write-map only once the dirty bit is set in the PTE: the walk above
     * did that for this write. */
    e->tag_w = lin & ~0xFFFu;
}

void aero_invalidate_code(aero_machine *m, uint32_t phys, uint32_t len) {
    if (len == 0) return;
    uint64_t end = (uint64_t)phys + len;
    if (end > m->ram_size) end = m->ram_size;
    for (uint64_t a = phys & ~0xFFFu; a < end; a += 4096) note_write(m, (uint32_t)(a >> 12));
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

/* The page walk takes U/S from the CPL, so at CPL 3 it runs with the CPL set to 0; the CPL
 * is restored on every exit (a #PF unwinds through here), and the TLB slots the walk filled
 * are dropped, since a TLB entry does not record the privilege it was checked for. */
uint32_t aero_rd_sys(aero_machine *m, uint32_t lin, int size) {
    /* Descriptor tables and the TSS are read with supervisor rights whatever the CPL;
     * at CPL 3 under paging that bypasses the TLB, so user code never inherits a mapping. */
    if (m->cpu.cpl != 3 || !(m->cpu.cr0 & CR0_PG)) return lin_rd(m, lin, size);
    uint32_t v = 0;
    for (int i = 0; i < size; i++) {
        uint32_t phys = aero_translate(m, lin + (uint32_t)i, AERO_ACC_SYS);
        uint8_t *p = aero_phys_ptr(m, phys);
        v |= (uint32_t)(p ? *p : 0xFF) << (8 * i);
    }
    return v;
}
