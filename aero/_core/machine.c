/* aero core: the machine — lifetime, the run loop, state access, snapshots, fingerprints.
 *
 * The run loop executes decoded blocks while the deadline countdown lasts. The guest clock
 * advances by one tick per retired instruction (an exception or interrupt delivery takes
 * the tick of the instruction it interrupted), so a tick number names a point in time.
 */
#include <stdlib.h>

#include "cpu.h"

#ifndef AERO_CORE_STAMP
#define AERO_CORE_STAMP "unstamped"
#endif

const char *aero_core_stamp(void) { return AERO_CORE_STAMP; }

static void seg_real(aero_segment *s, uint16_t sel, uint16_t attr) {
    s->selector = sel;
    s->base = (uint32_t)sel << 4;
    s->limit = 0xFFFF;
    s->attr = attr;
}

void aero_reset(aero_machine *m) {
    aero_cpu *c = &m->cpu;
    memset(c, 0, sizeof *c);
    c->eflags = F_BIT1;
    c->eip = 0xFFF0;
    for (int i = 0; i < 6; i++) seg_real(&c->seg[i], 0, 0x93);
    seg_real(&c->seg[S_CS], 0xF000, 0x9B);
    c->seg[S_CS].base = 0xFFFF0000u; /* the reset vector sits 16 bytes below 4 GB */
    c->gdtr.limit = c->idtr.limit = 0xFFFF;
    c->ldtr.limit = 0xFFFF;
    c->ldtr.attr = 0x82;
    c->tr.limit = 0xFFFF;
    c->tr.attr = 0x8B;
    c->cr0 = 0x60000010u;
    c->dr[6] = 0xFFFF0FF0u;
    c->dr[7] = 0x400;
    c->r[R_EDX] = m->cfg.cpuid_signature;
    c->a20 = m->cfg.a20_enabled ? 1 : 0;
    aero_tlb_flush(m);
    aero_blocks_flush(m);
}

aero_machine *aero_machine_new(const aero_config *cfg) {
    if (cfg->ram_size == 0 || (cfg->ram_size & 0xFFF) || cfg->ram_size > 0xF0000000u) return NULL;
    aero_machine *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->cfg.cpuid_vendor[12] = 0;
    m->ram_size = cfg->ram_size;
    m->ram_pages = cfg->ram_size >> 12;
    m->ram = calloc(1, cfg->ram_size);
    m->page_gen = calloc(m->ram_pages, sizeof *m->page_gen);
    m->code_page = calloc(m->ram_pages, 1);
    m->dirty = malloc(m->ram_pages);
    m->page_hash = calloc(m->ram_pages, sizeof *m->page_hash);
    m->blocks = calloc(AERO_BLOCK_CACHE, sizeof *m->blocks);
    if (!m->ram || !m->page_gen || !m->code_page || !m->dirty || !m->page_hash || !m->blocks) {
        aero_machine_free(m);
        return NULL;
    }
    memset(m->dirty, 1, m->ram_pages);
    m->exit_status = -1;
    m->last_exc = -1;
    m->delivering = -1;
    aero_reset(m);
    return m;
}

void aero_machine_free(aero_machine *m) {
    if (!m) return;
    free(m->ram);
    free(m->rom);
    free(m->page_gen);
    free(m->code_page);
    free(m->dirty);
    free(m->page_hash);
    free(m->blocks);
    free(m);
}

uint8_t *aero_ram(aero_machine *m) { return m->ram; }
uint32_t aero_ram_size(aero_machine *m) { return m->ram_size; }

int aero_load_rom(aero_machine *m, const uint8_t *data, uint32_t size) {
    if (size == 0 || (size & 0xFFF) || size > 0x1000000u) return -1;
    uint8_t *rom = malloc(size);
    if (!rom) return -1;
    memcpy(rom, data, size);
    free(m->rom);
    m->rom = rom;
    m->rom_size = size;
    aero_tlb_flush(m);
    aero_blocks_flush(m);
    return 0;
}

/* ---- the run loop ---- */

/* Execute one instruction outside the block cache: used while TF is set, so that the
 * single-step trap follows every instruction (and every REP iteration). */
static void step_traced(aero_machine *m) {
    aero_insn in;
    aero_decode_one(m, &in);
    m->soft_int = 0;
    m->countdown--;
    in.fn(m, &in);
    if (!m->soft_int && m->stop < 0 && !m->cpu.halted) {
        m->cpu.dr[6] |= 0x4000; /* DR6.BS: single-step */
        aero_interrupt(m, EXC_DB, m->cpu.eip, 0, 0);
    }
}

static void run_loop(aero_machine *m) {
    while (m->stop < 0) {
        if (m->countdown <= 0) {
            m->stop = AERO_STOP_TICKS;
            break;
        }
        if (m->cpu.halted) {
            /* No device can raise an interrupt yet: nothing will ever wake the CPU. */
            m->stop = AERO_STOP_HALT;
            break;
        }
        if (AERO_UNLIKELY(m->cpu.eflags & F_TF)) {
            step_traced(m);
            continue;
        }
        aero_block *b = aero_block_lookup(m);
        const aero_insn *in = b->insn, *end = b->insn + b->n;
        m->exit_block = 0;
        if (AERO_LIKELY(m->countdown >= (int64_t)b->n)) {
            /* The whole block fits in the slice: pay its ticks up front. A fault inside
             * it refunds the unexecuted ones (aero_run), an early exit refunds here. */
            m->countdown -= b->n;
            m->blk_end = end;
            do {
                m->cur = in;
                in->fn(m, in);
                in++;
            } while (in < end && !m->exit_block);
            m->countdown += end - in;
            m->blk_end = NULL;
        } else {
            do {
                m->countdown--;
                in->fn(m, in);
                in++;
            } while (in < end && m->countdown > 0 && !m->exit_block);
        }
    }
}

int aero_run(aero_machine *m, uint64_t until_tick) {
    m->stop = -1;
    if (until_tick <= m->ticks) return AERO_STOP_TICKS;
    m->slice_end = until_tick;
    m->countdown = (int64_t)(until_tick - m->ticks);
    m->delivering = -1;
    m->blk_end = NULL;
    if (setjmp(m->fault_jmp) != 0) {
        /* An instruction (or a delivery) faulted: refund the ticks of the block's
         * instructions after it, deliver it, then carry on. */
        if (m->blk_end) {
            m->countdown += m->blk_end - (m->cur + 1);
            m->blk_end = NULL;
        }
        aero_handle_fault(m);
    }
    run_loop(m);
    m->ticks = aero_now(m);
    m->slice_end = m->ticks;
    m->countdown = 0;
    return m->stop;
}

uint64_t aero_ticks(aero_machine *m) { return m->ticks; }

/* ---- state access ---- */

void aero_get_regs(aero_machine *m, aero_regs *out) {
    const aero_cpu *c = &m->cpu;
    memset(out, 0, sizeof *out);
    memcpy(out->gpr, c->r, sizeof out->gpr);
    out->eip = c->eip;
    out->eflags = get_flags(m);
    memcpy(out->seg, c->seg, sizeof out->seg);
    out->ldtr = c->ldtr;
    out->tr = c->tr;
    out->gdtr = c->gdtr;
    out->idtr = c->idtr;
    out->cr0 = c->cr0;
    out->cr2 = c->cr2;
    out->cr3 = c->cr3;
    out->cr4 = c->cr4;
    memcpy(out->dr, c->dr, sizeof out->dr);
    out->cpl = c->cpl;
    out->halted = c->halted;
}

void aero_set_regs(aero_machine *m, const aero_regs *in) {
    aero_cpu *c = &m->cpu;
    memcpy(c->r, in->gpr, sizeof in->gpr);
    c->r[R_ZERO] = 0;
    c->eip = in->eip;
    c->eflags = (in->eflags & (F_WRITABLE)) | F_BIT1;
    c->lf_op = LF_NONE;
    memcpy(c->seg, in->seg, sizeof c->seg);
    c->ldtr = in->ldtr;
    c->tr = in->tr;
    c->gdtr = in->gdtr;
    c->idtr = in->idtr;
    c->cr0 = in->cr0;
    c->cr2 = in->cr2;
    c->cr3 = in->cr3;
    c->cr4 = in->cr4;
    memcpy(c->dr, in->dr, sizeof c->dr);
    c->cpl = in->cpl & 3;
    c->halted = in->halted ? 1 : 0;
    aero_tlb_flush(m);
}

const uint8_t *aero_output(aero_machine *m, uint32_t *len) {
    *len = m->out_len;
    return m->out;
}
void aero_output_clear(aero_machine *m) { m->out_len = 0; }
int64_t aero_exit_status(aero_machine *m) { return m->exit_status; }

void aero_set_stop_on_exception(aero_machine *m, int enable) { m->stop_on_exception = enable != 0; }
int aero_last_exception(aero_machine *m, uint32_t *error_code) {
    *error_code = m->last_exc_code;
    return m->last_exc;
}
void aero_clear_exception(aero_machine *m) {
    m->last_exc = -1;
    m->last_exc_code = 0;
}

/* ---- canonical serialization ---- */

typedef struct writer { uint8_t *p; } writer;
static void put32(writer *w, uint32_t v) {
    for (int i = 0; i < 4; i++) *w->p++ = (uint8_t)(v >> (8 * i));
}
static void put_seg(writer *w, const aero_segment *s) {
    put32(w, s->base);
    put32(w, s->limit);
    put32(w, s->selector);
    put32(w, s->attr);
}
typedef struct reader { const uint8_t *p; } reader;
static uint32_t get32(reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)*r->p++ << (8 * i);
    return v;
}
static void get_seg(reader *r, aero_segment *s) {
    s->base = get32(r);
    s->limit = get32(r);
    s->selector = (uint16_t)get32(r);
    s->attr = (uint16_t)get32(r);
}

#define CPU_STATE_VERSION 1u

void aero_cpu_serialize(aero_machine *m, uint8_t *out) {
    aero_cpu *c = &m->cpu;
    (void)get_flags(m);
    memset(out, 0, AERO_CPU_STATE_BYTES);
    writer w = {out};
    put32(&w, CPU_STATE_VERSION);
    for (int i = 0; i < 8; i++) put32(&w, c->r[i]);
    put32(&w, c->eip);
    put32(&w, c->eflags);
    for (int i = 0; i < 6; i++) put_seg(&w, &c->seg[i]);
    put_seg(&w, &c->ldtr);
    put_seg(&w, &c->tr);
    put32(&w, c->gdtr.base);
    put32(&w, c->gdtr.limit);
    put32(&w, c->idtr.base);
    put32(&w, c->idtr.limit);
    put32(&w, c->cr0);
    put32(&w, c->cr2);
    put32(&w, c->cr3);
    put32(&w, c->cr4);
    for (int i = 0; i < 8; i++) put32(&w, c->dr[i]);
    put32(&w, c->cpl);
    put32(&w, c->halted);
    put32(&w, c->inhibit_irq);
    put32(&w, c->a20);
    put32(&w, (uint32_t)c->tsc_base);
    put32(&w, (uint32_t)(c->tsc_base >> 32));
    put32(&w, c->sysenter_cs);
    put32(&w, c->sysenter_esp);
    put32(&w, c->sysenter_eip);
}

int aero_cpu_deserialize(aero_machine *m, const uint8_t *in) {
    aero_cpu *c = &m->cpu;
    reader r = {in};
    if (get32(&r) != CPU_STATE_VERSION) return -1;
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 8; i++) c->r[i] = get32(&r);
    c->eip = get32(&r);
    c->eflags = get32(&r);
    for (int i = 0; i < 6; i++) get_seg(&r, &c->seg[i]);
    get_seg(&r, &c->ldtr);
    get_seg(&r, &c->tr);
    c->gdtr.base = get32(&r);
    c->gdtr.limit = get32(&r);
    c->idtr.base = get32(&r);
    c->idtr.limit = get32(&r);
    c->cr0 = get32(&r);
    c->cr2 = get32(&r);
    c->cr3 = get32(&r);
    c->cr4 = get32(&r);
    for (int i = 0; i < 8; i++) c->dr[i] = get32(&r);
    c->cpl = get32(&r);
    c->halted = get32(&r);
    c->inhibit_irq = get32(&r);
    c->a20 = get32(&r);
    c->tsc_base = get32(&r);
    c->tsc_base |= (uint64_t)get32(&r) << 32;
    c->sysenter_cs = get32(&r);
    c->sysenter_esp = get32(&r);
    c->sysenter_eip = get32(&r);
    aero_tlb_flush(m);
    aero_blocks_flush(m);
    return 0;
}

/* ---- snapshots ---- */

#define SNAPSHOT_MAGIC 0x50414E53u /* "SNAP" */

uint64_t aero_snapshot_size(aero_machine *m) {
    return 16 + AERO_CPU_STATE_BYTES + (uint64_t)m->ram_size;
}

int aero_snapshot_save(aero_machine *m, uint8_t *out, uint64_t cap) {
    if (cap < aero_snapshot_size(m)) return -1;
    writer w = {out};
    put32(&w, SNAPSHOT_MAGIC);
    put32(&w, m->ram_size);
    put32(&w, (uint32_t)m->ticks);
    put32(&w, (uint32_t)(m->ticks >> 32));
    aero_cpu_serialize(m, w.p);
    memcpy(w.p + AERO_CPU_STATE_BYTES, m->ram, m->ram_size);
    return 0;
}

int aero_snapshot_load(aero_machine *m, const uint8_t *in, uint64_t len) {
    if (len != aero_snapshot_size(m)) return -1;
    reader r = {in};
    if (get32(&r) != SNAPSHOT_MAGIC || get32(&r) != m->ram_size) return -1;
    uint64_t ticks = get32(&r);
    ticks |= (uint64_t)get32(&r) << 32;
    if (aero_cpu_deserialize(m, r.p) != 0) return -1;
    memcpy(m->ram, r.p + AERO_CPU_STATE_BYTES, m->ram_size);
    m->ticks = ticks;
    m->slice_end = ticks;
    m->countdown = 0;
    memset(m->dirty, 1, m->ram_pages);
    memset(m->code_page, 0, m->ram_pages);
    for (uint32_t i = 0; i < m->ram_pages; i++) m->page_gen[i]++;
    aero_tlb_flush(m);
    aero_blocks_flush(m);
    return 0;
}

/* ---- fingerprints ---- */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32h(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t round64(uint64_t acc, uint64_t in) { return rotl64(acc + in * P2, 31) * P1; }
static uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * P1 + P4; }

/* XXH64, little-endian reads (hosts are little-endian: see docs/architecture.md). */
uint64_t aero_hash64(const uint8_t *p, uint64_t len, uint64_t seed) {
    const uint8_t *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        const uint8_t *limit = end - 32;
        do {
            v1 = round64(v1, rd64(p)); v2 = round64(v2, rd64(p + 8));
            v3 = round64(v3, rd64(p + 16)); v4 = round64(v4, rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = merge64(h, v1); h = merge64(h, v2); h = merge64(h, v3); h = merge64(h, v4);
    } else {
        h = seed + P5;
    }
    h += len;
    while (p + 8 <= end) { h ^= round64(0, rd64(p)); h = rotl64(h, 27) * P1 + P4; p += 8; }
    if (p + 4 <= end) { h ^= (uint64_t)rd32h(p) * P1; h = rotl64(h, 23) * P2 + P3; p += 4; }
    while (p < end) { h ^= (*p) * P5; h = rotl64(h, 11) * P1; p++; }
    h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32;
    return h;
}

uint64_t aero_fingerprint(aero_machine *m) {
    uint8_t st[AERO_CPU_STATE_BYTES + 8];
    aero_cpu_serialize(m, st);
    for (int i = 0; i < 8; i++) st[AERO_CPU_STATE_BYTES + i] = (uint8_t)(m->ticks >> (8 * i));
    for (uint32_t i = 0; i < m->ram_pages; i++) {
        if (m->dirty[i]) {
            m->page_hash[i] = aero_hash64(m->ram + ((uint64_t)i << 12), 4096, i);
            m->dirty[i] = 0;
        }
    }
    /* Pages are clean again: writes must reach the slow path to mark them. */
    aero_tlb_flush_writes(m);
    uint64_t h = aero_hash64(st, sizeof st, 0);
    return aero_hash64((const uint8_t *)m->page_hash, (uint64_t)m->ram_pages * 8, h);
}
