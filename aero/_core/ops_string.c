/* aero core: string instructions.
 *
 * Byte forms are the even opcodes, word/dword forms the odd ones. The source is in->seg
 * (DS unless overridden), the destination always ES. SI/DI/CX or ESI/EDI/ECX are chosen by
 * the address size, the direction by DF.
 *
 * REP: each iteration is one guest tick. The run loop pays for the first iteration of a
 * call; further iterations in the same call are taken only while the countdown lasts, each
 * paying its own tick, so the result is exactly that of one iteration per call. EIP stays on
 * the instruction until the repetition ends. Registers are updated after every iteration,
 * so a fault in the middle leaves a resumable state. Forward REP MOVS/STOS copy runs that
 * stay within one page and the segment limits straight through the TLB's host pointers;
 * forward REP LODS/SCAS/CMPS read such runs the same way (memchr for REPNE SCASB).
 */
#include "cpu.h"

enum { K_MOVS, K_CMPS, K_STOS, K_LODS, K_SCAS, K_INS, K_OUTS };

AERO_INLINE int str_size(const aero_insn *in) { return (in->op & 1) ? osize(in) : 1; }
AERO_INLINE uint32_t amask(const aero_insn *in) { return in->asz ? 0xFFFFFFFFu : 0xFFFFu; }
AERO_INLINE uint32_t idx_get(const aero_machine *m, const aero_insn *in, int r) { return m->cpu.r[r] & amask(in); }
AERO_INLINE void idx_set(aero_machine *m, const aero_insn *in, int r, uint32_t v) {
    if (in->asz) m->cpu.r[r] = v;
    else set_r16(m, r, (uint16_t)v);
}
/* Move an index register by one element in the direction DF gives. */
AERO_INLINE void advance(aero_machine *m, const aero_insn *in, int r, int size) {
    uint32_t d = (m->cpu.eflags & F_DF) ? (uint32_t)-size : (uint32_t)size;
    idx_set(m, in, r, m->cpu.r[r] + d);
}
AERO_INLINE uint32_t lf_size_of(int size) { return size == 1 ? 0u : size == 2 ? 1u : 2u; }

/* May this call run one more iteration? Not when single-stepping (TF traps between
 * iterations), not past the deadline, and not once the machine stops or the running block
 * went stale (a write to decoded code). */
AERO_INLINE int may_batch(const aero_machine *m) {
    return m->countdown > 0 && !(m->cpu.eflags & F_TF) && m->stop < 0 && !m->exit_block;
}

/* One iteration of string operation `kind`; returns 1 when the two compared elements are
 * equal (CMPS/SCAS), 0 otherwise. Memory and port accesses come before any register update. */
AERO_INLINE int iterate(aero_machine *m, const aero_insn *in, const int kind, int size) {
    switch (kind) {
    case K_MOVS: {
        uint32_t v = rdn(m, in->seg, idx_get(m, in, R_ESI), size);
        wrn(m, S_ES, idx_get(m, in, R_EDI), size, v);
        advance(m, in, R_ESI, size);
        advance(m, in, R_EDI, size);
        return 0;
    }
    case K_CMPS: {
        uint32_t a = rdn(m, in->seg, idx_get(m, in, R_ESI), size);
        uint32_t b = rdn(m, S_ES, idx_get(m, in, R_EDI), size);
        set_lazy(m, LF_SUB, lf_size_of(size), a, b, a - b);
        advance(m, in, R_ESI, size);
        advance(m, in, R_EDI, size);
        return a == b;
    }
    case K_STOS:
        wrn(m, S_ES, idx_get(m, in, R_EDI), size, get_reg(m, R_EAX, size));
        advance(m, in, R_EDI, size);
        return 0;
    case K_LODS:
        set_reg(m, R_EAX, size, rdn(m, in->seg, idx_get(m, in, R_ESI), size));
        advance(m, in, R_ESI, size);
        return 0;
    case K_SCAS: {
        uint32_t a = get_reg(m, R_EAX, size);
        uint32_t b = rdn(m, S_ES, idx_get(m, in, R_EDI), size);
        set_lazy(m, LF_SUB, lf_size_of(size), a, b, a - b);
        advance(m, in, R_EDI, size);
        return a == b;
    }
    case K_INS: {
        uint16_t port = (uint16_t)m->cpu.r[R_EDX];
        aero_io_check(m, port, size);
        /* The destination is checked before the port is read: a read may have effects. */
        uint32_t lin = seg_lin_w(m, S_ES, idx_get(m, in, R_EDI), (uint32_t)size);
        aero_probe_write(m, lin, (uint32_t)size);
        lin_wr(m, lin, size, aero_io_read(m, port, size));
        advance(m, in, R_EDI, size);
        return 0;
    }
    default: { /* K_OUTS */
        uint16_t port = (uint16_t)m->cpu.r[R_EDX];
        aero_io_check(m, port, size);
        uint32_t v = rdn(m, in->seg, idx_get(m, in, R_ESI), size);
        aero_io_write(m, port, size, v);
        advance(m, in, R_ESI, size);
        return 0;
    }
    }
}

/* Elements from offset off of segment seg that stay within what the fast path may access
 * (seg_end: limit and segment type; 0 for expand-down segments, left to the exact path),
 * the address-size wrap and one page. */
AERO_INLINE uint64_t span_room(const aero_machine *m, const aero_insn *in, int seg, uint32_t off, int size,
                               int write) {
    uint64_t end = m->seg_end[write][seg];
    uint64_t n = off >= end ? 0 : (end - off) / (uint64_t)size;
    uint64_t wrap = ((uint64_t)amask(in) + 1 - off) / (uint64_t)size;
    uint64_t page = (0x1000u - ((m->cpu.seg[seg].base + off) & 0xFFFu)) / (uint32_t)size;
    if (wrap < n) n = wrap;
    if (page < n) n = page;
    return n;
}

/* Forward REP MOVS/STOS fast path: up to max elements, all within one page on each side
 * and within the segment limits, through TLB host pointers (a write tag means plain RAM,
 * already dirty, holding no decoded code). Returns the elements done; 0: not applicable. */
AERO_INLINE uint32_t fast_forward(aero_machine *m, const aero_insn *in, const int kind, int size, uint32_t max) {
    uint32_t di = idx_get(m, in, R_EDI);
    uint64_t n = max;
    uint64_t r = span_room(m, in, S_ES, di, size, 1);
    if (r < n) n = r;
    uint32_t ld = m->cpu.seg[S_ES].base + di;
    const aero_tlb_entry *ed = aero_tlb_entry_for(m, ld);
    if (ed->tag_w != tlb_key(m, ld, size)) return 0;
    uint8_t *hd = (uint8_t *)(ed->addend + ld);
    if (kind == K_MOVS) {
        uint32_t si = idx_get(m, in, R_ESI);
        r = span_room(m, in, in->seg, si, size, 0);
        if (r < n) n = r;
        uint32_t ls = m->cpu.seg[in->seg].base + si;
        const aero_tlb_entry *es = aero_tlb_entry_for(m, ls);
        if (n == 0 || es->tag_r != tlb_key(m, ls, size)) return 0;
        const uint8_t *hs = (const uint8_t *)(es->addend + ls);
        size_t bytes = (size_t)n * (size_t)size;
        if (hd > hs && hd < hs + bytes) {
            /* Overlap with the destination ahead: element by element, as the CPU does. */
            for (size_t i = 0; i < bytes; i += (size_t)size) store_le(hd + i, size, load_le(hs + i, size));
        } else {
            memmove(hd, hs, bytes);
        }
        idx_set(m, in, R_ESI, si + (uint32_t)bytes);
    } else {
        if (n == 0) return 0;
        uint32_t v = get_reg(m, R_EAX, size);
        if (size == 1) memset(hd, (int)v, (size_t)n);
        else for (uint64_t i = 0; i < n; i++) store_le(hd + i * (uint64_t)size, size, v);
    }
    idx_set(m, in, R_EDI, di + (uint32_t)(n * (uint64_t)size));
    return (uint32_t)n;
}

/* Forward REP LODS/SCAS/CMPS fast path: up to max elements within one page on each side and
 * within the segment limits, read through TLB host pointers (a read tag means the page is
 * readable at this privilege, unwatched, and the access cannot fault). Stops after the
 * element that ends a REPE/REPNE compare (*end = 1). Registers and lazy flags end as the
 * element-by-element loop leaves them. Returns the elements done; 0: not applicable. */
AERO_INLINE uint32_t fast_scan(aero_machine *m, const aero_insn *in, const int kind, int size, uint32_t max,
                               int *end) {
    uint64_t n = max;
    const uint8_t *hs = NULL, *hd = NULL;
    uint32_t si = idx_get(m, in, R_ESI), di = idx_get(m, in, R_EDI);
    if (kind == K_LODS || kind == K_CMPS) {
        uint64_t r = span_room(m, in, in->seg, si, size, 0);
        if (r < n) n = r;
        uint32_t ls = m->cpu.seg[in->seg].base + si;
        const aero_tlb_entry *es = aero_tlb_entry_for(m, ls);
        if (n == 0 || es->tag_r != tlb_key(m, ls, size)) return 0;
        hs = (const uint8_t *)(es->addend + ls);
    }
    if (kind == K_SCAS || kind == K_CMPS) {
        uint64_t r = span_room(m, in, S_ES, di, size, 0);
        if (r < n) n = r;
        uint32_t ld = m->cpu.seg[S_ES].base + di;
        const aero_tlb_entry *ed = aero_tlb_entry_for(m, ld);
        if (n == 0 || ed->tag_r != tlb_key(m, ld, size)) return 0;
        hd = (const uint8_t *)(ed->addend + ld);
    }
    uint64_t done = n;
    if (kind == K_LODS) {
        set_reg(m, R_EAX, size, load_le(hs + (n - 1) * (uint64_t)size, size));
        idx_set(m, in, R_ESI, si + (uint32_t)(n * (uint64_t)size));
        return (uint32_t)n;
    }
    uint32_t a = 0, b = 0;
    int want_eq = in->rep == 0xF3; /* REPE goes on while equal, REPNE while different */
    if (kind == K_SCAS) {
        a = get_reg(m, R_EAX, size);
        if (size == 1 && !want_eq) {
            const uint8_t *hit = memchr(hd, (int)a, (size_t)n);
            done = hit ? (uint64_t)(hit - hd) + 1 : n;
            b = hd[done - 1];
        } else {
            for (done = 0; done < n;) {
                b = load_le(hd + done * (uint64_t)size, size);
                done++;
                if ((a == b) != want_eq) break;
            }
        }
    } else {
        for (done = 0; done < n;) {
            a = load_le(hs + done * (uint64_t)size, size);
            b = load_le(hd + done * (uint64_t)size, size);
            done++;
            if ((a == b) != want_eq) break;
        }
        idx_set(m, in, R_ESI, si + (uint32_t)(done * (uint64_t)size));
    }
    *end = (a == b) != want_eq;
    set_lazy(m, LF_SUB, lf_size_of(size), a, b, a - b);
    idx_set(m, in, R_EDI, di + (uint32_t)(done * (uint64_t)size));
    return (uint32_t)done;
}

/* Execute string instruction `kind` with its REP semantics (see the top of the file). */
AERO_INLINE void string_op(aero_machine *m, const aero_insn *in, const int kind) {
    int size = str_size(in);
    if (!in->rep) {
        (void)iterate(m, in, kind, size);
        next(m, in);
        return;
    }
    int compares = kind == K_CMPS || kind == K_SCAS;
    uint32_t cnt = idx_get(m, in, R_ECX);
    if (cnt == 0) {
        next(m, in);
        return;
    }
    for (;;) {
        uint32_t done = 0;
        int end = 0;
        if ((kind == K_MOVS || kind == K_STOS) && cnt > 1 && !(m->cpu.eflags & F_DF) && may_batch(m)) {
            uint64_t budget = (uint64_t)m->countdown + 1; /* this iteration plus paid extras */
            done = fast_forward(m, in, kind, size, budget < cnt ? (uint32_t)budget : cnt);
            if (done) m->countdown -= (int64_t)(done - 1);
        }
        if ((kind == K_LODS || kind == K_SCAS || kind == K_CMPS) && cnt > 1 && !(m->cpu.eflags & F_DF) &&
            may_batch(m)) {
            uint64_t budget = (uint64_t)m->countdown + 1; /* this iteration plus paid extras */
            done = fast_scan(m, in, kind, size, budget < cnt ? (uint32_t)budget : cnt, &end);
            if (done) m->countdown -= (int64_t)(done - 1);
        }
        if (!done) {
            int eq = iterate(m, in, kind, size);
            if (compares) end = in->rep == 0xF3 ? !eq : eq;
            done = 1;
        }
        cnt -= done;
        idx_set(m, in, R_ECX, cnt);
        if (cnt == 0 || end) {
            next(m, in);
            return;
        }
        if (!may_batch(m)) return;
        m->countdown--;
    }
}

void aero_op_movs(aero_machine *m, const aero_insn *in) { string_op(m, in, K_MOVS); }
void aero_op_cmps(aero_machine *m, const aero_insn *in) { string_op(m, in, K_CMPS); }
void aero_op_stos(aero_machine *m, const aero_insn *in) { string_op(m, in, K_STOS); }
void aero_op_lods(aero_machine *m, const aero_insn *in) { string_op(m, in, K_LODS); }
void aero_op_scas(aero_machine *m, const aero_insn *in) { string_op(m, in, K_SCAS); }
void aero_op_ins(aero_machine *m, const aero_insn *in) { string_op(m, in, K_INS); }
void aero_op_outs(aero_machine *m, const aero_insn *in) { string_op(m, in, K_OUTS); }
