/* aero core: the machine — lifetime, the run loop, state access, snapshots, fingerprints.
 *
 * The run loop executes decoded blocks while the deadline countdown lasts. The guest clock
 * advances by one tick per retired instruction (an exception or interrupt delivery takes
 * the tick of the instruction it interrupted), so a tick number names a point in time.
 */
#include <stdlib.h>

#include "platform.h"

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
    aero_fpu_reset(&c->fpu);
    /* Run-loop state tied to the CPU (the interrupt controller side is kept). */
    m->cur = NULL;
    m->dbg_hits = 0;
    m->attn = m->intr ? AERO_ATTN_INTR : 0; /* raised interrupts stay pending */
    if (m->watch_exec) m->attn |= AERO_ATTN_WATCH; /* host watches outlive a reset */
    m->ac_low = 0;
    for (int i = 0; i < AERO_TLB_SIZE; i++) m->tlb_none[i].tag_r = m->tlb_none[i].tag_w = AERO_TLB_INVALID;
    aero_tlb_fast_refresh(m);
    memcpy(m->dr_seen, c->dr, 4 * sizeof c->dr[0]);
    m->dr_seen[4] = c->dr[7];
    aero_seg_refresh_all(m); /* the segment access checks (seg_end) */
    aero_tlb_flush_all(m);
    aero_blocks_flush(m);
}

aero_machine *aero_machine_new(const aero_config *cfg) {
    if (cfg->ram_size == 0 || (cfg->ram_size & 0xFFF) || cfg->ram_size > 0xF0000000u) return NULL;
    if (cfg->tick_hz == 0 || cfg->platform_rev > AERO_PLATFORM_REV) return NULL;
    aero_machine *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->cfg.cpuid_vendor[12] = 0;
    m->ram_size = cfg->ram_size;
    m->ram_pages = cfg->ram_size >> 12;
    m->ram = calloc(1, cfg->ram_size);
    m->page_gen = calloc(m->ram_pages, sizeof *m->page_gen);
    m->code_page = calloc(m->ram_pages, 1);
    m->code_bits = calloc(m->ram_pages, sizeof *m->code_bits);
    m->dirty = malloc(m->ram_pages);
    m->page_hash = calloc(m->ram_pages, sizeof *m->page_hash);
    m->blocks = calloc(AERO_BLOCK_CACHE, sizeof *m->blocks);
    if (!m->ram || !m->page_gen || !m->code_page || !m->code_bits || !m->dirty || !m->page_hash || !m->blocks) {
        aero_machine_free(m);
        return NULL;
    }
    memset(m->dirty, 1, m->ram_pages);
    m->exit_status = -1;
    m->last_exc = -1;
    m->delivering = -1;
    if (aero_pc_init(m) != 0) {
        aero_machine_free(m);
        return NULL;
    }
    aero_reset(m);
    if (m->pc) m->cpu.a20 = m->pc->a20_kbc || (m->pc->port92 & 0x02);
    return m;
}

void aero_machine_free(aero_machine *m) {
    if (!m) return;
    free(m->ram);
    free(m->rom);
    free(m->page_gen);
    free(m->code_page);
    free(m->code_bits);
    free(m->dirty);
    free(m->page_hash);
    free(m->blocks);
    free(m->port_log);
    free(m->watch_log);
    aero_pc_free(m);
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
    aero_tlb_flush_all(m);
    aero_blocks_flush(m);
    return 0;
}

/* ---- the run loop ----
 *
 * The fast path runs decoded blocks and looks at nothing but the countdown and one word of
 * "attention" conditions per block. Everything else happens in attend(), between two
 * instructions and in the architecture's priority order: debug traps of the instruction
 * that just ran, NMI, INTR, then instruction breakpoints; instructions that must run alone
 * (interrupt shadow, single-step, RF, instruction and I/O breakpoints, an NMI handler whose
 * IRET is awaited) go through step().
 *
 * Ticks: an instruction (or REP iteration) takes one. A fault takes the tick of the
 * instruction that faulted, also when it was raised fetching that instruction. A trap is
 * part of the instruction that caused it (like INT n). An NMI or external interrupt takes
 * the tick of the instruction it interrupts, which then runs later with a tick of its own.
 */

/* Handlers the run loop recognises (generated declarations live in decode.c's table). */
void aero_op_iret(aero_machine *m, const aero_insn *in);
void aero_op_mov_SwEw(aero_machine *m, const aero_insn *in);
void aero_op_pop_sreg(aero_machine *m, const aero_insn *in);
void aero_op_movs(aero_machine *m, const aero_insn *in);
void aero_op_cmps(aero_machine *m, const aero_insn *in);
void aero_op_stos(aero_machine *m, const aero_insn *in);
void aero_op_lods(aero_machine *m, const aero_insn *in);
void aero_op_scas(aero_machine *m, const aero_insn *in);
void aero_op_ins(aero_machine *m, const aero_insn *in);
void aero_op_outs(aero_machine *m, const aero_insn *in);
void aero_op_in_Ib(aero_machine *m, const aero_insn *in);
void aero_op_in_DX(aero_machine *m, const aero_insn *in);
void aero_op_out_Ib(aero_machine *m, const aero_insn *in);
void aero_op_out_DX(aero_machine *m, const aero_insn *in);

#define CR4_DE 0x008u

_Static_assert(offsetof(aero_cpu, inhibit_irq) == offsetof(aero_cpu, halted) + 4,
               "the run loop reads halted and inhibit_irq as one word");

/* MOV SS and POP SS: their shadow also holds back debug traps (LSS and STI do not). */
static int is_ss_load(const aero_insn *in) {
    return (in->fn == aero_op_mov_SwEw && in->reg == S_SS) || (in->fn == aero_op_pop_sreg && in->op == 0x17);
}

static int is_string(const aero_insn *in) {
    aero_handler f = in->fn;
    return f == aero_op_movs || f == aero_op_cmps || f == aero_op_stos || f == aero_op_lods ||
           f == aero_op_scas || f == aero_op_ins || f == aero_op_outs;
}

/* Did the last instruction stop a REP string instruction before its last iteration (EIP
 * still on it)? Then an interrupt or trap delivered now pushes RF = 1. Across runs (and
 * snapshots) the answer is kept in cpu.rep_partial. */
static int rep_unfinished(aero_machine *m) {
    const aero_insn *in = m->cur;
    if (!in) return (int)m->cpu.rep_partial;
    if (!in->rep || !is_string(in)) return 0;
    uint32_t cnt = in->asz ? m->cpu.r[R_ECX] : (m->cpu.r[R_ECX] & 0xFFFF);
    if (cnt == 0) return 0;
    if (in->fn == aero_op_cmps || in->fn == aero_op_scas) {
        int zf = (get_flags(m) & F_ZF) != 0;
        if (in->rep == 0xF3 ? !zf : zf) return 0; /* the compare ended it */
    }
    return 1;
}

/* The port and size of the access an I/O instruction made, or 0 if it is none. */
static uint32_t io_access(aero_machine *m, const aero_insn *in, uint16_t *port) {
    aero_handler f = in->fn;
    int size = (in->op & 1) ? osize(in) : 1;
    if (f == aero_op_in_Ib || f == aero_op_out_Ib) *port = (uint16_t)(in->imm & 0xFF);
    else if (f == aero_op_in_DX || f == aero_op_out_DX || f == aero_op_ins || f == aero_op_outs)
        *port = (uint16_t)m->cpu.r[R_EDX];
    else return 0;
    return (uint32_t)size;
}

/* I/O breakpoints (R/W = 10) exist only with CR4.DE; without it the encoding is undefined
 * and such a breakpoint never triggers. */
static uint32_t io_bps(const aero_machine *m) {
    return (m->cpu.cr4 & CR4_DE) ? aero_bp_enabled(m, 2) : 0;
}

static void attn_update(aero_machine *m) {
    uint32_t a = m->attn & (AERO_ATTN_AC | AERO_ATTN_INTR | AERO_ATTN_RESET);
    if (m->dbg_hits || m->cpu.dbg_pending) a |= AERO_ATTN_DEBUG;
    if (m->cpu.nmi_pending || m->cpu.nmi_blocked) a |= AERO_ATTN_NMI;
    if (m->watch_stop || m->watch_exec) a |= AERO_ATTN_WATCH;
    m->attn = a;
}

static void intr_update(aero_machine *m) {
    m->intr = m->intr_line || m->intr_count > 0;
    m->attn = (m->attn & ~AERO_ATTN_INTR) | (m->intr ? AERO_ATTN_INTR : 0);
}

/* Deliver the #DB trap collected in dbg_pending: B0-B3 report the breakpoints hit (replacing
 * older ones), BS a single step; the return address is the next instruction. */
static void debug_trap(aero_machine *m) {
    uint32_t p = m->cpu.dbg_pending;
    m->cpu.dbg_pending = 0;
    attn_update(m);
    if (p & 0xFu) m->cpu.dr[6] = (m->cpu.dr[6] & ~0xFu) | (p & 0xFu);
    m->cpu.dr[6] |= p & DR6_BS;
    m->last_exc = EXC_DB;
    m->last_exc_code = 0;
    if (m->stop_on_exception) {
        m->stop = AERO_STOP_EXCEPTION;
        return;
    }
    if (rep_unfinished(m)) m->cpu.eflags |= F_RF;
    m->cur = NULL;
    m->cpu.rep_partial = 0;
    aero_interrupt(m, EXC_DB, m->cpu.eip, 0, 0);
}

/* Deliver an NMI or an external interrupt: it takes the tick of the instruction it
 * interrupts (a fault while delivering it takes the same tick). */
static void deliver_event(aero_machine *m, int vector) {
    m->countdown--;
    m->paid = 1;
    if (rep_unfinished(m)) m->cpu.eflags |= F_RF;
    m->cur = NULL;
    m->cpu.rep_partial = 0;
    aero_interrupt(m, vector, m->cpu.eip, 0, 0);
    m->paid = 0;
}

/* The interrupt-acknowledge cycle: raised vectors first, then the controller. */
static int intr_ack(aero_machine *m) {
    int v = -1;
    if (m->intr_count) {
        v = m->intr_queue[0];
        memmove(m->intr_queue, m->intr_queue + 1, --m->intr_count);
        m->intr_queue[m->intr_count] = 0;
    } else if (m->intr_line && m->intr_ack) {
        v = m->intr_ack(m, m->intr_ctx);
    }
    intr_update(m);
    if (v >= 0) aero_log_event(m, AERO_EV_INTA, (uint32_t)v, 0);
    return v;
}

/* Execute one instruction alone (see the top of this section). */
static void step(aero_machine *m) {
    aero_cpu *c = &m->cpu;
    uint32_t shadow = c->inhibit_irq, f0 = c->eflags;
    aero_insn *in = &m->step_insn;
    c->inhibit_irq = 0;
    m->countdown--;
    m->paid = 1;
    m->cur = NULL;
    c->rep_partial = 0;
    /* Instruction breakpoints: faults before the instruction, ignored while RF is set and
     * right after MOV SS / POP SS. */
    if (!(f0 & F_RF) && shadow != 2 && (c->dr[7] & 0xFFu)) {
        uint32_t hits = aero_bp_match(m, aero_bp_enabled(m, 0), c->seg[S_CS].base + c->eip, 1);
        if (hits) {
            c->dr[6] = (c->dr[6] & ~0xFu) | hits;
            m->last_exc = EXC_DB;
            m->last_exc_code = 0;
            if (m->stop_on_exception) {
                m->countdown++; /* not executed, not delivered */
                m->paid = 0;
                m->stop = AERO_STOP_EXCEPTION;
                return;
            }
            aero_interrupt(m, EXC_DB, c->eip, 0, 0); /* the fault's tick is paid */
            m->paid = 0;
            return;
        }
    }
    c->eflags &= ~F_RF; /* cleared as the instruction starts */
    aero_decode_one(m, in);
    m->dbg_hits = 0; /* instruction fetches do not trigger data breakpoints */
    m->soft_int = 0;
    uint32_t iobp = (c->dr[7] & 0xFFu) ? io_bps(m) : 0;
    uint16_t port = 0;
    uint32_t iosize = iobp ? io_access(m, in, &port) : 0;
    if (iosize && in->rep && ((in->asz ? c->r[R_ECX] : (c->r[R_ECX] & 0xFFFF)) == 0)) iosize = 0;
    /* With I/O breakpoints armed a REP INS/OUTS runs one iteration per step. */
    m->exit_block = iosize != 0;
    m->cur = in;
    in->fn(m, in);
    m->paid = 0;
    uint32_t pend = m->dbg_hits;
    m->dbg_hits = 0;
    if (iosize) pend |= aero_bp_match(m, iobp, port, iosize);
    /* Single step: after every instruction that began with TF set, except INT n / INT3 /
     * INTO / INT1 that delivered (they clear TF) and HLT (the CPU halts first). */
    if ((f0 & F_TF) && !m->soft_int && !c->halted) pend |= DR6_BS;
    if (in->fn == aero_op_iret) c->nmi_blocked = 0;
    c->dbg_pending |= pend;
    if (c->inhibit_irq && is_ss_load(in)) c->inhibit_irq = 2; /* traps wait for the shadow's end */
    attn_update(m);
}

/* Make the TLB and the alignment-check state fit the debug registers and flags. */
static void prepare(aero_machine *m) {
    const uint32_t *d = m->cpu.dr;
    if ((d[7] & 0xFFu) && (d[0] != m->dr_seen[0] || d[1] != m->dr_seen[1] || d[2] != m->dr_seen[2] ||
                           d[3] != m->dr_seen[3] || d[7] != m->dr_seen[4])) {
        /* Pages a data breakpoint now watches must not stay mapped. */
        memcpy(m->dr_seen, d, 4 * sizeof *d);
        m->dr_seen[4] = d[7];
        aero_tlb_flush_all(m);
    }
    int armed = (m->cpu.cr0 & CR0_AM) && (m->cpu.eflags & F_AC) && m->cpu.cpl == 3;
    m->ac_low = armed ? 3u : 0u;
    if (armed) m->attn |= AERO_ATTN_AC;
    else m->attn &= ~AERO_ATTN_AC;
    aero_tlb_fast_refresh(m);
}

/* A block's deferred-EIP prefix (aero_block.npre): its entries run one into the next from a
 * single call, without the exit test or m->cur, and EIP is stored once after them. Returns
 * the first entry after it, or NULL when an entry set exit_block (EIP and m->cur are then
 * that instruction's, see aero_prefix_generic). The caller has cleared exit_block. */
AERO_INLINE const aero_insn *run_prefix(aero_machine *m, const aero_block *b) {
    if (b->npre) {
        b->insn[0].fn(m, b->insn);
        if (AERO_UNLIKELY(m->exit_block)) return NULL;
        m->cpu.eip += (uint32_t)b->pre_delta;
    }
    return b->insn + b->npre;
}

/* Entries [in, run_end) one at a time, each with m->cur and the exit test after it; returns
 * the entry after the last one run. */
AERO_INLINE const aero_insn *run_entries(aero_machine *m, const aero_insn *in, const aero_insn *run_end) {
    do {
        m->cur = in;
        in->fn(m, in);
        in++;
    } while (in < run_end && !m->exit_block);
    return in;
}

/* Run one decoded block. */
AERO_INLINE void exec_block(aero_machine *m, aero_block *b) {
    const aero_insn *in = b->insn, *end = b->insn + b->n, *run_end = b->insn + b->nrun;
    m->exit_block = 0;
    if (AERO_LIKELY(m->countdown >= (int64_t)b->n)) {
        /* The whole block fits in the slice: pay its ticks up front. A fault inside it
         * refunds the unexecuted ones (aero_run), an early exit refunds here. A fused pair
         * at the end runs as one entry (nrun), its ticks are still two. */
        m->countdown -= b->n;
        m->blk_end = end;
        in = run_prefix(m, b);
        if (AERO_UNLIKELY(!in)) {
            in = m->cur + 1;
        } else {
            in = run_entries(m, in, run_end);
            if (in == run_end) in = end;
        }
        m->countdown += end - in;
        m->blk_end = NULL;
    } else {
        /* One tick at a time: a fused pair runs as its two instructions. */
        const aero_insn *fused = b->unfused ? end - 2 : NULL, *pre_end = b->insn + b->npre;
        m->paid = 1;
        do {
            m->countdown--;
            m->cur = in;
            if (AERO_UNLIKELY(in == fused)) b->unfused(m, in);
            else if (in < pre_end) aero_prefix_normal(in)(m, in); /* the form that advances EIP */
            else in->fn(m, in);
            in++;
        } while (in < end && m->countdown > 0 && !m->exit_block);
        m->paid = 0;
    }
}

/* Does an instruction watch lie in [lin, lin+len)? */
static int exec_watched(const aero_machine *m, uint32_t lin, uint32_t len) {
    for (int i = 0; i < AERO_WATCH_MAX; i++)
        if ((m->watch[i].flags & AERO_WATCH_EXEC) && m->watch[i].addr - lin < len) return 1;
    return 0;
}

static __attribute__((noinline, cold)) void attend(aero_machine *m) {
    aero_cpu *c = &m->cpu;
    if (m->reset_pending) {
        /* A device pulsed RESET during the last instruction: the CPU restarts now. */
        uint32_t cause = m->reset_pending;
        m->reset_pending = 0;
        m->attn &= ~AERO_ATTN_RESET;
        aero_pc_do_reset(m, cause);
        return;
    }
    if (m->watch_stop) {
        /* A data watch was hit by the instruction (or delivery) that just completed. */
        m->watch_stop = 0;
        attn_update(m);
        m->stop = AERO_STOP_WATCH;
        return;
    }
    if (c->inhibit_irq == 1 && m->cur && is_ss_load(m->cur)) c->inhibit_irq = 2;
    if (m->dbg_hits) {
        c->dbg_pending |= m->dbg_hits;
        m->dbg_hits = 0;
    }
    if (m->countdown <= 0) {
        m->stop = AERO_STOP_TICKS;
        return;
    }
    /* Traps of the previous instruction, then NMI, then INTR. */
    if (c->dbg_pending && c->inhibit_irq != 2) {
        debug_trap(m);
        return;
    }
    attn_update(m);
    int shadow = c->inhibit_irq != 0;
    if (!shadow && c->nmi_pending && !c->nmi_blocked) {
        c->nmi_pending = 0;
        c->nmi_blocked = 1;
        attn_update(m);
        deliver_event(m, EXC_NMI);
        return;
    }
    if (!shadow && m->intr && (c->eflags & F_IF)) {
        int v = intr_ack(m);
        if (v >= 0) {
            deliver_event(m, v & 0xFF);
            return;
        }
    }
    if (c->halted) {
        m->stop = AERO_STOP_HALT;
        return;
    }
    prepare(m);
    if (m->watch_exec) {
        uint32_t lin = c->seg[S_CS].base + c->eip;
        if (m->watch_skip != aero_now(m) + 1 && exec_watched(m, lin, 1)) {
            m->watch_hit = 1;
            m->watch_hit_lin = lin;
            m->watch_hit_phys = lin;
            m->watch_hit_size = 1;
            m->watch_hit_kind = AERO_WATCH_EXEC;
            m->watch_hit_value = 0;
            m->watch_hit_eip = c->eip;
            m->stop = AERO_STOP_WATCH;
            return;
        }
        /* A watched instruction inside the block: run up to it one instruction at a time. */
        aero_block *b = aero_block_lookup(m);
        uint32_t len = 0;
        for (uint32_t i = 0; i < b->n; i++) len += b->insn[i].len;
        /* A block that goes on at a CALL/JMP target holds bytes elsewhere on its page. */
        if ((len > 1 && exec_watched(m, lin + 1, len - 1)) ||
            (b->span_hi && exec_watched(m, (lin & ~0xFFFu) + b->span_lo, b->span_hi - b->span_lo))) {
            step(m);
            return;
        }
    }
    if (shadow || (c->eflags & (F_TF | F_RF)) || c->nmi_blocked ||
        ((c->dr[7] & 0xFFu) && (aero_bp_enabled(m, 0) || io_bps(m)))) {
        step(m);
        return;
    }
    /* Only data breakpoints or alignment checking: blocks run as usual. */
    aero_block *b = aero_block_lookup(m);
    m->dbg_hits = 0; /* instruction fetches do not trigger data breakpoints */
    exec_block(m, b);
}

/* Kept out of aero_run: a function that calls setjmp keeps its locals in memory. */
static __attribute__((noinline)) void run_loop(aero_machine *m) {
    while (m->stop < 0) {
        aero_tlb_fast_refresh(m); /* the CPL may have changed since the last block */
        /* One test for everything attend() handles: TF, RF, AC; HLT and an interrupt shadow
         * (one 64-bit load); enabled breakpoints; the attention word, whose INTR bit counts
         * only with IF set. */
        uint32_t f = m->cpu.eflags;
        uint64_t hs;
        memcpy(&hs, &m->cpu.halted, sizeof hs);
        if (AERO_UNLIKELY((f & (F_TF | F_RF | F_AC)) | hs | (m->attn & ((f >> 9) | ~AERO_ATTN_INTR)) |
                          (m->cpu.dr[7] & 0xFFu))) {
            attend(m);
            continue;
        }
        if (m->countdown <= 0) {
            m->stop = AERO_STOP_TICKS;
            break;
        }
        /* A chain of blocks: after a block of plain instructions only (b->plain) that ran
         * to its end, nothing the test above looks at can have changed (whatever could
         * sets exit_block), so the next block follows without it; the mode and CS (base,
         * limit) are also unchanged, so the jump cache is probed with them as they were. */
        const aero_segment *cs = &m->cpu.seg[S_CS];
        uint32_t mode = aero_jump_mode(m), base = cs->base, limit = cs->limit;
        aero_block *b = aero_block_find(m);
        for (;;) {
            if (AERO_UNLIKELY(m->countdown < (int64_t)b->n)) {
                if (m->countdown > 0) exec_block(m, b); /* the block does not fit in the slice */
                break;
            }
            /* A fused pair at the end runs as one entry (nrun); its ticks are still two. */
            const aero_insn *in = b->insn, *end = b->insn + b->n, *run_end = b->insn + b->nrun;
            m->countdown -= b->n;
            m->blk_end = end;
            m->exit_block = 0;
            in = run_prefix(m, b);
            if (AERO_UNLIKELY(!in)) {
                /* An entry of the prefix set it (a generic case): refund what follows. */
                m->countdown += end - (m->cur + 1);
                m->blk_end = NULL;
                break;
            }
            if (b->quiet) {
                /* Nothing in the block can set exit_block: no test per instruction. Nor is
                 * m->cur stored per instruction: the only handlers here that can fault (Jcc
                 * and JMP past the CS limit) store it themselves first. */
                do {
                    in->fn(m, in);
                } while (++in < run_end);
                m->cur = end - 1;
            } else {
                in = run_entries(m, in, run_end);
                if (AERO_UNLIKELY(m->exit_block)) {
                    /* Whatever set it (and every stop an instruction makes sets it); a
                     * fused pair cannot, so the refund counts the entries left. */
                    m->countdown += end - in;
                    m->blk_end = NULL;
                    break;
                }
            }
            if (!b->plain) {
                m->blk_end = NULL;
                break;
            }
            /* The next block: one of this block's links, else the jump cache, else a
             * lookup; a block found either way becomes this block's first link. */
            uint32_t eip = m->cpu.eip, lin = base + eip;
            const uint64_t key = lin | (uint64_t)mode << 32, epoch = m->code_epoch;
            aero_block *prev = b;
            if (AERO_UNLIKELY(eip > limit)) {
                m->blk_end = NULL;
                break; /* aero_block_lookup raises the #GP */
            }
            if (AERO_LIKELY(prev->link[0].key == key && prev->link[0].epoch == epoch)) {
                b = prev->link[0].b; /* blk_end is set again before anything can fault */
                continue;
            }
            if (prev->link[1].key == key && prev->link[1].epoch == epoch) {
                b = prev->link[1].b;
            } else {
                const aero_jump_entry *j = &m->jump[aero_jump_slot(lin)];
                if (AERO_LIKELY(j->lin == lin && j->epoch == epoch && j->mode == mode)) {
                    b = j->b;
                } else {
                    m->blk_end = NULL;
                    if (m->countdown <= 0) break; /* no fetch past the slice */
                    b = aero_block_lookup(m);
                    /* A block decoded just now moved the epoch: its links start empty. */
                    if (b == &m->scratch || m->code_epoch != epoch) continue;
                }
            }
            prev->link[1] = prev->link[0];
            prev->link[0] = (aero_block_link){key, epoch, b};
        }
    }
}

static int cpu_run(aero_machine *m, uint64_t until_tick) {
    m->stop = -1;
    if (until_tick <= m->ticks) return AERO_STOP_TICKS;
    if (m->cpu.shutdown) return AERO_STOP_SHUTDOWN;
    m->slice_end = until_tick;
    m->countdown = (int64_t)(until_tick - m->ticks);
    m->delivering = -1;
    m->blk_end = NULL;
    m->paid = 0;
    m->cur = NULL; /* what the last run ended inside is in cpu.rep_partial */
    if (setjmp(m->fault_jmp) != 0) {
        /* An instruction (or a delivery) faulted. The fault takes the instruction's tick:
         * refund the block's instructions after it, or take the tick if it was not paid
         * (a fault while fetching, or while delivering a trap). Then deliver it. */
        if (m->blk_end) {
            m->countdown += m->blk_end - (m->cur + 1);
            m->blk_end = NULL;
        } else if (!m->paid) {
            m->countdown--;
        }
        m->cur = NULL;
        m->cpu.rep_partial = 0;
        m->dbg_hits = 0; /* the faulting instruction did not complete */
        m->fetching = 0;
        if (m->watch_stop) m->watch_stop = m->watch_hit = 0; /* nor did its accesses */
        m->paid = 1;     /* faults while delivering it belong to the same tick */
        aero_handle_fault(m);
        m->paid = 0;
        attn_update(m);
    }
    run_loop(m);
    /* Leave nothing between instructions outside the serialized state. */
    m->cpu.dbg_pending |= m->dbg_hits;
    m->dbg_hits = 0;
    m->cpu.rep_partial = (uint32_t)rep_unfinished(m);
    attn_update(m);
    m->ticks = aero_now(m);
    m->slice_end = m->ticks;
    m->countdown = 0;
    return m->stop;
}

/* Can anything wake a halted CPU? An interrupt when IF = 1 (a device timer or an input may
 * raise one), or an NMI already latched. */
static int may_wake(const aero_machine *m) {
    return (m->cpu.eflags & F_IF) || (m->cpu.nmi_pending && !m->cpu.nmi_blocked);
}

/* The platform's loop around the CPU: slices end at device deadlines, where the timers run;
 * a halted CPU that an interrupt may wake skips to the next deadline (idle time costs no
 * host time). Without devices, HLT stops the run as before. */
int aero_run(aero_machine *m, uint64_t until_tick) {
    for (;;) {
        if (m->ev_len >= AERO_EVENT_CAP) return AERO_STOP_EVENTS;
        if (m->deadline <= m->ticks) {
            aero_pc_fire_timers(m); /* each timer moves its deadline past now */
            continue;
        }
        if (until_tick <= m->ticks) return AERO_STOP_TICKS;
        uint64_t end = m->deadline < until_tick ? m->deadline : until_tick;
        int r = cpu_run(m, end);
        if (r == AERO_STOP_TICKS) continue;
        if (r == AERO_STOP_HALT && m->pc && may_wake(m)) {
            /* Nothing happens before the next deadline or the slice's end; the slice may
             * have moved the deadline earlier (a handler programmed a device, then HLT). */
            uint64_t wake = m->deadline < end ? m->deadline : end;
            if (wake < m->ticks) wake = m->ticks;
            m->ticks = wake;
            m->slice_end = wake;
            continue;
        }
        return r;
    }
}

uint64_t aero_ticks(aero_machine *m) { return m->ticks; }

void aero_watch_resume(aero_machine *m) { m->watch_skip = m->ticks + 1; }

/* ---- interrupts ---- */

void aero_set_intr(aero_machine *m, int asserted) {
    m->intr_line = asserted != 0;
    intr_update(m);
    if (m->intr) m->exit_block = 1;
}

void aero_set_intr_controller(aero_machine *m, aero_intr_ack_fn ack, void *ctx) {
    m->intr_ack = ack;
    m->intr_ctx = ctx;
}

void aero_raise_interrupt_internal(aero_machine *m, uint32_t vector) {
    m->intr_queue[m->intr_count++] = (uint8_t)vector;
    intr_update(m);
    m->exit_block = 1;
}

int aero_raise_interrupt(aero_machine *m, uint32_t vector) {
    return aero_inject(m, AERO_EV_INTR, vector, 0);
}

uint32_t aero_pending_interrupts(aero_machine *m) { return m->intr_count; }

void aero_raise_nmi(aero_machine *m) { (void)aero_inject(m, AERO_EV_NMI, 0, 0); }

void aero_raise_nmi_internal(aero_machine *m) {
    m->cpu.nmi_pending = 1;
    attn_update(m);
    m->exit_block = 1;
}

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
    c->shutdown = 0;
    c->rep_partial = 0;
    m->cur = NULL;
    aero_seg_refresh_all(m); /* the segment access checks (seg_end) */
    aero_tlb_flush_all(m);
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

/* Version 2 added the x87 (bytes 316-439). A state whose x87 is in its power-on state has
 * that region all zero and is written as version 1: byte for byte what builds without the
 * x87 wrote and read (recorded fingerprints stay valid), while a state that carries x87
 * data is version 2, which those builds refuse instead of silently dropping it. */
#define CPU_STATE_VERSION 2u

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
    /* Added later: zero in the common case, so older states read back unchanged. */
    put32(&w, c->nmi_pending);
    put32(&w, c->nmi_blocked);
    put32(&w, c->dbg_pending);
    put32(&w, c->shutdown);
    put32(&w, c->rep_partial);
    put32(&w, m->intr_line);
    put32(&w, m->intr_count);
    for (int i = 0; i < AERO_INTR_QUEUE; i += 4)
        put32(&w, (uint32_t)m->intr_queue[i] | ((uint32_t)m->intr_queue[i + 1] << 8) |
                      ((uint32_t)m->intr_queue[i + 2] << 16) | ((uint32_t)m->intr_queue[i + 3] << 24));
    /* The x87 (bytes 316-439), relative to its power-on state (FCW stored XOR 0040h;
     * registers +0.0 and valid, everything else 0), so that a machine that never used it
     * serializes exactly as before the x87 was modeled (see CPU_STATE_VERSION). */
    const aero_fpu *f = &c->fpu;
    const uint8_t *fpu_start = w.p;
    for (int i = 0; i < 8; i++) {
        put32(&w, (uint32_t)f->sig[i]);
        put32(&w, (uint32_t)(f->sig[i] >> 32));
        put32(&w, f->se[i]);
    }
    put32(&w, (uint32_t)(f->fcw ^ FPU_FCW_RESET));
    put32(&w, f->fsw);
    put32(&w, f->empty | ((uint32_t)f->ferr << 8) | ((uint32_t)f->ignne << 9));
    put32(&w, f->fop | ((uint32_t)f->fcs << 16));
    put32(&w, f->fip);
    put32(&w, f->fds);
    put32(&w, f->fdp);
    int fpu_used = 0;
    for (const uint8_t *p = fpu_start; p < w.p; p++) fpu_used |= *p;
    if (!fpu_used) out[0] = 1; /* the version's low byte: see CPU_STATE_VERSION */
}

int aero_cpu_deserialize(aero_machine *m, const uint8_t *in) {
    aero_cpu *c = &m->cpu;
    reader r = {in};
    uint32_t version = get32(&r);
    if (version != 1 && version != CPU_STATE_VERSION) return -1;
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
    c->nmi_pending = get32(&r);
    c->nmi_blocked = get32(&r);
    c->dbg_pending = get32(&r);
    c->shutdown = get32(&r);
    c->rep_partial = get32(&r);
    m->intr_line = get32(&r);
    m->intr_count = get32(&r);
    if (m->intr_count > AERO_INTR_QUEUE) m->intr_count = AERO_INTR_QUEUE;
    for (int i = 0; i < AERO_INTR_QUEUE; i += 4) {
        uint32_t v = get32(&r);
        for (int k = 0; k < 4; k++) m->intr_queue[i + k] = (uint8_t)(v >> (8 * k));
    }
    aero_fpu *f = &c->fpu;
    for (int i = 0; i < 8; i++) {
        f->sig[i] = get32(&r);
        f->sig[i] |= (uint64_t)get32(&r) << 32;
        f->se[i] = (uint16_t)get32(&r);
    }
    f->fcw = (uint16_t)(get32(&r) ^ FPU_FCW_RESET);
    f->fsw = (uint16_t)get32(&r);
    uint32_t v = get32(&r);
    f->empty = (uint8_t)v;
    f->ferr = (uint8_t)((v >> 8) & 1);
    f->ignne = (uint8_t)((v >> 9) & 1);
    v = get32(&r);
    f->fop = (uint16_t)(v & 0x7FF);
    f->fcs = (uint16_t)(v >> 16);
    f->fip = get32(&r);
    f->fds = (uint16_t)get32(&r);
    f->fdp = get32(&r);
    m->cur = NULL;
    m->dbg_hits = 0;
    intr_update(m);
    attn_update(m);
    aero_seg_refresh_all(m); /* the segment access checks (seg_end) */
    aero_tlb_flush_all(m);
    aero_blocks_flush(m);
    return 0;
}

/* ---- snapshots ---- */

#define SNAPSHOT_MAGIC 0x32504E53u /* "SNP2": CPU, devices, RAM */

static uint64_t snapshot_base_size(aero_machine *m) {
    return 16 + AERO_CPU_STATE_BYTES + AERO_DEV_STATE_BYTES + (uint64_t)m->ram_size;
}

/* The base size plus, for a writable disk, its overlay (aero_disk_overlay_save). */
uint64_t aero_snapshot_size(aero_machine *m) {
    return snapshot_base_size(m) + aero_disk_overlay_bytes(m);
}

int aero_snapshot_save(aero_machine *m, uint8_t *out, uint64_t cap) {
    if (cap < aero_snapshot_size(m)) return -1;
    writer w = {out};
    put32(&w, SNAPSHOT_MAGIC);
    put32(&w, m->ram_size);
    put32(&w, (uint32_t)m->ticks);
    put32(&w, (uint32_t)(m->ticks >> 32));
    aero_cpu_serialize(m, w.p);
    aero_devices_save(m, w.p + AERO_CPU_STATE_BYTES);
    memcpy(w.p + AERO_CPU_STATE_BYTES + AERO_DEV_STATE_BYTES, m->ram, m->ram_size);
    aero_disk_overlay_save(m, out + snapshot_base_size(m));
    return 0;
}

int aero_snapshot_load(aero_machine *m, const uint8_t *in, uint64_t len) {
    uint64_t base = snapshot_base_size(m);
    if (len < base || aero_disk_overlay_check(m, in + base, len - base) != 0) return -1;
    reader r = {in};
    if (get32(&r) != SNAPSHOT_MAGIC || get32(&r) != m->ram_size) return -1;
    uint64_t ticks = get32(&r);
    ticks |= (uint64_t)get32(&r) << 32;
    if (aero_cpu_deserialize(m, r.p) != 0) return -1;
    if (aero_devices_load(m, r.p + AERO_CPU_STATE_BYTES) != 0) return -1;
    if (aero_disk_overlay_load(m, in + base) != 0) return -1;
    memcpy(m->ram, r.p + AERO_CPU_STATE_BYTES + AERO_DEV_STATE_BYTES, m->ram_size);
    m->ticks = ticks;
    m->slice_end = ticks;
    m->countdown = 0;
    aero_pc_reschedule(m);
    memset(m->dirty, 1, m->ram_pages);
    memset(m->code_page, 0, m->ram_pages);
    memset(m->code_bits, 0, (size_t)m->ram_pages * sizeof *m->code_bits);
    for (uint32_t i = 0; i < m->ram_pages; i++) m->page_gen[i]++;
    aero_tlb_flush_all(m);
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
    uint8_t st[AERO_CPU_STATE_BYTES + AERO_DEV_STATE_BYTES + 8];
    aero_cpu_serialize(m, st);
    aero_devices_save(m, st + AERO_CPU_STATE_BYTES);
    for (int i = 0; i < 8; i++) st[AERO_CPU_STATE_BYTES + AERO_DEV_STATE_BYTES + i] = (uint8_t)(m->ticks >> (8 * i));
    for (uint32_t i = 0; i < m->ram_pages; i++) {
        if (m->dirty[i]) {
            m->page_hash[i] = aero_hash64(m->ram + ((uint64_t)i << 12), 4096, i);
            m->dirty[i] = 0;
        }
    }
    /* Pages are clean again: writes must reach the slow path to mark them. */
    aero_tlb_flush_writes(m);
    uint64_t h = aero_hash64(st, sizeof st, 0);
    h = aero_hash64((const uint8_t *)m->page_hash, (uint64_t)m->ram_pages * 8, h);
    return aero_disk_overlay_fold(m, h); /* unchanged without a writable disk */
}

void aero_page_hashes(aero_machine *m, uint64_t *out) {
    memcpy(out, m->page_hash, (size_t)m->ram_pages * sizeof *out);
}

void aero_written_pages(aero_machine *m, uint8_t *out) {
    memcpy(out, m->dirty, m->ram_pages);
}
