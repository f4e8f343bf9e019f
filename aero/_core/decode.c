/* aero core: the instruction decoder and the decoded-block cache.
 *
 * Decoding is table driven (optable.inc, generated from aero/isa.py). Blocks are cached by
 * physical address and decoding mode; a block never spans two pages, so a page generation
 * counter bumped on writes to decoded code (mem.c) invalidates exactly the stale blocks.
 */
#include "cpu.h"

#include "optable.inc"

/* Why decoding stopped short of a full instruction. */
enum { DEC_OK = 0, DEC_GP = 1 };

typedef struct fetcher {
    aero_machine *m;
    uint32_t eip;      /* offset of the next byte in CS */
    uint32_t start;    /* offset of the instruction's first byte */
    int err;           /* DEC_* */
    uint32_t page_lin; /* linear page the block lives on */
    int crossed;       /* 1: a byte came from another linear page */
    int first;         /* 1: the block's first instruction, which may cross a page */
    int special;       /* 1: the last instruction decoded got a specialised handler */
} fetcher;

static uint8_t fetch8(fetcher *f) {
    aero_machine *m = f->m;
    uint32_t eip = f->eip;
    const aero_segment *cs = &m->cpu.seg[S_CS];
    if (f->err) return 0;
    /* 15-byte limit and CS limit (16-bit IP cannot wrap mid-instruction): #GP(0). */
    if (eip - f->start >= 15 || eip > cs->limit || (!code32(m) && eip > 0xFFFF)) {
        f->err = DEC_GP;
        return 0;
    }
    uint32_t lin = cs->base + eip;
    if ((lin & ~0xFFFu) != f->page_lin) {
        f->crossed = 1;
        /* A later instruction of the block ends it instead: fetching its bytes from the
         * next page now could raise that page's #PF (or set its accessed bit) before the
         * instructions ahead of it have run. */
        if (!f->first) return 0;
    }
    f->eip = eip + 1;
    return (uint8_t)lin_rd(m, lin, 1);
}

static uint32_t fetchn(fetcher *f, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint32_t)fetch8(f) << (8 * i);
    return v;
}

static const uint8_t base16[8] = {R_EBX, R_EBX, R_EBP, R_EBP, R_ESI, R_EDI, R_EBP, R_EBX};
static const uint8_t index16[8] = {R_ESI, R_EDI, R_ESI, R_EDI, R_ZERO, R_ZERO, R_ZERO, R_ZERO};

/* Decode the ModRM (and SIB, displacement) bytes into in. Returns the default segment. */
static int decode_modrm(fetcher *f, aero_insn *in, int force_reg) {
    uint8_t modrm = fetch8(f);
    in->mod = modrm >> 6;
    in->reg = (modrm >> 3) & 7;
    in->rm = modrm & 7;
    in->base = in->index = R_ZERO;
    in->scale = 0;
    in->disp = 0;
    if (force_reg) in->mod = 3;
    if (in->mod == 3) return S_DS;
    int seg = S_DS;
    if (!in->asz) {
        if (in->mod == 0 && in->rm == 6) {
            in->disp = fetchn(f, 2);
            return S_DS;
        }
        in->base = base16[in->rm];
        in->index = index16[in->rm];
        if (in->base == R_EBP) seg = S_SS;
        if (in->mod == 1) in->disp = (uint32_t)(int32_t)(int8_t)fetch8(f);
        else if (in->mod == 2) in->disp = fetchn(f, 2);
        return seg;
    }
    int rm = in->rm;
    if (rm == 4) {
        uint8_t sib = fetch8(f);
        int base = sib & 7, index = (sib >> 3) & 7;
        in->scale = sib >> 6;
        in->index = index == 4 ? R_ZERO : index;
        if (base == 5 && in->mod == 0) {
            in->base = R_ZERO;
            in->disp = fetchn(f, 4);
        } else {
            in->base = base;
            if (base == R_ESP || base == R_EBP) seg = S_SS;
        }
    } else if (rm == 5 && in->mod == 0) {
        in->disp = fetchn(f, 4);
        return S_DS;
    } else {
        in->base = rm;
        if (rm == R_EBP) seg = S_SS;
    }
    if (in->mod == 1) in->disp += (uint32_t)(int32_t)(int8_t)fetch8(f);
    else if (in->mod == 2) in->disp += fetchn(f, 4);
    return seg;
}

/* Decode one instruction at offset f->eip; returns its AERO_OPF_* flags. */
static uint8_t decode_insn(fetcher *f, aero_insn *in, int pm) {
    aero_machine *m = f->m;
    int d = code32(m);
    int osz = d, asz = d, seg = -1, rep = 0, lock = 0;
    f->start = f->eip;
    memset(in, 0, sizeof *in);
    uint32_t op;
    for (;;) {
        op = fetch8(f);
        if (f->err) break;
        switch (op) {
        case 0x26: seg = S_ES; continue;
        case 0x2E: seg = S_CS; continue;
        case 0x36: seg = S_SS; continue;
        case 0x3E: seg = S_DS; continue;
        case 0x64: seg = S_FS; continue;
        case 0x65: seg = S_GS; continue;
        case 0x66: osz = !d; continue;
        case 0x67: asz = !d; continue;
        case 0xF0: lock = 1; continue;
        case 0xF2: case 0xF3: rep = (int)op; continue;
        default: break;
        }
        break;
    }
    if (op == 0x0F) op = 0x100 | fetch8(f);
    in->code32 = (uint8_t)d;
    in->osz = (uint8_t)osz;
    in->asz = (uint8_t)asz;
    in->rep = (uint8_t)rep;
    in->lock = (uint8_t)lock;
    in->op = (uint8_t)op;
    in->reg = op & 7; /* register-in-opcode forms (40+r, B8+r, ...) */
    in->base = in->index = R_ZERO;
    in->mod = 3;
    aero_opdesc desc = aero_optable[op];
    int defseg = S_DS;
    if (desc.flags & AERO_OPF_MODRM) {
        /* MOV to/from CR/DR ignores mod: the operand is always a register. */
        int force_reg = op >= 0x120 && op <= 0x123;
        defseg = decode_modrm(f, in, force_reg);
        if (desc.flags & AERO_OPF_GROUP) {
            desc = aero_grptable[desc.aux][in->reg];
            if (!desc.fn) desc.fn = aero_op_ud;
        }
    }
    switch (desc.imm) {
    case AERO_IMM_B: in->imm = (uint32_t)(int32_t)(int8_t)fetch8(f); break;
    case AERO_IMM_W: in->imm = fetchn(f, 2); break;
    case AERO_IMM_Z: in->imm = osz ? fetchn(f, 4) : (uint32_t)(int32_t)(int16_t)fetchn(f, 2); break;
    case AERO_IMM_AP: in->imm = fetchn(f, osz ? 4 : 2); in->imm2 = (uint16_t)fetchn(f, 2); break;
    case AERO_IMM_O: in->disp = fetchn(f, asz ? 4 : 2); break;
    case AERO_IMM_WB: in->imm = fetchn(f, 2); in->imm2 = fetch8(f); break;
    default: break;
    }
    in->seg = (uint8_t)(seg >= 0 ? seg : defseg);
    in->segovr = seg >= 0;
    in->len = (uint8_t)((f->eip - f->start) & 0x1F);
    in->fn = desc.fn;
    /* Encodings that are invalid whatever the operands: #UD at execution. */
    if ((desc.flags & AERO_OPF_MEM) && in->mod == 3) in->fn = aero_op_ud;
    if ((desc.flags & AERO_OPF_PM) && !pm) in->fn = aero_op_ud;
    if (lock && (!(desc.flags & AERO_OPF_LOCK) || in->mod == 3)) in->fn = aero_op_ud;
    aero_handler generic = in->fn;
    in->fn = aero_fast_form(in);
    f->special = in->fn != generic;
    return desc.flags;
}

/* Handler that raises the #GP(0) of an instruction that could not be fetched whole. */
static void op_fetch_gp(aero_machine *m, const aero_insn *in) {
    (void)in;
    aero_fault(m, EXC_GP, 0, 1);
}

/* Does this instruction end a block? Anything that can branch, fault-and-resume by
 * design (string ops), or change how the following bytes decode. */
static int ends_block(const aero_insn *in, uint8_t flags) {
    if (flags & (AERO_OPF_BRANCH | AERO_OPF_SYS)) return 1;
    /* A REP string instruction batches iterations against the clock; without REP it is an
     * ordinary instruction. */
    if ((flags & AERO_OPF_STR) && in->rep) return 1;
    return in->fn == aero_op_ud;
}

void aero_op_call_Jz_32(aero_machine *m, const aero_insn *in);
void aero_op_jmp_J_32(aero_machine *m, const aero_insn *in);

static void decode_block(aero_machine *m, aero_block *b, uint32_t phys, uint32_t key, int cacheable) {
    fetcher f = {0};
    f.m = m;
    f.eip = m->cpu.eip;
    uint32_t lin0 = m->cpu.seg[S_CS].base + m->cpu.eip;
    f.page_lin = lin0 & ~0xFFFu;
    int pm = aero_pm(m);
    /* The slot stays empty until the block is complete: a fault while fetching (the page
     * after a crossing instruction) must not leave a half-decoded block behind. */
    b->key = 0;
    b->phys = phys;
    b->n = 0;
    b->plain = 1;
    b->quiet = 1;
    b->span_lo = b->span_hi = 0;
    uint32_t run_lo = lin0 & 0xFFFu; /* page offset where the current run of bytes began */
    m->code_epoch++; /* jump-cache entries may point at this slot */
    while (b->n < AERO_BLOCK_INSNS) {
        aero_insn *in = &b->insn[b->n];
        uint32_t ins_lin = m->cpu.seg[S_CS].base + f.eip;
        fetcher save = f;
        f.crossed = 0;
        f.first = b->n == 0;
        uint8_t fl = decode_insn(&f, in, pm);
        if (f.err || f.crossed) {
            if (b->n > 0) { f = save; break; }  /* end the block before it */
            if (f.err) {
                in->fn = op_fetch_gp;
                in->len = 0;
            }
            b->n = b->nrun = 1;
            b->unfused = NULL;
            b->npre = 0;
            b->pre_delta = 0;
            b->plain = 0;
            b->quiet = 0;
            b->key = (f.crossed && cacheable) ? 0 : key; /* spans two pages: never cached */
            return;
        }
        b->n++;
        b->plain &= (uint32_t)f.special;
        b->quiet &= (uint32_t)(f.special && aero_fast_quiet(in->fn));
        if (ends_block(in, fl)) {
            /* A direct near CALL or JMP (32-bit, specialised) to the same page: the block
             * goes on at its target, so a call does not cost a block lookup. The handler
             * sets EIP as usual; the block's bytes are now several runs of one page. */
            if (in->fn != aero_op_call_Jz_32 && in->fn != aero_op_jmp_J_32) break;
            uint32_t t = f.eip + in->imm;
            if (((m->cpu.seg[S_CS].base + t) & ~0xFFFu) != f.page_lin || t > m->cpu.seg[S_CS].limit) break;
            if (b->n >= AERO_BLOCK_INSNS) break;
            uint32_t run_hi = ((ins_lin + in->len - 1) & 0xFFFu) + 1;
            if (!b->span_hi || run_lo < b->span_lo) b->span_lo = run_lo;
            if (run_hi > b->span_hi) b->span_hi = run_hi;
            f.eip = t;
            run_lo = (m->cpu.seg[S_CS].base + t) & 0xFFFu;
            continue;
        }
        if (((ins_lin + in->len) & ~0xFFFu) != f.page_lin) break;
    }
    if (b->span_hi) {
        /* Close the last run (it ends at the next byte to fetch, within the page). */
        uint32_t run_hi = ((m->cpu.seg[S_CS].base + f.eip - 1) & 0xFFFu) + 1;
        if (run_lo < b->span_lo) b->span_lo = run_lo;
        if (run_hi > b->span_hi) b->span_hi = run_hi;
    }
    b->nrun = b->n;
    b->unfused = NULL;
    if (b->n >= 2) {
        /* A register-only compare (or TEST, SUB, INC, DEC) and the Jcc that ends the block:
         * one fused handler for both (aero_fuse_pair). */
        aero_insn *first = &b->insn[b->n - 2];
        aero_handler h = aero_fuse_pair(first->fn, b->insn[b->n - 1].fn);
        if (h) {
            b->unfused = first->fn;
            first->fn = h;
            b->nrun = b->n - 1;
        }
    }
    aero_fast_prefix(b); /* the deferred-EIP prefix */
    b->key = key;
}

static aero_block *lookup_slow(aero_machine *m, uint32_t lin, uint32_t key);

aero_block *aero_block_lookup(aero_machine *m) {
    uint32_t lin = m->cpu.seg[S_CS].base + m->cpu.eip;
    if (AERO_UNLIKELY(m->cpu.eip > m->cpu.seg[S_CS].limit)) {
        aero_fault(m, EXC_GP, 0, 1);
    }
    uint32_t key = aero_decode_key(m) | (aero_pm(m) ? 4u : 0u);
    uint32_t mode = aero_jump_mode(m);
    /* The jump cache answers without translating or hashing the physical address: while
     * code_epoch stands still, the TLB still maps lin (with the fetch rights of this CPL)
     * to the same page and the block there is still valid. */
    aero_jump_entry *j = &m->jump[aero_jump_slot(lin)];
    if (AERO_LIKELY(j->lin == lin && j->mode == mode && j->epoch == m->code_epoch)) return j->b;
    aero_block *b = lookup_slow(m, lin, key);
    if (b != &m->scratch) {
        j->lin = lin;
        j->mode = mode;
        j->epoch = m->code_epoch;
        j->b = b;
    }
    return b;
}

static aero_block *lookup_slow(aero_machine *m, uint32_t lin, uint32_t key) {
    uint32_t phys = aero_translate(m, lin, 0);
    uint32_t idx = (phys ^ (phys >> 12)) & (AERO_BLOCK_CACHE - 1);
    aero_block *b = &m->blocks[idx];
    uint32_t page = phys >> 12;
    int in_ram = phys < m->ram_size;
    uint32_t gen = in_ram ? m->page_gen[page] : 0;
    if (AERO_LIKELY(b->key == key && b->phys == phys && b->gen == gen)) return b;
    m->fetching = 1; /* instruction bytes are not data reads (host watches) */
    decode_block(m, b, phys, key, 1);
    m->fetching = 0;
    b->gen = gen;
    if (in_ram) {
        /* Writes to these bytes must now invalidate the page's blocks. */
        uint32_t len = 0;
        for (uint32_t i = 0; i < b->n; i++) len += b->insn[i].len;
        if (len == 0 || (phys & 0xFFFu) + len > 0x1000u) len = 0x1000u - (phys & 0xFFFu);
        if (b->span_hi) aero_note_code(m, (phys & ~0xFFFu) + b->span_lo, b->span_hi - b->span_lo);
        else aero_note_code(m, phys, len);
    }
    if (b->key == 0) {
        /* An instruction crossing a page: decode into the scratch block each time. */
        m->scratch = *b;
        b->n = 0;
        return &m->scratch;
    }
    return b;
}

void aero_blocks_flush(aero_machine *m) {
    m->code_epoch++;
    for (uint32_t i = 0; i < AERO_BLOCK_CACHE; i++) m->blocks[i].key = 0;
}

void aero_decode_one(aero_machine *m, aero_insn *in) {
    fetcher f = {0};
    f.m = m;
    f.eip = m->cpu.eip;
    f.page_lin = (m->cpu.seg[S_CS].base + m->cpu.eip) & ~0xFFFu;
    f.first = 1;
    m->fetching = 1;
    (void)decode_insn(&f, in, aero_pm(m));
    m->fetching = 0;
    if (f.err) {
        in->fn = op_fetch_gp;
        in->len = 0;
    }
}

void aero_op_ud(aero_machine *m, const aero_insn *in) {
    (void)in;
    aero_fault_ud(m);
}
