/* aero core: internal definitions shared by the CPU, memory and machine modules.
 *
 * One aero_machine owns everything; there are no globals. The architectural CPU state
 * lives in aero_cpu (serialized canonically for snapshots and fingerprints); the rest of
 * aero_machine is runtime machinery (caches, TLB, buffers) rebuilt or flushed freely.
 */
#ifndef AERO_CPU_H
#define AERO_CPU_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api.h"
#include "fpu.h"

#define AERO_LIKELY(x) __builtin_expect(!!(x), 1)
#define AERO_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define AERO_INLINE static inline __attribute__((always_inline))

/* General register numbers; R_ZERO is an always-zero slot used by address decoding. */
enum { R_EAX, R_ECX, R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI, R_ZERO };
enum { S_ES, S_CS, S_SS, S_DS, S_FS, S_GS };

/* EFLAGS bits. */
#define F_CF 0x00000001u
#define F_BIT1 0x00000002u
#define F_PF 0x00000004u
#define F_AF 0x00000010u
#define F_ZF 0x00000040u
#define F_SF 0x00000080u
#define F_TF 0x00000100u
#define F_IF 0x00000200u
#define F_DF 0x00000400u
#define F_OF 0x00000800u
#define F_IOPL 0x00003000u
#define F_NT 0x00004000u
#define F_RF 0x00010000u
#define F_VM 0x00020000u
#define F_AC 0x00040000u
#define F_ID 0x00200000u
#define F_ARITH (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)
/* Bits an i686 lets software change (VIF/VIP need CR4.PVI, left out: no VME). */
#define F_WRITABLE (F_ARITH | F_TF | F_IF | F_DF | F_IOPL | F_NT | F_RF | F_VM | F_AC | F_ID)

#define CR0_PE 0x00000001u
#define CR0_MP 0x00000002u
#define CR0_EM 0x00000004u
#define CR0_TS 0x00000008u
#define CR0_ET 0x00000010u
#define CR0_NE 0x00000020u
#define CR0_WP 0x00010000u
#define CR0_AM 0x00040000u
#define CR0_PG 0x80000000u

/* Exception vectors. */
enum {
    EXC_DE = 0, EXC_DB = 1, EXC_NMI = 2, EXC_BP = 3, EXC_OF = 4, EXC_BR = 5, EXC_UD = 6,
    EXC_NM = 7, EXC_DF = 8, EXC_TS = 10, EXC_NP = 11, EXC_SS = 12, EXC_GP = 13,
    EXC_PF = 14, EXC_MF = 16, EXC_AC = 17
};

/* Segment attribute bits (aero_segment.attr). */
#define SA_TYPE 0x000Fu
#define SA_S 0x0010u
#define SA_DPL 0x0060u
#define SA_P 0x0080u
#define SA_DB 0x4000u
#define SA_G 0x8000u
/* A data segment that expands down: S=1, type bit 3 clear (data), bit 2 set (E). */
#define SA_IS_EXPAND_DOWN(a) (((a) & (SA_S | 0x0C)) == (SA_S | 0x04))

/* Lazy flags: the last flag-setting operation, evaluated on demand. */
enum {
    LF_NONE = 0, /* eflags holds every arithmetic flag */
    LF_ADD, LF_ADC, LF_SUB, LF_SBB, LF_LOGIC,
    LF_INC, LF_DEC /* lf_b holds the carry flag from before the INC/DEC */
};

/* The architectural CPU state. Serialized field by field (aero_cpu_serialize), never as
 * raw bytes, so padding and host layout never reach a snapshot or fingerprint. */
typedef struct aero_cpu {
    uint32_t r[9];            /* EAX..EDI, then R_ZERO (always 0) */
    uint32_t eip;             /* instruction pointer */
    uint32_t eflags;          /* flags; arithmetic flags stale while lf_op != LF_NONE */
    uint32_t lf_op;           /* LF_* kind of the pending lazy-flags operation */
    uint32_t lf_size;         /* its operand size: 0 = 8, 1 = 16, 2 = 32 bits */
    uint32_t lf_a, lf_b, lf_res; /* its operands and result */
    aero_segment seg[6];      /* ES CS SS DS FS GS */
    aero_segment ldtr, tr;    /* LDTR and TR with their descriptor caches */
    aero_table_reg gdtr, idtr; /* descriptor table registers */
    uint32_t cr0, cr2, cr3, cr4; /* control registers */
    uint32_t dr[8];           /* debug registers */
    uint32_t cpl;             /* current privilege level */
    uint32_t halted;          /* 1: in HLT, waiting for an interrupt (the run loop reads halted
                                 and inhibit_irq as one 64-bit word: keep them adjacent) */
    uint32_t inhibit_irq;     /* interrupt shadow for one instruction: handlers set 1 (STI, MOV SS,
                                 POP SS, LSS); the run loop makes it 2 after MOV SS / POP SS,
                                 whose shadow also holds back debug traps */
    uint32_t a20;             /* 1: A20 gate open */
    uint64_t tsc_base;        /* TSC = tsc_base + ticks * tsc_per_tick (WRMSR moves it) */
    uint32_t sysenter_cs, sysenter_esp, sysenter_eip; /* SYSENTER MSRs */
    uint32_t nmi_pending;     /* 1: an NMI is latched, waiting to be delivered */
    uint32_t nmi_blocked;     /* 1: an NMI handler runs: the next NMI waits for its IRET */
    uint32_t dbg_pending;     /* DR6 bits (B0-B3, BS) of a #DB trap not yet delivered */
    uint32_t shutdown;        /* 1: shutdown after a triple fault: nothing runs until reset */
    uint32_t rep_partial;     /* 1: a run ended inside a REP string instruction (its next
                                 interrupt pushes RF = 1) */
    aero_fpu fpu;             /* the x87 (fpu.h) */
} aero_cpu;

struct aero_machine;
struct aero_insn;
typedef void (*aero_handler)(struct aero_machine *m, const struct aero_insn *in);

/* One decoded instruction. Immutable once decoded; handlers receive a const pointer. */
typedef struct aero_insn {
    aero_handler fn;   /* executes the instruction */
    uint32_t disp;     /* memory operand displacement, or the moffs of A0-A3 */
    uint32_t imm;      /* first immediate, sign-extended to 32 bits where it is signed */
    uint16_t imm2;     /* second immediate: far-pointer selector, ENTER nesting level */
    uint8_t len;       /* length in bytes, prefixes included */
    uint8_t op;        /* opcode byte (second byte for 0F xx) */
    uint8_t osz;       /* 1: 32-bit operand size */
    uint8_t asz;       /* 1: 32-bit address size */
    uint8_t seg;       /* segment of the memory operand (override or default) */
    uint8_t rep;       /* 0, 0xF2 (REPNE) or 0xF3 (REP/REPE) */
    uint8_t lock;      /* 1: LOCK prefix present */
    uint8_t mod;       /* ModRM mod field (3: register operand) */
    uint8_t reg;       /* ModRM reg field, or the register in the low opcode bits */
    uint8_t rm;        /* ModRM rm field */
    uint8_t base;      /* EA base register (R_ZERO: none) */
    uint8_t index;     /* EA index register (R_ZERO: none) */
    uint8_t scale;     /* EA index shift (0-3) */
    uint8_t segovr;    /* 1: the segment was given by a prefix */
    uint8_t code32;    /* 1: decoded in a 32-bit code segment (EIP does not wrap at 64 KB) */
    uint8_t form;      /* in a block's deferred-EIP prefix: its row of the prefix forms
                          (fastpath.c), which names the handler that advances EIP */
    int16_t pre_off;   /* in a block's deferred-EIP prefix: its EIP minus EIP at the block's
                          start (negative after a CALL or JMP back within the page) */
} aero_insn;

/* Decoder table row (generated from aero/isa.py). */
typedef struct aero_opdesc {
    aero_handler fn; /* handler, or aero_op_ud */
    uint8_t flags;   /* AERO_OPF_* */
    uint8_t imm;     /* AERO_IMM_* */
    uint8_t aux;     /* group index for AERO_OPF_GROUP rows */
} aero_opdesc;

#define AERO_OPF_MODRM 0x01
#define AERO_OPF_LOCK 0x02
#define AERO_OPF_BRANCH 0x04
#define AERO_OPF_STR 0x08
#define AERO_OPF_MEM 0x10
#define AERO_OPF_PM 0x20
#define AERO_OPF_SYS 0x40
#define AERO_OPF_GROUP 0x80
enum { AERO_IMM_NONE, AERO_IMM_B, AERO_IMM_W, AERO_IMM_Z, AERO_IMM_AP, AERO_IMM_O, AERO_IMM_WB };

/* A decoded block: straight-line instructions within one 4 KB page; only the last one
 * may branch, fault-and-resume, or change the decoding mode. */
#define AERO_BLOCK_INSNS 32
#define AERO_BLOCK_CACHE 4096
/* A block's link to a block that followed it in a chain (aero_block.link). */
typedef struct aero_block_link {
    uint64_t key;          /* the successor's linear address | aero_jump_mode << 32 */
    uint64_t epoch;        /* code_epoch when the link was made: valid while it stands */
    struct aero_block *b;  /* the successor */
} aero_block_link;
typedef struct aero_block {
    uint32_t phys;   /* physical address of the first instruction */
    uint32_t key;    /* decoding mode it was decoded under; 0: empty slot */
    uint32_t gen;    /* page generation at decode time (self-modifying code check) */
    uint32_t n;      /* number of instructions */
    uint32_t plain;  /* 1: every instruction has a handler specialised at decode time (ALU,
                        MOV, LEA, XCHG, PUSH/POP, near CALL/RET/JMP/Jcc), none of which
                        changes what the run loop tests between blocks without setting
                        exit_block: the run loop chains to the next block directly */
    uint32_t quiet;  /* 1: every instruction is a register-only specialised form, LEA, Jcc or
                        JMP rel (aero_fast_quiet): none can set exit_block, so the run loop
                        runs the block without the per-instruction exit test */
    uint32_t span_lo, span_hi; /* when the block goes on at a direct CALL/JMP target on its
                                  page: page offsets of its first byte and past its last
                                  (covering every run); both 0 for one contiguous run */
    uint32_t nrun;   /* entries the run loops dispatch: n, or n - 1 when the block ends in a
                        fused pair (the last entry, the Jcc, runs inside the one before) */
    aero_handler unfused; /* when fused: the handler of entry n - 2 alone (for slices that end
                             between the two); else NULL */
    uint32_t npre;   /* the deferred-EIP prefix: entries at the start whose handlers (the _de
                        and _dl variants, DEF_FORMS) leave EIP at the block's start and run
                        one into the next; a generic case makes EIP the instruction's first
                        (aero_prefix_generic). A form whose flags the next instruction
                        overwrites before anything can see them runs without them (_nf).
                        The last entry dispatched is never in it. 0: none */
    int32_t pre_delta; /* EIP after the prefix minus EIP at the block's start: what the run
                          loops add to EIP after it (a CALL or JMP in it included) */
    aero_block_link link[2]; /* the blocks that followed this one in the run loop's chain,
                                most recent first: the chain tries them before the jump
                                cache (the same validity rule: code_epoch unmoved) */
    aero_insn insn[AERO_BLOCK_INSNS]; /* the instructions */
} aero_block;

/* The jump cache: the block that the last lookup of a linear address found under a mode
 * (aero_block_lookup). An entry is valid while code_epoch has not moved since it was made:
 * every event that could change the answer (a TLB entry dropped or replaced, a page's blocks
 * invalidated, a block slot decoded again) moves it. */
#define AERO_JUMP_CACHE 1024
typedef struct aero_jump_entry {
    uint32_t lin;          /* linear address of the block's first instruction */
    uint32_t mode;         /* aero_jump_mode when it was made */
    uint64_t epoch;        /* code_epoch when it was made */
    struct aero_block *b;  /* the block */
} aero_jump_entry;

/* Software TLB: linear page -> host pointer, separate read and write tags. There are two
 * sets: [0] holds translations checked with supervisor rights, [1] with user rights (CPL 3),
 * so privilege changes need no flush. A parallel array records each entry's physical page
 * and whether it came from a global or a 4 MB page (for MOV CR3 and INVLPG). */
#define AERO_TLB_SIZE 1024
/* The slot of a linear page: its page number plus its bits 10-19, so that buffers a
 * multiple of 4 MB apart (or 1 MB apart, as code, source and destination often are) do not
 * evict each other. Two adjacent pages never share a slot (the sum grows by 1 or 2 from one
 * page to the next, wrapping included), which lets the fast path compare the tag with the
 * page of an access's last byte: a tag found at the first byte's slot is then never the
 * next page's, so a hit proves the access lies within one page. */
#define aero_tlb_slot(lin) ((((lin) >> 12) + ((lin) >> 22)) & (AERO_TLB_SIZE - 1))
/* An empty tag: not page-aligned and never equal to a key (tlb_key adds at most bits 0-1). */
#define AERO_TLB_INVALID 4u
#define AERO_TLBI_GLOBAL 1u /* tlb_info: a global page (G with CR4.PGE): survives MOV CR3 */
#define AERO_TLBI_LARGE 2u  /* tlb_info: part of a 4 MB page: INVLPG drops the whole page */
#define AERO_TLBI_WOK 4u    /* tlb_info: the translation was checked for a write (rights, dirty
                               bit) although the page is not write-mapped (it holds code) */
typedef struct aero_tlb_entry {
    uint32_t tag_r;    /* linear page address readable through addend, or INVALID */
    uint32_t tag_w;    /* linear page address writable through addend, or INVALID */
    uintptr_t addend;  /* host address = addend + linear address */
} aero_tlb_entry;

/* The run loop's reasons to look between blocks (aero_machine.attn). */
#define AERO_ATTN_INTR 1u  /* INTR asserted (bit 0: the run loop masks it with EFLAGS.IF) */
#define AERO_ATTN_DEBUG 2u /* data breakpoint hits or a #DB trap to deliver */
#define AERO_ATTN_NMI 4u   /* an NMI is pending, or its handler's IRET is awaited */
#define AERO_ATTN_AC 8u    /* alignment checking was armed: re-check it */
#define AERO_ATTN_RESET 16u /* a device asked for a CPU reset (reset_pending) */
#define AERO_ATTN_WATCH 32u /* host watches: instruction watches armed, or a data watch hit */

/* A host watch (aero_watch_set). */
typedef struct aero_watch {
    uint32_t addr;  /* first byte */
    uint32_t last;  /* last byte (addr + len - 1) */
    uint32_t flags; /* AERO_WATCH_*, 0: slot unused */
} aero_watch;

/* The interrupt-acknowledge cycle of an interrupt controller: returns the vector, or -1
 * when the request went away (see aero_set_intr). */
typedef int (*aero_intr_ack_fn)(struct aero_machine *m, void *ctx);

#define AERO_OUTPUT_CAP 65536
#define AERO_ROM_ALIAS_MAX 0x20000u

struct aero_machine {
    aero_cpu cpu;               /* architectural state */
    /* Runtime, derived from cpu.seg and the mode by aero_seg_refresh: for each segment
     * register, offsets below seg_end[0] may be read and below seg_end[1] written on the
     * fast path (limit and type already checked); 0 sends every access to aero_seg_slow. */
    uint64_t seg_end[2][6];
    uint64_t ticks;             /* guest clock at the start of the current slice */
    /* --- execution control --- */
    int64_t countdown;          /* instructions left in this slice (deadline countdown) */
    uint64_t slice_end;         /* tick at which the slice ends; now = slice_end - countdown */
    int stop;                   /* stop reason, -1 while running */
    uint32_t exit_block;        /* 1: leave the current decoded block after this insn */
    const struct aero_insn *cur;     /* instruction executing in a prepaid block */
    const struct aero_insn *blk_end; /* end of the prepaid block, NULL outside one */
    jmp_buf fault_jmp;          /* where aero_fault() lands */
    int fault_vector;           /* pending exception vector */
    uint32_t fault_code;        /* its error code */
    int fault_has_code;         /* 1: the exception pushes an error code */
    int delivering;             /* vector being delivered by the run loop, -1: none */
    int soft_int;               /* 1: the last instruction was a software interrupt */
    int stop_on_exception;      /* config: stop instead of delivering exceptions */
    int last_exc;               /* last exception vector raised, -1: none */
    uint32_t last_exc_code;     /* its error code */
    /* --- memory --- */
    uint8_t *ram;               /* guest RAM */
    uint32_t ram_size;          /* bytes */
    uint32_t ram_pages;         /* ram_size / 4096 */
    uint8_t *rom;               /* ROM image or NULL */
    uint32_t rom_size;          /* bytes */
    uint32_t *page_gen;         /* per RAM page: bumped when decoded code on it is written */
    uint8_t *code_page;         /* per RAM page: 1 if decoded blocks were made from it */
    uint64_t *code_bits;        /* per RAM page: bit i set when decoded blocks hold bytes of
                                   its 64-byte chunk i; a write that touches none of them
                                   leaves the page's blocks valid */
    uint8_t *dirty;             /* per RAM page: written since the last fingerprint */
    uint64_t *page_hash;        /* per RAM page: cached hash, valid when !dirty */
    aero_tlb_entry tlb[2][AERO_TLB_SIZE]; /* software TLB: [0] supervisor, [1] user rights */
    uint32_t tlb_info[2][AERO_TLB_SIZE]; /* each entry's physical page | AERO_TLBI_* */
    aero_tlb_entry *tlb_fast;   /* the set the specialised handlers probe (fast_rd_ptr): tlb[1]
                                   at CPL 3, else tlb[0]; tlb_none while alignment checking
                                   is armed. Set between blocks (aero_tlb_fast_refresh): the
                                   CPL and the AC state change only in instructions that end
                                   a block of plain instructions */
    aero_tlb_entry tlb_none[AERO_TLB_SIZE]; /* always empty: every probe misses */
    uint32_t tlb_ctl;           /* CR0.PG/WP, CR4.PSE/PAE/PGE when the entries were made */
    uint32_t walk_info;         /* AERO_TLBI_* of the last page walk */
    uint32_t ac_low;            /* 3 while alignment checking is armed (see tlb_key), else 0 */
    aero_block *blocks;         /* decoded block cache, AERO_BLOCK_CACHE slots */
    uint64_t code_epoch;        /* bumped whenever a cached lin -> block answer may change: a
                                   TLB entry dropped or replaced, a page's blocks invalidated,
                                   a block slot decoded again */
    aero_jump_entry jump[AERO_JUMP_CACHE]; /* block lookups by linear address and mode */
    aero_block scratch;         /* block for instructions that cross a page */
    /* --- configuration --- */
    aero_config cfg;            /* as given to aero_machine_new */
    /* --- guest output --- */
    uint8_t out[AERO_OUTPUT_CAP]; /* debug console bytes */
    uint32_t out_len;           /* bytes in out */
    int64_t exit_status;        /* debug-exit status, -1: none */
    /* --- interrupts and debug (machine.c) --- */
    uint32_t attn;              /* AERO_ATTN_* */
    uint32_t intr;              /* 1: INTR asserted (controller line or a raised vector) */
    uint32_t intr_line;         /* the interrupt controller's INTR output */
    aero_intr_ack_fn intr_ack;  /* its acknowledge cycle, or NULL */
    void *intr_ctx;             /* context for intr_ack */
    uint32_t intr_count;        /* vectors raised through aero_raise_interrupt, oldest first */
    uint8_t intr_queue[AERO_INTR_QUEUE];
    uint32_t dbg_hits;          /* DR6 B0-B3 of data breakpoints hit by the current instruction */
    uint32_t dr_seen[5];        /* DR0-DR3 and DR7 the TLB was last prepared for */
    /* --- host watches (mem.c; not guest state, kept across restore and reset) --- */
    aero_watch watch[AERO_WATCH_MAX]; /* armed ranges */
    uint32_t watch_data;        /* OR of the data flags (READ/WRITE) of armed slots: 0 = none */
    uint32_t watch_exec;        /* number of armed instruction watches */
    uint32_t watch_hit;         /* 1: a hit is recorded in watch_hit_* and not taken yet */
    uint32_t watch_stop;        /* 1: stop run() at the next instruction boundary */
    uint32_t watch_hit_lin;     /* the hit: linear address of the access */
    uint32_t watch_hit_phys;    /* its physical address */
    uint32_t watch_hit_size;    /* bytes accessed */
    uint32_t watch_hit_kind;    /* AERO_WATCH_READ, _WRITE or _EXEC (| _IO for ports) */
    uint32_t watch_hit_value;   /* for I/O: the value transferred */
    uint32_t watch_hit_eip;     /* EIP when the access was made */
    uint32_t watch_io;          /* number of armed I/O watches */
    uint32_t fetching;          /* 1 while decoding: fetches do not hit data watches */
    uint64_t watch_skip;        /* tick + 1 at which instruction watches do not trigger, 0: none */
    int paid;                   /* 1: the tick of the executing instruction or event is paid */
    aero_insn step_insn;        /* the instruction the run loop executes alone */
    /* --- the platform (platform.c) --- */
    struct aero_pc *pc;         /* the PC devices, NULL without cfg.pc_devices */
    uint64_t deadline;          /* earliest device deadline (tick), AERO_NEVER: none */
    uint32_t reset_pending;     /* AERO_RESET_* cause of a reset to take between instructions */
    aero_event *events;         /* the event log: AERO_EVENT_CAP entries and some slack */
    uint32_t ev_len;            /* events in the log */
    uint32_t ev_lost;           /* events dropped because the slack ran out (an error) */
    /* --- observation only (not state: never saved, restored or hashed) --- */
    aero_port_stat *port_log;   /* 65536 per-port counters (aero_port_log_enable), NULL: off */
    uint32_t *watch_log;        /* AERO_WATCH_LOG_MAX x 5 words (aero_watch_log), allocated
                                   when a logging watch is first armed, NULL: never */
    uint32_t watch_log_len;     /* accesses in watch_log */
    uint32_t watch_log_lost;    /* accesses that did not fit since the last aero_watch_log */
};

/* ---- fault delivery ---- */
__attribute__((noreturn)) void aero_fault(aero_machine *m, int vector, uint32_t code, int has_code);
__attribute__((noreturn)) void aero_fault_ud(aero_machine *m);
/* Deliver an interrupt/exception with return address ret_eip (software INT, traps). */
void aero_interrupt(aero_machine *m, int vector, uint32_t ret_eip, int has_code, uint32_t code);
/* INT n / INT3 / INTO / INT1: a trap delivered with the next instruction's EIP. */
void aero_soft_int(aero_machine *m, int vector, uint32_t ret_eip);
/* INT1 (ICEBP): #DB delivered with the next instruction's EIP, without the gate DPL check
 * and with EXT = 1 in delivery error codes. */
void aero_icebp(aero_machine *m, uint32_t ret_eip);
/* Deliver the fault recorded by aero_fault (called by the run loop after the longjmp). */
void aero_handle_fault(aero_machine *m);

/* ---- the clock ----
 * Inside a decoded block the ticks of the whole block are paid before it runs, so only the
 * last instruction of a block sees the exact clock: handlers that read it (RDTSC, RDMSR,
 * port I/O, string batching) must end their block (flags branch/sys/str in aero/isa.py). */
AERO_INLINE uint64_t aero_now(const aero_machine *m) { return m->slice_end - (uint64_t)m->countdown; }

/* ---- registers ---- */
AERO_INLINE uint8_t *reg8p(aero_machine *m, int r) {
    return (uint8_t *)&m->cpu.r[r & 3] + (r >> 2);
}
AERO_INLINE uint8_t get_r8(aero_machine *m, int r) { return *reg8p(m, r); }
AERO_INLINE void set_r8(aero_machine *m, int r, uint8_t v) { *reg8p(m, r) = v; }
AERO_INLINE uint16_t get_r16(aero_machine *m, int r) { return (uint16_t)m->cpu.r[r]; }
AERO_INLINE void set_r16(aero_machine *m, int r, uint16_t v) {
    m->cpu.r[r] = (m->cpu.r[r] & 0xFFFF0000u) | v;
}

/* ---- flags (flags.c) ---- */
uint32_t aero_flags_compute(aero_machine *m);
/* Materialize lazy flags into eflags. */
AERO_INLINE uint32_t get_flags(aero_machine *m) {
    if (m->cpu.lf_op != LF_NONE) {
        m->cpu.eflags = (m->cpu.eflags & ~F_ARITH) | aero_flags_compute(m);
        m->cpu.lf_op = LF_NONE;
    }
    return m->cpu.eflags;
}
uint32_t aero_lazy_cf(const aero_machine *m);
/* CF alone, without materializing the other flags. */
AERO_INLINE uint32_t get_cf(aero_machine *m) {
    const aero_cpu *c = &m->cpu;
    switch (c->lf_op) {
    case LF_NONE: return c->eflags & F_CF;
    case LF_LOGIC: return 0;
    case LF_INC: case LF_DEC: return c->lf_b & F_CF;
    case LF_ADD: if (c->lf_size == 2) return c->lf_res < c->lf_a; break;
    case LF_SUB: if (c->lf_size == 2) return c->lf_a < c->lf_b; break;
    default: break;
    }
    return aero_lazy_cf(m);
}
AERO_INLINE void set_lazy(aero_machine *m, uint32_t op, uint32_t size, uint32_t a, uint32_t b, uint32_t res) {
    m->cpu.lf_op = op;
    m->cpu.lf_size = size;
    m->cpu.lf_a = a;
    m->cpu.lf_b = b;
    m->cpu.lf_res = res;
}
/* Replace the arithmetic flags selected by mask (materializes the rest first). */
AERO_INLINE void set_flags_masked(aero_machine *m, uint32_t mask, uint32_t value) {
    uint32_t f = get_flags(m);
    m->cpu.eflags = (f & ~mask) | (value & mask);
}
int aero_cond(aero_machine *m, int cc);
extern const uint8_t aero_parity[256];
/* PF/ZF/SF for a result of the given size (0/1/2). */
AERO_INLINE uint32_t szp_flags(uint32_t res, int size) {
    uint32_t mask = size == 0 ? 0xFFu : size == 1 ? 0xFFFFu : 0xFFFFFFFFu;
    uint32_t sign = size == 0 ? 0x80u : size == 1 ? 0x8000u : 0x80000000u;
    uint32_t f = aero_parity[res & 0xFF];
    if ((res & mask) == 0) f |= F_ZF;
    if (res & sign) f |= F_SF;
    return f;
}

/* ---- memory (mem.c) ---- */
uint32_t aero_rd_slow(aero_machine *m, uint32_t lin, int size);
void aero_wr_slow(aero_machine *m, uint32_t lin, int size, uint32_t val);
/* What MOV CR3 does: drop every translation except those of global pages, unless a paging
 * control (CR0.PG/WP, CR4.PSE/PAE/PGE) changed since they were made: then drop them all.
 * Task switches and CR0/CR4 writes call it too. */
void aero_tlb_flush(aero_machine *m);
/* Drop every translation, global ones included (reset, state loads, A20 changes). */
void aero_tlb_flush_all(aero_machine *m);
/* INVLPG: drop the translations of the page holding lin (the whole 4 MB page if it is one). */
void aero_tlb_flush_page(aero_machine *m, uint32_t lin);
void aero_tlb_flush_writes(aero_machine *m);
/* Translate a linear address for an access; faults on failure. Returns physical. */
/* Access kinds for translation: a write, and a system access (descriptor tables, TSS)
 * made with supervisor rights at any CPL. */
#define AERO_ACC_WRITE 1
#define AERO_ACC_SYS 2
uint32_t aero_translate_slow(aero_machine *m, uint32_t lin, int acc);
AERO_INLINE uint32_t aero_translate(aero_machine *m, uint32_t lin, int acc) {
    if (AERO_LIKELY(!(m->cpu.cr0 & CR0_PG) && m->cpu.a20)) return lin;
    return aero_translate_slow(m, lin, acc);
}
/* Host pointer for a physical page usable for reads (NULL: not RAM/ROM). */
uint8_t *aero_phys_ptr(aero_machine *m, uint32_t phys);
void aero_invalidate_code(aero_machine *m, uint32_t phys, uint32_t len);
/* Record that decoded blocks now hold the bytes [phys, phys + len) of one RAM page. */
void aero_note_code(aero_machine *m, uint32_t phys, uint32_t len);

AERO_INLINE uint32_t load_le(const uint8_t *p, int size) {
    if (size == 1) return p[0];
    if (size == 2) { uint16_t v; memcpy(&v, p, 2); return v; }
    uint32_t v; memcpy(&v, p, 4); return v;
}
AERO_INLINE void store_le(uint8_t *p, int size, uint32_t v) {
    if (size == 1) p[0] = (uint8_t)v;
    else if (size == 2) { uint16_t w = (uint16_t)v; memcpy(p, &w, 2); }
    else memcpy(p, &v, 4);
}

/* The TLB entry that serves linear address lin at the current privilege. */
AERO_INLINE aero_tlb_entry *aero_tlb_entry_for(aero_machine *m, uint32_t lin) {
    return &m->tlb[(m->cpu.cpl + 1) >> 2][aero_tlb_slot(lin)]; /* set 1 exactly at CPL 3 */
}
/* The tag an access of `size` bytes at lin must find in lin's slot: the page of its last
 * byte (an access crossing into the next page therefore misses, see aero_tlb_slot), plus,
 * while alignment checking is armed, the address bits that make it misaligned, so that a
 * misaligned access misses and the slow path raises #AC while aligned ones stay on the fast
 * path. */
AERO_INLINE uint32_t tlb_key(const aero_machine *m, uint32_t lin, int size) {
    if (size == 1) return lin & ~0xFFFu;
    return ((lin + (uint32_t)size - 1) & ~0xFFFu) | (lin & m->ac_low & (uint32_t)(size - 1));
}

/* Linear-address accesses: TLB fast path, slow path for misses and page crossings. */
AERO_INLINE uint32_t lin_rd(aero_machine *m, uint32_t lin, int size) {
    aero_tlb_entry *e = aero_tlb_entry_for(m, lin);
    if (AERO_LIKELY(e->tag_r == tlb_key(m, lin, size)))
        return load_le((const uint8_t *)(e->addend + lin), size);
    return aero_rd_slow(m, lin, size);
}
AERO_INLINE void lin_wr(aero_machine *m, uint32_t lin, int size, uint32_t v) {
    aero_tlb_entry *e = aero_tlb_entry_for(m, lin);
    if (AERO_LIKELY(e->tag_w == tlb_key(m, lin, size))) {
        store_le((uint8_t *)(e->addend + lin), size, v);
        return;
    }
    aero_wr_slow(m, lin, size, v);
}
/* Check that the linear page(s) of [lin, lin+size) are writable, faulting if not, so that
 * multi-write instructions can validate before committing any state. */
void aero_probe_write(aero_machine *m, uint32_t lin, uint32_t size);
/* The read of a read-modify-write: read (a not-present page faults as a read, as the
 * access is one), then make sure the write cannot fault, so that no register or flag
 * changes before a #PF on the write (the instruction must leave no trace). */
AERO_INLINE uint32_t lin_rd_w(aero_machine *m, uint32_t lin, int size) {
    uint32_t v = lin_rd(m, lin, size);
    aero_tlb_entry *e = aero_tlb_entry_for(m, lin);
    if (e->tag_w != tlb_key(m, lin, size)) aero_probe_write(m, lin, (uint32_t)size);
    return v;
}
/* Implicit supervisor-mode accesses (descriptor tables, TSS): checked with supervisor
 * rights whatever the CPL, never alignment-checked; page faults are raised as usual. */
uint32_t aero_rd_sys(aero_machine *m, uint32_t lin, int size);
/* An I/O access the host watches (m->watch_io set): records the hit like a data watch. */
void aero_watch_port(aero_machine *m, uint16_t port, int size, uint32_t val, uint32_t kind);
void aero_wr_sys(aero_machine *m, uint32_t lin, int size, uint32_t val);

/* ---- debug registers ---- */
#define DR6_BS 0x4000u
/* Enabled (L or G) breakpoints of DR0-DR3 whose R/W field is rw (0 execute, 1 write,
 * 2 I/O, 3 read/write): bit i for DRi. */
AERO_INLINE uint32_t aero_bp_enabled(const aero_machine *m, uint32_t rw) {
    uint32_t dr7 = m->cpu.dr[7], mask = 0;
    for (int i = 0; i < 4; i++)
        if (((dr7 >> (2 * i)) & 3u) && ((dr7 >> (16 + 4 * i)) & 3u) == rw) mask |= 1u << i;
    return mask;
}
/* Breakpoint i's range: LEN 00 = 1, 01 = 2, 11 = 4 bytes; 10 (undefined on the P6) is taken
 * as 8 bytes, as later processors define it. The address is aligned down to the length. */
AERO_INLINE uint32_t aero_bp_len(const aero_machine *m, int i) {
    static const uint8_t len[4] = {1, 2, 8, 4};
    return len[(m->cpu.dr[7] >> (18 + 4 * i)) & 3u];
}
/* Breakpoints in mask whose range overlaps [addr, addr + size). */
AERO_INLINE uint32_t aero_bp_match(const aero_machine *m, uint32_t mask, uint32_t addr, uint32_t size) {
    uint32_t hits = 0;
    for (int i = 0; i < 4; i++) {
        if (!(mask & (1u << i))) continue;
        uint32_t len = aero_bp_len(m, i);
        uint64_t base = m->cpu.dr[i] & ~(len - 1);
        if (addr < base + len && base < (uint64_t)addr + size) hits |= 1u << i;
    }
    return hits;
}

/* ---- interrupts (machine.c) ----
 * INTR is level-sensitive: an interrupt controller (the 8259 PIC) asserts it while it has an
 * interrupt to offer. Between instructions, when IF = 1 and no interrupt shadow is open, the
 * CPU runs the controller's acknowledge cycle, which returns the vector and normally drops
 * INTR. Vectors raised with aero_raise_interrupt are served first. Asserting INTR while an
 * instruction runs ends the decoded block, so the run loop sees it at the next boundary. */
void aero_set_intr(aero_machine *m, int asserted);
void aero_set_intr_controller(aero_machine *m, aero_intr_ack_fn ack, void *ctx);
/* aero_raise_interrupt / aero_raise_nmi without logging them as inputs (aero_inject logs). */
void aero_raise_interrupt_internal(aero_machine *m, uint32_t vector);
void aero_raise_nmi_internal(aero_machine *m);


/* ---- segmentation ---- */
__attribute__((noreturn)) void aero_seg_fault(aero_machine *m, int seg);
/* Access check of `size` bytes at seg:off the fast path could not decide (expand-down
 * segments, type rules, limit violations): faults, or returns the linear address. */
uint32_t aero_seg_slow(aero_machine *m, int seg, uint32_t off, uint32_t size, int write);
/* Recompute seg_end for one segment register / all six (after a load, a mode change). */
void aero_seg_refresh(aero_machine *m, int seg);
void aero_seg_refresh_all(aero_machine *m);
/* Linear address of seg:off for a read (seg_lin) or write (seg_lin_w) of `size` bytes,
 * with the limit and segment-type checks: one compare on the fast path. */
AERO_INLINE uint32_t seg_lin(aero_machine *m, int seg, uint32_t off, uint32_t size) {
    if (AERO_LIKELY((uint64_t)off + size <= m->seg_end[0][seg])) return m->cpu.seg[seg].base + off;
    return aero_seg_slow(m, seg, off, size, 0);
}
AERO_INLINE uint32_t seg_lin_w(aero_machine *m, int seg, uint32_t off, uint32_t size) {
    if (AERO_LIKELY((uint64_t)off + size <= m->seg_end[1][seg])) return m->cpu.seg[seg].base + off;
    return aero_seg_slow(m, seg, off, size, 1);
}
AERO_INLINE uint32_t rd8(aero_machine *m, int seg, uint32_t off) { return lin_rd(m, seg_lin(m, seg, off, 1), 1); }
AERO_INLINE uint32_t rd16(aero_machine *m, int seg, uint32_t off) { return lin_rd(m, seg_lin(m, seg, off, 2), 2); }
AERO_INLINE uint32_t rd32(aero_machine *m, int seg, uint32_t off) { return lin_rd(m, seg_lin(m, seg, off, 4), 4); }
AERO_INLINE void wr8(aero_machine *m, int seg, uint32_t off, uint32_t v) { lin_wr(m, seg_lin_w(m, seg, off, 1), 1, v); }
AERO_INLINE void wr16(aero_machine *m, int seg, uint32_t off, uint32_t v) { lin_wr(m, seg_lin_w(m, seg, off, 2), 2, v); }
AERO_INLINE void wr32(aero_machine *m, int seg, uint32_t off, uint32_t v) { lin_wr(m, seg_lin_w(m, seg, off, 4), 4, v); }
/* Sized access: size in bytes (1, 2, 4). */
AERO_INLINE uint32_t rdn(aero_machine *m, int seg, uint32_t off, int size) { return lin_rd(m, seg_lin(m, seg, off, (uint32_t)size), size); }
AERO_INLINE void wrn(aero_machine *m, int seg, uint32_t off, int size, uint32_t v) { lin_wr(m, seg_lin_w(m, seg, off, (uint32_t)size), size, v); }

/* Point tlb_fast at the set of the current privilege (or at the empty set while alignment
 * checking is armed, so that the specialised handlers leave every access to the generic
 * ones, which check alignment). */
AERO_INLINE void aero_tlb_fast_refresh(aero_machine *m) {
    m->tlb_fast = m->ac_low ? m->tlb_none : m->tlb[(m->cpu.cpl + 1) >> 2];
}
/* The tag a fast-path access of `size` bytes at lin must find in tlb_fast (no alignment
 * bits: tlb_fast is empty while alignment checking is armed). */
AERO_INLINE uint32_t fast_key(uint32_t lin, uint32_t size) { return (lin + size - 1) & ~0xFFFu; }
/* Fast-path-only accesses for the handlers specialised at decode time (fastpath.c): the
 * host pointer for `size` bytes at seg:off when one compare against seg_end and one TLB tag
 * compare prove the access allowed (rights, limit, type, alignment, no page crossing, no
 * watch), else NULL. They change nothing: on NULL the handler hands the instruction to its
 * generic handler, which takes the slow paths and raises any fault from the same state.
 * Handlers built on them need no call on their fast path, so no registers to save. */
AERO_INLINE uint8_t *fast_rd_ptr(aero_machine *m, int seg, uint32_t off, uint32_t size) {
    if (AERO_UNLIKELY((uint64_t)off + size > m->seg_end[0][seg])) return NULL;
    uint32_t lin = m->cpu.seg[seg].base + off;
    const aero_tlb_entry *e = &m->tlb_fast[aero_tlb_slot(lin)];
    if (AERO_UNLIKELY(e->tag_r != fast_key(lin, size))) return NULL;
    uint8_t *p = (uint8_t *)(e->addend + lin);
    if (!p) __builtin_unreachable(); /* a host address: lets the caller's NULL test fold */
    return p;
}
AERO_INLINE uint8_t *fast_wr_ptr(aero_machine *m, int seg, uint32_t off, uint32_t size) {
    if (AERO_UNLIKELY((uint64_t)off + size > m->seg_end[1][seg])) return NULL;
    uint32_t lin = m->cpu.seg[seg].base + off;
    const aero_tlb_entry *e = &m->tlb_fast[aero_tlb_slot(lin)];
    if (AERO_UNLIKELY(e->tag_w != fast_key(lin, size))) return NULL;
    uint8_t *p = (uint8_t *)(e->addend + lin);
    if (!p) __builtin_unreachable(); /* a host address: lets the caller's NULL test fold */
    return p;
}
/* Read-modify-write: both tags (a page may be write-mapped while reads of it are watched). */
AERO_INLINE uint8_t *fast_rw_ptr(aero_machine *m, int seg, uint32_t off, uint32_t size) {
    if (AERO_UNLIKELY((uint64_t)off + size > m->seg_end[1][seg])) return NULL;
    uint32_t lin = m->cpu.seg[seg].base + off;
    const aero_tlb_entry *e = &m->tlb_fast[aero_tlb_slot(lin)];
    uint32_t key = fast_key(lin, size);
    if (AERO_UNLIKELY((e->tag_w != key) | (e->tag_r != key))) return NULL;
    uint8_t *p = (uint8_t *)(e->addend + lin);
    if (!p) __builtin_unreachable(); /* a host address: lets the caller's NULL test fold */
    return p;
}
/* CF of the pending lazy operation when it is cheap to find (1), else 0 (the caller takes
 * its generic handler). */
AERO_INLINE int fast_cf(const aero_machine *m, uint32_t *cf) {
    const aero_cpu *c = &m->cpu;
    switch (c->lf_op) {
    case LF_NONE: *cf = c->eflags & F_CF; return 1;
    case LF_LOGIC: *cf = 0; return 1;
    case LF_INC: case LF_DEC: *cf = c->lf_b & F_CF; return 1;
    case LF_ADD: *cf = c->lf_res < c->lf_a; return c->lf_size == 2;
    case LF_SUB: *cf = c->lf_a < c->lf_b; return c->lf_size == 2;
    default: return 0;
    }
}

/* ---- operand helpers for decoded instructions ---- */
/* Effective address (offset within in->seg) of the ModRM memory operand. */
AERO_INLINE uint32_t ea(aero_machine *m, const aero_insn *in) {
    uint32_t a = m->cpu.r[in->base] + (m->cpu.r[in->index] << in->scale) + in->disp;
    return in->asz ? a : (a & 0xFFFF);
}
/* Operand size in bytes for a v-sized operand. */
AERO_INLINE int osize(const aero_insn *in) { return in->osz ? 4 : 2; }

/* E operand (ModRM r/m) of size 1, 2 or 4 bytes. */
AERO_INLINE uint32_t get_E(aero_machine *m, const aero_insn *in, int size) {
    if (in->mod == 3) {
        if (size == 1) return get_r8(m, in->rm);
        if (size == 2) return get_r16(m, in->rm);
        return m->cpu.r[in->rm];
    }
    return rdn(m, in->seg, ea(m, in), size);
}
AERO_INLINE void set_reg(aero_machine *m, int r, int size, uint32_t v) {
    if (size == 1) set_r8(m, r, (uint8_t)v);
    else if (size == 2) set_r16(m, r, (uint16_t)v);
    else m->cpu.r[r] = v;
}
AERO_INLINE uint32_t get_reg(aero_machine *m, int r, int size) {
    if (size == 1) return get_r8(m, r);
    if (size == 2) return get_r16(m, r);
    return m->cpu.r[r];
}
AERO_INLINE void set_E(aero_machine *m, const aero_insn *in, int size, uint32_t v) {
    if (in->mod == 3) set_reg(m, in->rm, size, v);
    else wrn(m, in->seg, ea(m, in), size, v);
}

/* ---- control flow ---- */
/* Advance EIP past the instruction (16-bit IP wraps in 16-bit code segments). */
AERO_INLINE int code32(const aero_machine *m) { return (m->cpu.seg[S_CS].attr & SA_DB) != 0; }
AERO_INLINE void next(aero_machine *m, const aero_insn *in) {
    uint32_t e = m->cpu.eip + in->len;
    m->cpu.eip = in->code32 ? e : (e & 0xFFFF);
}
/* The forms specialised at decode time (fastpath.c) run in 32-bit code: EIP never wraps. */
AERO_INLINE void next32(aero_machine *m, const aero_insn *in) { m->cpu.eip += in->len; }
/* Their memory forms have 32-bit addressing. */
/* EIP of an entry of a block's deferred-EIP prefix. */
AERO_INLINE uint32_t prefix_eip(const aero_machine *m, const aero_insn *in) {
    return m->cpu.eip + (uint32_t)(int32_t)in->pre_off;
}
AERO_INLINE uint32_t ea32(const aero_machine *m, const aero_insn *in) {
    return m->cpu.r[in->base] + (m->cpu.r[in->index] << in->scale) + in->disp;
}
/* An entry of a block's deferred-EIP prefix (aero_block.npre) hands a case to its generic
 * handler through this: EIP and m->cur are made those of the instruction first, so a fault
 * or a stop is raised exactly as without the prefix. Returns 1 when the handler set
 * exit_block (the prefix ends there, EIP as the handler left it), else 0 (EIP back at the
 * block's start). */
int aero_prefix_generic(aero_machine *m, const aero_insn *in, aero_handler generic);
/* The same for a _de entry, going on to the next entry unless exit_block was set; and for a
 * _dl entry. Tail calls both, so the prefix variants need no stack frame. */
void aero_prefix_generic_de(aero_machine *m, const aero_insn *in, aero_handler generic);
void aero_prefix_generic_dl(aero_machine *m, const aero_insn *in, aero_handler generic);
/* A specialised form in its three variants, from BODY(m, in): 1 when it ran (EIP untouched),
 * 0 when GENERIC must run it (nothing changed yet).
 *   aero_op_NAME     advances EIP;
 *   aero_op_NAME_de  an entry of a block's deferred-EIP prefix but its last: leaves EIP to
 *                    the block and goes on to the next entry (a tail call);
 *   aero_op_NAME_dl  the prefix's last entry: leaves EIP to the block and returns. */
#define DEF_FORMS(name, GENERIC, BODY)                                                            \
    void aero_op_##name(aero_machine *m, const aero_insn *in) {                                   \
        if (AERO_LIKELY(BODY(m, in))) next32(m, in);                                              \
        else GENERIC(m, in);                                                                      \
    }                                                                                             \
    DEF_PREFIX_FORMS(name, GENERIC, BODY)
/* The two prefix variants alone (with the suffix of name: _nf for the forms whose flags are
 * dead, see aero_block.npre). */
#define DEF_PREFIX_FORMS(name, GENERIC, BODY)                                                     \
    void aero_op_##name##_de(aero_machine *m, const aero_insn *in) {                              \
        if (AERO_UNLIKELY(!BODY(m, in))) {                                                        \
            aero_prefix_generic_de(m, in, GENERIC);                                               \
            return;                                                                               \
        }                                                                                         \
        in++;                                                                                     \
        in->fn(m, in);                                                                            \
    }                                                                                             \
    void aero_op_##name##_dl(aero_machine *m, const aero_insn *in) {                              \
        if (AERO_UNLIKELY(!BODY(m, in))) aero_prefix_generic_dl(m, in, GENERIC);                  \
    }
/* Near jump to offset target in CS (with the CS limit check: #GP(0) outside). */
void aero_jump_near(aero_machine *m, uint32_t target);

/* ---- stack ---- */
AERO_INLINE int stack32(const aero_machine *m) { return (m->cpu.seg[S_SS].attr & SA_DB) != 0; }
AERO_INLINE uint32_t sp_get(aero_machine *m) { return stack32(m) ? m->cpu.r[R_ESP] : (m->cpu.r[R_ESP] & 0xFFFF); }
AERO_INLINE void sp_set(aero_machine *m, uint32_t v) {
    if (stack32(m)) m->cpu.r[R_ESP] = v;
    else set_r16(m, R_ESP, (uint16_t)v);
}
AERO_INLINE uint32_t sp_mask(const aero_machine *m) { return stack32(m) ? 0xFFFFFFFFu : 0xFFFFu; }
/* Push/pop of size bytes (2 or 4); the new SP is committed only after the access. */
AERO_INLINE void push(aero_machine *m, int size, uint32_t v) {
    uint32_t sp = (sp_get(m) - (uint32_t)size) & sp_mask(m);
    wrn(m, S_SS, sp, size, v);
    sp_set(m, sp);
}
AERO_INLINE uint32_t pop(aero_machine *m, int size) {
    uint32_t sp = sp_get(m);
    uint32_t v = rdn(m, S_SS, sp, size);
    sp_set(m, (sp + (uint32_t)size) & sp_mask(m));
    return v;
}

/* ---- segments (seg.c) ---- */
/* Load a segment register as MOV/POP/LxS do (real mode: base = sel << 4). */
void aero_load_seg(aero_machine *m, int seg, uint16_t sel);
/* Far transfer: load CS:EIP (real mode, or protected mode to a code segment). */
void aero_far_jump(aero_machine *m, uint16_t sel, uint32_t off);
AERO_INLINE int aero_pm(const aero_machine *m) {
    return (m->cpu.cr0 & CR0_PE) && !(m->cpu.eflags & F_VM);
}
/* Read the descriptor of sel from the GDT or LDT without faulting on the selector:
 * 0, or -1 when it lies outside the table (or the LDT is unusable). */
int aero_read_descriptor(aero_machine *m, uint16_t sel, uint32_t *lo, uint32_t *hi);
/* Load seg with a null selector: every access through it then faults (#GP(0), #SS(0)). */
void aero_seg_null(aero_machine *m, int seg, uint16_t sel);
/* Descriptor of a non-null selector; #vec(selector | ext) when it lies outside its table
 * (or names the LDT while LDTR is unusable). */
void aero_desc_read(aero_machine *m, uint16_t sel, int vec, uint32_t ext, uint32_t *lo, uint32_t *hi);
/* Byte-granular limit of a descriptor, and a segment cache filled from one. */
uint32_t aero_desc_limit(uint32_t lo, uint32_t hi);
void aero_desc_cache(aero_segment *s, uint16_t sel, uint32_t lo, uint32_t hi);
/* Set the accessed bit of a segment descriptor in memory when it is clear. */
void aero_desc_accessed(aero_machine *m, uint16_t sel, uint32_t hi);
/* Does [off, off + size) lie inside segment s (expand-down aware)? */
int aero_seg_fits(const aero_segment *s, uint32_t off, uint32_t size);
/* Check that [lin, lin + size) is writable with supervisor rights (descriptor tables, the
 * TSS, inner stacks), without writing: page faults are raised here. */
void aero_sys_probe(aero_machine *m, uint32_t lin, uint32_t size);
/* Linear addresses of n stack slots of `size` bytes below offset sp of the stack segment
 * cache s (slot i at sp - (i + 1) * size, wrapped to the stack width): #SS(err) when one
 * lies outside s; every page is probed for a write with the rights of privilege level cpl,
 * so the pushes that follow cannot fault. */
void aero_stack_slots(aero_machine *m, const aero_segment *s, uint32_t sp, int size, int n, uint32_t cpl,
                      uint32_t err, uint32_t *lin);

/* ---- tasks (task.c) ---- */
/* What started a task switch: it decides the busy bits, NT and the back link. */
enum { AERO_TASK_JMP, AERO_TASK_CALL, AERO_TASK_IRET, AERO_TASK_INT };
/* Hardware task switch to the TSS selected by sel (descriptor lo/hi), after the caller's
 * checks of its own source (privilege, busy bit, present). eip: the outgoing task's EIP
 * to save; ext: the EXT bit of error codes. Returns 1 when the new TSS's debug trap bit
 * (T) is set: the caller raises the #DB once it has finished the transfer. */
int aero_task_switch(aero_machine *m, uint16_t sel, uint32_t lo, uint32_t hi, int source, uint32_t eip,
                     uint32_t ext);
/* The stack of privilege level dpl in the current TSS (32- or 16-bit), with its SS checked
 * as the CALL and INT pseudocode demands (#TS, #SS with the EXT bit ext): fills *ss and
 * returns ESP. Nothing is committed. */
uint32_t aero_tss_stack(aero_machine *m, uint32_t dpl, uint32_t ext, aero_segment *ss);
/* The #DB trap a TSS's T bit requests, raised once the switch is complete (DR6.BT set). */
void aero_task_debug_trap(aero_machine *m);
/* Decoding-mode key for the block cache (includes the code segment size). */
AERO_INLINE uint32_t aero_decode_key(const aero_machine *m) { return code32(m) ? 2u : 1u; }

/* ---- port I/O (io.c) ---- */
/* #GP(0) unless the current privilege may access `size` bytes at `port` (CPL <= IOPL in
 * protected mode, else the TSS I/O permission bitmap; always allowed in real mode). */
void aero_io_check(aero_machine *m, uint16_t port, int size);
uint32_t aero_io_read(aero_machine *m, uint16_t port, int size);
void aero_io_write(aero_machine *m, uint16_t port, int size, uint32_t val);

/* ---- decoder (decode.c) ---- */
/* Everything besides the linear address that decides which block runs there: the code
 * segment's size, protected or virtual-8086 mode, and the CPL (the TLB set that fetches). */
AERO_INLINE uint32_t aero_jump_mode(const aero_machine *m) {
    return (m->cpu.seg[S_CS].attr & SA_DB) | (m->cpu.cr0 & CR0_PE) | (m->cpu.eflags & F_VM) | (m->cpu.cpl << 1);
}
AERO_INLINE uint32_t aero_jump_slot(uint32_t lin) { return (lin ^ (lin >> 10)) & (AERO_JUMP_CACHE - 1); }
/* The block at CS:EIP: the jump cache when it answers, else aero_block_lookup. */
aero_block *aero_block_lookup(aero_machine *m);
AERO_INLINE aero_block *aero_block_find(aero_machine *m) {
    const aero_segment *cs = &m->cpu.seg[S_CS];
    uint32_t eip = m->cpu.eip, lin = cs->base + eip;
    const aero_jump_entry *j = &m->jump[aero_jump_slot(lin)];
    if (AERO_LIKELY(j->lin == lin && j->epoch == m->code_epoch && j->mode == aero_jump_mode(m) && eip <= cs->limit))
        return j->b;
    return aero_block_lookup(m);
}
void aero_blocks_flush(aero_machine *m);
/* The handler specialised for this decoded instruction's form, or its generic handler
 * (fastpath.c). */
aero_handler aero_fast_form(const aero_insn *in);
/* 1: this specialised handler touches no memory and never sets exit_block (fastpath.c). */
int aero_fast_quiet(aero_handler h);
/* Turn the leading entries of a decoded block into its deferred-EIP prefix (aero_block.npre;
 * fastpath.c). */
void aero_fast_prefix(aero_block *b);
/* The handler that advances EIP of a prefix entry (for one-instruction execution). */
aero_handler aero_prefix_normal(const aero_insn *in);
/* The fused handler of a specialised register-only CMP/TEST/SUB/INC/DEC followed by a
 * specialised 32-bit Jcc, or NULL (ops_flow.c). */
aero_handler aero_fuse_pair(aero_handler first, aero_handler jcc);
/* Decode one instruction at CS:EIP into *in (used for single-instruction execution). */
void aero_decode_one(aero_machine *m, aero_insn *in);

void aero_op_ud(aero_machine *m, const aero_insn *in);
/* Development marker for a handler not yet written: raises #UD. Must not remain. */
#define AERO_PENDING(m, in) aero_op_ud((m), (in))
/* Development marker for a handler not yet written: raises #UD. Must not remain. */
#define AERO_PENDING(m, in) aero_op_ud((m), (in))

#endif
