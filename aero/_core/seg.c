/* aero core: segmentation — segment register loads, descriptor reads, far transfers.
 *
 * Real mode and virtual-8086 mode: base = selector << 4 (the limit and attributes of the
 * descriptor cache are kept in real mode, which is what makes "unreal mode" work).
 * Protected mode: descriptors come from the GDT or LDT.
 */
#include "cpu.h"

void aero_seg_fault(aero_machine *m, int seg) {
    aero_fault(m, seg == S_SS ? EXC_SS : EXC_GP, 0, 1);
}

/* Read the 8-byte descriptor for selector sel; faults with `vec`(sel) when outside the table. */
static void read_descriptor(aero_machine *m, uint16_t sel, int vec, uint32_t *lo, uint32_t *hi) {
    uint32_t base, limit;
    if (sel & 4) {
        base = m->cpu.ldtr.base;
        limit = m->cpu.ldtr.limit;
    } else {
        base = m->cpu.gdtr.base;
        limit = m->cpu.gdtr.limit;
    }
    uint32_t off = sel & ~7u;
    if (off + 7 > limit) aero_fault(m, vec, sel & ~3u, 1);
    *lo = aero_rd_sys(m, base + off, 4);
    *hi = aero_rd_sys(m, base + off + 4, 4);
}

/* Fill a segment cache from a descriptor. */
static void desc_to_seg(aero_segment *s, uint16_t sel, uint32_t lo, uint32_t hi) {
    s->selector = sel;
    s->base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000u);
    uint32_t limit = (lo & 0xFFFF) | (hi & 0x000F0000u);
    if (hi & 0x00800000u) limit = (limit << 12) | 0xFFF;
    s->limit = limit;
    s->attr = (uint16_t)(((hi >> 8) & 0xFF) | ((hi >> 8) & 0xF000));
}

/* Set the accessed bit of a descriptor (type bit 0) in memory if clear. */
static void mark_accessed(aero_machine *m, uint16_t sel, uint32_t hi) {
    if (hi & 0x100) return;
    uint32_t base = (sel & 4) ? m->cpu.ldtr.base : m->cpu.gdtr.base;
    lin_wr(m, base + (sel & ~7u) + 5, 1, ((hi >> 8) & 0xFF) | 1);
}

void aero_load_seg(aero_machine *m, int seg, uint16_t sel) {
    aero_segment *s = &m->cpu.seg[seg];
    if (!aero_pm(m)) {
        s->selector = sel;
        s->base = (uint32_t)sel << 4;
        if (m->cpu.eflags & F_VM) {
            s->limit = 0xFFFF;
            s->attr = (uint16_t)(SA_P | SA_S | 0x3 | (3 << 5) | (seg == S_CS ? 0x8 : 0));
        }
        return;
    }
    if ((sel & ~3u) == 0) {
        /* Null selector: legal for data segments (faults on use), #GP(0) for SS. */
        if (seg == S_SS) aero_fault(m, EXC_GP, 0, 1);
        /* The cache is marked not present and expand-down over all 4 GB, so every
         * access through it fails the ordinary limit check with #GP(0), at no cost to
         * the fast path. */
        s->selector = sel;
        s->base = 0;
        s->limit = 0xFFFFFFFFu;
        s->attr = SA_S | 0x04;
        return;
    }
    uint32_t lo, hi;
    read_descriptor(m, sel, EXC_GP, &lo, &hi);
    uint32_t type = (hi >> 8) & 0x1F; /* S bit + type */
    uint32_t dpl = (hi >> 13) & 3, rpl = sel & 3, cpl = m->cpu.cpl;
    if (seg == S_SS) {
        /* Writable data segment with RPL = DPL = CPL. */
        if ((type & 0x1A) != 0x12 || rpl != cpl || dpl != cpl) aero_fault(m, EXC_GP, sel & ~3u, 1);
        if (!(hi & 0x8000)) aero_fault(m, EXC_SS, sel & ~3u, 1);
    } else {
        /* Data, or readable code; non-conforming ones need DPL >= max(CPL, RPL). */
        int is_data = (type & 0x18) == 0x10;
        int readable_code = (type & 0x1A) == 0x1A;
        int conforming = (type & 0x1C) == 0x1C;
        if (!is_data && !readable_code) aero_fault(m, EXC_GP, sel & ~3u, 1);
        if (!conforming && (dpl < cpl || dpl < rpl)) aero_fault(m, EXC_GP, sel & ~3u, 1);
        if (!(hi & 0x8000)) aero_fault(m, EXC_NP, sel & ~3u, 1);
    }
    mark_accessed(m, sel, hi);
    desc_to_seg(s, sel, lo, hi | 0x100);
}

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
    read_descriptor(m, sel, EXC_GP, &lo, &hi);
    uint32_t type = (hi >> 8) & 0x1F;
    uint32_t dpl = (hi >> 13) & 3, rpl = sel & 3, cpl = m->cpu.cpl;
    if ((type & 0x18) != 0x18) aero_fault(m, EXC_GP, sel & ~3u, 1); /* not a code segment */
    if (type & 0x04) {
        if (dpl > cpl) aero_fault(m, EXC_GP, sel & ~3u, 1);        /* conforming */
    } else if (rpl > cpl || dpl != cpl) {
        aero_fault(m, EXC_GP, sel & ~3u, 1);                       /* non-conforming */
    }
    if (!(hi & 0x8000)) aero_fault(m, EXC_NP, sel & ~3u, 1);
    aero_segment ns;
    desc_to_seg(&ns, (uint16_t)((sel & ~3u) | cpl), lo, hi | 0x100);
    if (off > ns.limit) aero_fault(m, EXC_GP, 0, 1);
    mark_accessed(m, sel, hi);
    *cs = ns;
    m->cpu.eip = off;
}

void aero_jump_near(aero_machine *m, uint32_t target) {
    if (target > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);
    m->cpu.eip = target;
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
