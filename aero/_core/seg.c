/* aero core: segmentation — segment register loads, descriptor reads, access checks, far
 * jumps to code segments, supervisor writes to system tables and stack-slot checks.
 *
 * Real mode and virtual-8086 mode: base = selector << 4 (the limit and attributes of the
 * descriptor cache are kept in real mode, which is what makes "unreal mode" work).
 * Protected mode: descriptors come from the GDT or LDT.
 *
 * Access checks: seg_lin/seg_lin_w (cpu.h) compare the end of an access with seg_end, which
 * aero_seg_refresh derives from the segment cache whenever a segment register or the mode
 * changes. In protected mode an access must also respect the segment type (SDM Vol. 3A,
 * 5.5 "Privilege Levels" and 3.4.5.1 "Code- and Data-Segment Descriptor Types"): no writes
 * through code segments or read-only data segments, no reads through execute-only code
 * segments, nothing through a null (not present) segment. Those cases, expand-down
 * segments and limit violations get seg_end 0 or fail its compare, and aero_seg_slow
 * decides them exactly. Real mode and virtual-8086 mode check the limit only.
 */
#include "cpu.h"

void aero_seg_fault(aero_machine *m, int seg) {
    aero_fault(m, seg == S_SS ? EXC_SS : EXC_GP, 0, 1);
}

/* May this protected-mode segment cache be read (write = 0) or written (write = 1)? */
static int type_allows(uint32_t attr, int write) {
    if (!(attr & SA_P) || !(attr & SA_S)) return 0; /* null or unusable */
    if (attr & 0x8) return !write && (attr & 0x2);  /* code: readable, never writable */
    return !write || (attr & 0x2);                  /* data: writable bit */
}

static uint64_t fast_end(const aero_segment *s, int pm, int write) {
    if (SA_IS_EXPAND_DOWN(s->attr)) return 0;
    if (pm && !type_allows(s->attr, write)) return 0;
    return (uint64_t)s->limit + 1;
}

void aero_seg_refresh(aero_machine *m, int seg) {
    int pm = aero_pm(m);
    const aero_segment *s = &m->cpu.seg[seg];
    m->seg_end[0][seg] = fast_end(s, pm, 0);
    m->seg_end[1][seg] = fast_end(s, pm, 1);
}

void aero_seg_refresh_all(aero_machine *m) {
    for (int i = 0; i < 6; i++) aero_seg_refresh(m, i);
}

int aero_seg_fits(const aero_segment *s, uint32_t off, uint32_t size) {
    uint64_t last = (uint64_t)off + size - 1;
    if (!SA_IS_EXPAND_DOWN(s->attr)) return last <= s->limit;
    uint64_t top = (s->attr & SA_DB) ? 0xFFFFFFFFu : 0xFFFFu;
    return off > s->limit && last <= top;
}

uint32_t aero_seg_slow(aero_machine *m, int seg, uint32_t off, uint32_t size, int write) {
    const aero_segment *s = &m->cpu.seg[seg];
    if (aero_pm(m) && !type_allows(s->attr, write)) aero_seg_fault(m, seg);
    if (!aero_seg_fits(s, off, size)) aero_seg_fault(m, seg);
    return s->base + off;
}

void aero_seg_null(aero_machine *m, int seg, uint16_t sel) {
    aero_segment *s = &m->cpu.seg[seg];
    /* Not present and expand-down over all 4 GB: unusable in every mode until reloaded. */
    s->selector = sel;
    s->base = 0;
    s->limit = 0xFFFFFFFFu;
    s->attr = SA_S | 0x04;
    aero_seg_refresh(m, seg);
}

/* ---- supervisor accesses to system tables ---- */

void aero_sys_probe(aero_machine *m, uint32_t lin, uint32_t size) {
    if (!(m->cpu.cr0 & CR0_PG) || size == 0) return;
    (void)aero_translate(m, lin, AERO_ACC_SYS | AERO_ACC_WRITE);
    if (((lin + size - 1) & ~0xFFFu) != (lin & ~0xFFFu))
        (void)aero_translate(m, lin + size - 1, AERO_ACC_SYS | AERO_ACC_WRITE);
}

/* ---- descriptors ---- */

void aero_desc_read(aero_machine *m, uint16_t sel, int vec, uint32_t ext, uint32_t *lo, uint32_t *hi) {
    if (aero_read_descriptor(m, sel, lo, hi) != 0) aero_fault(m, vec, (sel & ~3u) | ext, 1);
}

uint32_t aero_desc_limit(uint32_t lo, uint32_t hi) {
    uint32_t limit = (lo & 0xFFFF) | (hi & 0x000F0000u);
    return (hi & 0x00800000u) ? ((limit << 12) | 0xFFF) : limit;
}

void aero_desc_cache(aero_segment *s, uint16_t sel, uint32_t lo, uint32_t hi) {
    s->selector = sel;
    s->base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000u);
    s->limit = aero_desc_limit(lo, hi);
    s->attr = (uint16_t)(((hi >> 8) & 0xFF) | ((hi >> 8) & 0xF000));
}

void aero_desc_accessed(aero_machine *m, uint16_t sel, uint32_t hi) {
    if (hi & 0x100) return;
    uint32_t base = (sel & 4) ? m->cpu.ldtr.base : m->cpu.gdtr.base;
    aero_wr_sys(m, base + (sel & ~7u) + 5, 1, ((hi >> 8) & 0xFF) | 1);
}

int aero_read_descriptor(aero_machine *m, uint16_t sel, uint32_t *lo, uint32_t *hi) {
    uint32_t base, limit;
    if (sel & 4) {
        if (!(m->cpu.ldtr.attr & SA_P)) return -1; /* LDTR loaded with a null selector */
        base = m->cpu.ldtr.base;
        limit = m->cpu.ldtr.limit;
    } else {
        base = m->cpu.gdtr.base;
        limit = m->cpu.gdtr.limit;
    }
    uint32_t off = sel & ~7u;
    if (off + 7 > limit) return -1;
    *lo = aero_rd_sys(m, base + off, 4);
    *hi = aero_rd_sys(m, base + off + 4, 4);
    return 0;
}

/* ---- segment register loads ---- */

/* MOV/POP/LxS to a segment register (SDM MOV, "Operation" for protected mode). SS: a
 * non-null writable data segment with RPL = DPL = CPL (#GP(sel)), present (#SS(sel)).
 * DS/ES/FS/GS: null is allowed (faults on use); otherwise a data or readable code segment
 * (#GP(sel)) that, unless conforming code, has DPL >= CPL and DPL >= RPL (#GP(sel)),
 * present (#NP(sel)). A selector outside its table is #GP(sel). */
void aero_load_seg(aero_machine *m, int seg, uint16_t sel) {
    aero_segment *s = &m->cpu.seg[seg];
    if (!aero_pm(m)) {
        s->selector = sel;
        s->base = (uint32_t)sel << 4;
        if (m->cpu.eflags & F_VM) {
            s->limit = 0xFFFF;
            s->attr = (uint16_t)(SA_P | SA_S | 0x3 | (3 << 5) | (seg == S_CS ? 0x8 : 0));
        }
        aero_seg_refresh(m, seg);
        return;
    }
    if ((sel & ~3u) == 0) {
        if (seg == S_SS) aero_fault(m, EXC_GP, 0, 1);
        aero_seg_null(m, seg, sel);
        return;
    }
    uint32_t lo, hi;
    aero_desc_read(m, sel, EXC_GP, 0, &lo, &hi);
    uint32_t type = (hi >> 8) & 0x1F; /* S bit + type */
    uint32_t dpl = (hi >> 13) & 3, rpl = sel & 3, cpl = m->cpu.cpl, err = sel & ~3u;
    if (seg == S_SS) {
        if ((type & 0x1A) != 0x12 || rpl != cpl || dpl != cpl) aero_fault(m, EXC_GP, err, 1);
        if (!(hi & 0x8000)) aero_fault(m, EXC_SS, err, 1);
    } else {
        int is_data = (type & 0x18) == 0x10;
        int readable_code = (type & 0x1A) == 0x1A;
        int conforming = (type & 0x1C) == 0x1C;
        if (!is_data && !readable_code) aero_fault(m, EXC_GP, err, 1);
        if (!conforming && (dpl < cpl || dpl < rpl)) aero_fault(m, EXC_GP, err, 1);
        if (!(hi & 0x8000)) aero_fault(m, EXC_NP, err, 1);
    }
    aero_desc_accessed(m, sel, hi);
    aero_desc_cache(s, sel, lo, hi | 0x100);
    aero_seg_refresh(m, seg);
}

/* ---- far transfers to code segments ---- */

/* JMP, RETF and IRET to a code segment at the current privilege level (SDM JMP
 * "CONFORMING-CODE-SEGMENT"/"NONCONFORMING-CODE-SEGMENT", RETF/IRET "same privilege"):
 * conforming needs DPL <= CPL, non-conforming RPL <= CPL and DPL = CPL; CS.RPL becomes the
 * CPL. Gates and TSSs are the caller's business (a far JMP/CALL dispatches them first). */
void aero_far_jump(aero_machine *m, uint16_t sel, uint32_t off) {
    aero_segment *cs = &m->cpu.seg[S_CS];
    if (!aero_pm(m)) {
        /* Real/V86 mode: the new IP must lie within the CS limit. */
        if (off > cs->limit) aero_fault(m, EXC_GP, 0, 1);
        aero_load_seg(m, S_CS, sel);
        m->cpu.eip = off;
        return;
    }
    if ((sel & ~3u) == 0) aero_fault(m, EXC_GP, 0, 1);
    uint32_t lo, hi;
    aero_desc_read(m, sel, EXC_GP, 0, &lo, &hi);
    uint32_t type = (hi >> 8) & 0x1F;
    uint32_t dpl = (hi >> 13) & 3, rpl = sel & 3, cpl = m->cpu.cpl;
    if ((type & 0x18) != 0x18) aero_fault(m, EXC_GP, sel & ~3u, 1); /* not a code segment */
    if (type & 0x04) {
        if (dpl > cpl) aero_fault(m, EXC_GP, sel & ~3u, 1);        /* conforming */
    } else if (rpl > cpl || dpl != cpl) {
        aero_fault(m, EXC_GP, sel & ~3u, 1);                       /* non-conforming */
    }
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, sel & ~3u, 1);
    if (off > aero_desc_limit(lo, hi)) aero_fault(m, EXC_GP, 0, 1);
    aero_desc_accessed(m, sel, hi);
    aero_desc_cache(cs, (uint16_t)((sel & ~3u) | cpl), lo, hi | 0x100);
    aero_seg_refresh(m, S_CS);
    m->cpu.eip = off;
}

void aero_jump_near(aero_machine *m, uint32_t target) {
    if (target > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);
    m->cpu.eip = target;
}

/* ---- stacks ---- */

void aero_stack_slots(aero_machine *m, const aero_segment *s, uint32_t sp, int size, int n, uint32_t cpl,
                      uint32_t err, uint32_t *lin) {
    uint32_t mask = (s->attr & SA_DB) ? 0xFFFFFFFFu : 0xFFFFu;
    for (int i = 0; i < n; i++) {
        uint32_t off = (sp - (uint32_t)((i + 1) * size)) & mask;
        if (!aero_seg_fits(s, off, (uint32_t)size)) aero_fault(m, EXC_SS, err, 1);
        lin[i] = s->base + off;
    }
    /* The pushes happen at privilege cpl: at CPL 3 (the current one then) exactly as a
     * user write, alignment check included; otherwise with supervisor rights. */
    for (int i = 0; i < n; i++) {
        if (cpl == 3) aero_probe_write(m, lin[i], (uint32_t)size);
        else aero_sys_probe(m, lin[i], (uint32_t)size);
    }
}
