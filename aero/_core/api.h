/* aero core: the public C API.
 *
 * This file is read by cffi's cdef parser as well as by the C compiler, so it holds only
 * plain declarations and integer #defines. Everything here is deterministic: the core
 * never reads host time, randomness or the environment.
 */

/* Why run() stopped. */
#define AERO_STOP_TICKS 0     /* the requested tick was reached */
#define AERO_STOP_HALT 1      /* HLT with nothing that could wake the CPU */
#define AERO_STOP_EXIT 2      /* the guest wrote the debug-exit port */
#define AERO_STOP_SHUTDOWN 3  /* triple fault: the CPU entered shutdown */
#define AERO_STOP_OUTPUT 4    /* the debug-console buffer is full: drain it and run on */
#define AERO_STOP_EXCEPTION 5 /* an exception was raised and stop_on_exception is set */
#define AERO_STOP_EVENTS 6    /* the event log is nearly full: drain it and run on */
#define AERO_STOP_WATCH 7     /* a host watch (aero_watch_set) was hit: aero_watch_take */

/* Segment register indices in aero_regs.seg. */
#define AERO_ES 0
#define AERO_CS 1
#define AERO_SS 2
#define AERO_DS 3
#define AERO_FS 4
#define AERO_GS 5

/* Size in bytes of the canonical serialized CPU state (aero_cpu_serialize). */
#define AERO_CPU_STATE_BYTES 512

typedef struct aero_machine aero_machine;

/* A segment register: the visible selector and the hidden descriptor cache. */
typedef struct aero_segment {
    uint32_t base;     /* linear base address */
    uint32_t limit;    /* byte-granular limit (granularity already applied) */
    uint16_t selector; /* visible selector */
    uint16_t attr;     /* access rights: bits 0-7 descriptor byte 5 (type,S,DPL,P),
                          bits 12-15 the flags nibble of byte 6 (AVL,L,D/B,G) */
} aero_segment;

/* GDTR / IDTR. */
typedef struct aero_table_reg {
    uint32_t base;  /* linear base */
    uint32_t limit; /* 16-bit limit, zero-extended */
} aero_table_reg;

/* The architectural CPU state visible through the API. */
typedef struct aero_regs {
    uint32_t gpr[8];        /* EAX ECX EDX EBX ESP EBP ESI EDI */
    uint32_t eip;           /* instruction pointer (offset in CS) */
    uint32_t eflags;        /* all flags, materialized */
    aero_segment seg[6];    /* ES CS SS DS FS GS */
    aero_segment ldtr;      /* LDT register */
    aero_segment tr;        /* task register */
    aero_table_reg gdtr;    /* GDT register */
    aero_table_reg idtr;    /* IDT register */
    uint32_t cr0, cr2, cr3, cr4; /* control registers */
    uint32_t dr[8];         /* debug registers (DR4/DR5 alias DR6/DR7) */
    uint32_t cpl;           /* current privilege level */
    uint32_t halted;        /* 1 while stopped in HLT */
} aero_regs;

/* The x87 state visible through the API (aero_get_fpu / aero_set_fpu). */
typedef struct aero_fpu_regs {
    uint64_t st_sig[8]; /* ST(0)-ST(7) significands (stack order: ST(i) = R((TOP + i) mod 8)) */
    uint16_t st_se[8];  /* ST(0)-ST(7) sign and exponent */
    uint16_t fcw;       /* control word */
    uint16_t fsw;       /* status word (TOP in bits 11-13) */
    uint16_t ftw;       /* full tag word as FSTENV stores it (2 bits per physical register) */
    uint16_t fop;       /* last instruction opcode (11 bits) */
    uint16_t fcs;       /* last instruction CS selector */
    uint16_t fds;       /* last operand segment selector */
    uint32_t fip;       /* last instruction offset */
    uint32_t fdp;       /* last operand offset */
    uint32_t ferr;      /* 1: FERR# holds IRQ 13 (until port F0h is written) */
} aero_fpu_regs;

/* Machine configuration. Everything the core's behaviour depends on, besides the guest
 * images and the event log. */
typedef struct aero_config {
    uint32_t ram_size;           /* bytes of RAM at physical 0, multiple of 4096 */
    char cpuid_vendor[13];       /* 12 characters + NUL, e.g. "GenuineIntel" */
    uint32_t cpuid_signature;    /* CPUID.1:EAX (family, model, stepping) */
    uint32_t cpuid_features_edx; /* CPUID.1:EDX feature bits */
    uint32_t cpuid_features_ecx; /* CPUID.1:ECX feature bits */
    uint32_t tsc_per_tick;       /* RDTSC increments per guest tick */
    uint32_t a20_enabled;        /* 1: A20 gate open at reset */
    uint32_t debug_ports;        /* 1: debug console (0xE9) and debug exit (0xF4) present */
    uint32_t reset_on_triple_fault; /* 1: a triple fault resets the CPU (RAM kept) and runs on,
                                       as a PC does; 0: run() stops with AERO_STOP_SHUTDOWN */
    uint32_t pc_devices;         /* 1: the PC platform (8259A pair, 8254, two 16550A, RTC/CMOS,
                                    8042 + keyboard, port 92h, POST ports, PCI host bridge) */
    uint64_t tick_hz;            /* guest ticks per guest second: the time base of every device */
    uint16_t post_ports[4];      /* extra POST-code ports besides 80h (0: unused) */
    uint32_t platform_rev;       /* the PC platform's revision (AERO_PLATFORM_REV: the current
                                    one); a trace replays on the revision it was recorded on */
} aero_config;
/* Platform revisions: what a trace recorded on an earlier one needs switched off.
 * 0: before the firmware devices: no PIIX3 functions at 00:01, no host-bridge subsystem IDs
 *    or PAM routing, no fw_cfg (510h), IDE (1F0h, 170h, 3F6h, 376h), VGA (3B0h-3DFh) or
 *    debug console at 402h.
 * 1: those devices.
 * 2: a disk machine's CMOS boot order (3Dh = 02h: the hard disk first). */
#define AERO_PLATFORM_REV 2

/* ---- the event log ----
 * Every nondeterministic input enters through aero_inject, stamped with the current tick;
 * every device-produced event is appended as it happens. Both go to one ordered log that the
 * host drains (aero_event_log / aero_event_log_clear): a recording is this log. */
typedef struct aero_event {
    uint64_t tick;  /* guest clock when it happened */
    uint32_t kind;  /* AERO_EV_* */
    uint32_t a;     /* first argument (see the kind) */
    uint64_t b;     /* second argument */
} aero_event;

/* Inputs (kinds below 0x40): what aero_inject accepts. */
#define AERO_EV_SERIAL_RX 0x01 /* a = UART (0 COM1, 1 COM2), b = the received byte */
#define AERO_EV_KEY 0x02       /* a = key (set-2 make code, E0h-prefixed keys as E0xxh; Pause as
                                  E077h, Print Screen as E07Ch), b = 1 press, 0 release */
#define AERO_EV_RTC_TIME 0x03  /* b = the wall-clock time at this tick, Unix seconds (two's complement) */
#define AERO_EV_RESET 0x04     /* the reset button */
#define AERO_EV_NMI 0x05       /* an NMI from outside (front panel) */
#define AERO_EV_INTR 0x06      /* a = a vector raised on INTR directly (aero_raise_interrupt) */
/* Device-produced (0x40 and above): logged by the core. */
#define AERO_EV_INTA 0x40      /* a = vector: the CPU acknowledged an external interrupt */
#define AERO_EV_IRQ 0x41       /* a = IRQ line 0-15, b = its new level */
#define AERO_EV_TIMER 0x42     /* a = device (AERO_DEV_* in platform.h) whose deadline fired */
#define AERO_EV_OUTPUT 0x43    /* a = channel (AERO_CH_*), b = the byte */
#define AERO_EV_EXIT 0x44      /* b = the exit status ((value << 1) | 1) */
#define AERO_EV_GUEST_RESET 0x45 /* a = cause (AERO_RESET_*) */
#define AERO_EV_SHUTDOWN 0x46  /* a triple fault stopped the CPU */

/* Output channels. */
#define AERO_CH_DEBUGCON 0 /* port E9h */
#define AERO_CH_COM1 1
#define AERO_CH_COM2 2
#define AERO_CH_POST 3     /* POST codes */

/* Reset causes. */
#define AERO_RESET_BUTTON 1  /* AERO_EV_RESET */
#define AERO_RESET_KBC 2     /* 8042 command FEh (pulse the reset line) */
#define AERO_RESET_PORT92 3  /* port 92h bit 0 */
#define AERO_RESET_TRIPLE 4  /* triple fault with reset_on_triple_fault */

#define AERO_EVENT_CAP 65536   /* events held before run() stops with AERO_STOP_EVENTS */
#define AERO_DEV_STATE_BYTES 4096 /* room for the serialized device state */

/* Build stamp: a hash of the C sources and the instruction table this core was built from. */
const char *aero_core_stamp(void);

aero_machine *aero_machine_new(const aero_config *cfg);
void aero_machine_free(aero_machine *m);
/* Put the CPU in its power-on state (CS:IP = F000:FFF0), RAM kept. */
void aero_reset(aero_machine *m);

uint8_t *aero_ram(aero_machine *m);
uint32_t aero_ram_size(aero_machine *m);
/* Map a ROM image at the top of the 4 GB space, its last 128 KB aliased below 1 MB.
 * Returns 0, or -1 if the size is not a multiple of 4096 or exceeds 16 MB. */
int aero_load_rom(aero_machine *m, const uint8_t *data, uint32_t size);
/* Physical memory access from the host: keeps decoded code and dirty tracking coherent. */
void aero_write_phys(aero_machine *m, uint32_t addr, const uint8_t *data, uint32_t len);
void aero_read_phys(aero_machine *m, uint32_t addr, uint8_t *out, uint32_t len);
/* Tell the core that the host wrote RAM directly (numpy view) in [addr, addr+len). */
void aero_ram_modified(aero_machine *m, uint32_t addr, uint32_t len);

/* Execute until the guest clock reaches until_tick or another stop reason. */
int aero_run(aero_machine *m, uint64_t until_tick);
uint64_t aero_ticks(aero_machine *m);

void aero_get_regs(aero_machine *m, aero_regs *out);
void aero_set_regs(aero_machine *m, const aero_regs *in);
/* The x87 registers. aero_set_fpu takes empty/non-empty from ftw (tags 11 / other). */
void aero_get_fpu(aero_machine *m, aero_fpu_regs *out);
void aero_set_fpu(aero_machine *m, const aero_fpu_regs *in);

/* Debug console (port 0xE9) bytes produced since the last aero_output_clear. */
const uint8_t *aero_output(aero_machine *m, uint32_t *len);
void aero_output_clear(aero_machine *m);
/* Exit status written to the debug-exit port ((value << 1) | 1), or -1. */
int64_t aero_exit_status(aero_machine *m);

/* External interrupts. A raised vector waits, oldest first, until the CPU can take it:
 * between instructions, with EFLAGS.IF = 1 and no interrupt shadow (after STI, MOV SS,
 * POP SS); it wakes the CPU from HLT. Its delivery takes the tick of the instruction it
 * interrupts. Raised between runs, it is taken at the start of the next run. Returns 0, or
 * -1 when AERO_INTR_QUEUE vectors are already waiting. */
#define AERO_INTR_QUEUE 16
int aero_raise_interrupt(aero_machine *m, uint32_t vector);
/* Raised vectors not yet taken. */
uint32_t aero_pending_interrupts(aero_machine *m);
/* Latch an NMI (vector 2): taken at the next instruction boundary whatever IF says (not in
 * an interrupt shadow, and not while an NMI handler runs, until its IRET). */
void aero_raise_nmi(aero_machine *m);

/* With stop_on_exception set, run() stops with AERO_STOP_EXCEPTION before delivering
 * an exception, leaving the state of the faulting instruction's start. */
void aero_set_stop_on_exception(aero_machine *m, int enable);
/* The last exception raised: vector (-1 if none since the last clear) and error code. */
int aero_last_exception(aero_machine *m, uint32_t *error_code);
void aero_clear_exception(aero_machine *m);

/* Apply an input event now (at aero_ticks) and log it. Returns 0, or -1 when the kind or its
 * arguments are invalid (nothing is logged then). */
int aero_inject(aero_machine *m, uint32_t kind, uint32_t a, uint64_t b);
/* The events logged since the last clear, oldest first. */
const aero_event *aero_event_log(aero_machine *m, uint32_t *count);
void aero_event_log_clear(aero_machine *m);
/* Events dropped because the log overflowed its slack (nonzero: the log is incomplete). */
uint32_t aero_event_log_lost(aero_machine *m);
/* The earliest device deadline (tick), or UINT64_MAX when no timer is armed. */
uint64_t aero_next_deadline(aero_machine *m);
/* Port I/O from the host, as the CPU would do it (no permission check): tests and tools. */
uint32_t aero_port_read(aero_machine *m, uint16_t port, int size);
void aero_port_write(aero_machine *m, uint16_t port, int size, uint32_t val);
/* The port log: an opt-in record of port I/O for finding out what a guest touches. Per port,
 * how often it was read and written, the tick of its first access and the last value moved.
 * Observation only: not machine state (never saved, restored or hashed), off by default.
 * Host accesses through aero_port_read/aero_port_write count too. */
typedef struct aero_port_stat {
    uint32_t reads;       /* IN/INS accesses (a wider access counts once, at its first port) */
    uint32_t writes;      /* OUT/OUTS accesses */
    uint64_t first_tick;  /* the clock at the first access (aero_now: the accessing
                           * instruction included) */
    uint32_t last_value;  /* value of the last access (its width in last_size) */
    uint32_t last_size;   /* 1, 2 or 4; 0: never accessed */
} aero_port_stat;
/* Turn the log on (cleared) or off (freed). Returns 0, or -1 when it cannot be allocated. */
int aero_port_log_enable(aero_machine *m, int enable);
/* The 65536 entries, indexed by port, or NULL when the log is off. */
const aero_port_stat *aero_port_log(aero_machine *m);
/* Give the firmware a file through fw_cfg (copied; configuration, not state: add them before
 * the guest runs, the same ones on every machine that replays it). Returns 0, or -1 without
 * the PC devices, for an empty or over-long (55) name, or when 16 files are there. */
int aero_fwcfg_add_file(aero_machine *m, const char *name, const uint8_t *data, uint32_t size);
/* Attach a raw disk image as the primary IDE master (copied; read-only unless
 * aero_disk_set_writable; configuration, not state). Also writes the CMOS boot order (3Dh =
 * 02h, 38h = 00h: the hard disk first, as QEMU's -boot c; platform revision 2 on), so attach
 * before running. Returns 0, or -1 without the PC devices, for a size that is 0 or not a
 * multiple of 512, or when it cannot be allocated. */
int aero_disk_attach(aero_machine *m, const uint8_t *data, uint64_t size);
/* Make the attached disk writable: WRITE SECTORS then writes to a copy-on-write overlay
 * (machine state, in snapshots and fingerprints; the attached image is never changed).
 * Configuration: set it before the guest runs. Returns 0, or -1 without a disk. */
int aero_disk_set_writable(aero_machine *m, int writable);
/* The overlay: how many 4096-byte blocks it holds; fills blocks[] (ascending) and hashes[]
 * (XXH64 of each block seeded with 0x4449534B00000000 | block) with up to cap of them. */
uint32_t aero_disk_overlay_list(aero_machine *m, uint32_t *blocks, uint64_t *hashes, uint32_t cap);
/* Copy len bytes at offset off of the disk as the guest sees it (the overlay over the base).
 * Returns 0, or -1 without a disk or for a range outside it. */
int aero_disk_read(aero_machine *m, uint64_t off, uint8_t *out, uint64_t len);
/* Canonical serialization of every device's state (AERO_DEV_STATE_BYTES, zero-padded). */
void aero_devices_save(aero_machine *m, uint8_t *out);
int aero_devices_load(aero_machine *m, const uint8_t *in);
/* Per-page RAM hashes (ram_size / 4096 of them) as of the last aero_fingerprint: the
 * content addresses keyframes store pages under. */
void aero_page_hashes(aero_machine *m, uint64_t *out);
/* The RAM pages written since the last aero_fingerprint, one byte per page (ram_size / 4096
 * of them): 1 written (by the guest, a device or the host, whatever the value; a restore
 * marks every page), 0 not. A superset of the pages whose contents changed. */
void aero_written_pages(aero_machine *m, uint8_t *out);

/* ---- host watches (debuggers and history queries; not guest state) ----
 * Up to AERO_WATCH_MAX ranges, each of reads, writes or instruction starts, on linear or
 * (for data) physical addresses. A data access that overlaps a watch stops run() with
 * AERO_STOP_WATCH once the instruction (or REP iteration, or event delivery) has completed;
 * an instruction watch stops it before the instruction executes (except at the tick given
 * to aero_watch_resume, so that a run resumed at a watched instruction executes it).
 * Instruction fetches are not data reads. Watched pages are never mapped in the TLB for
 * the watched kind of access, so an unarmed machine pays nothing. */
#define AERO_WATCH_MAX 16
#define AERO_WATCH_WRITE 1u /* data writes */
#define AERO_WATCH_READ 2u  /* data reads */
#define AERO_WATCH_EXEC 4u  /* instruction start at CS.base + EIP (addr only; len ignored) */
#define AERO_WATCH_PHYS 8u  /* data: match the physical address instead of the linear one */
#define AERO_WATCH_IO 16u   /* I/O ports [addr, addr+len) instead of memory (with READ/WRITE:
                               IN and OUT, string forms included) */
#define AERO_WATCH_LOG 32u  /* data: log every access in range (aero_watch_log) instead of
                               stopping run() */
#define AERO_WATCH_LOG_MAX 256 /* accesses the log holds between two aero_watch_log calls */
/* Arm slot (0 to AERO_WATCH_MAX-1) for [addr, addr+len); flags 0 disarms it. Returns 0, or -1
 * for a bad slot, an empty range or a range past 4 GB. */
int aero_watch_set(aero_machine *m, uint32_t slot, uint32_t addr, uint32_t len, uint32_t flags);
/* The first watch hit since the last call: returns 1 and fills out[0..5] with the linear
 * address (the port for I/O), the physical address, the access size, its kind (AERO_WATCH_*,
 * with AERO_WATCH_IO for ports), for I/O the value transferred, and EIP as the access was
 * made (the accessing instruction's, or the interrupted one's during a delivery); or 0. */
int aero_watch_take(aero_machine *m, uint32_t *out);
/* Instruction watches do not trigger at the current tick (resuming from a watch stop). */
void aero_watch_resume(aero_machine *m);
/* The data accesses AERO_WATCH_LOG watches logged since the last call, in the order they were
 * made (instruction fetches excluded; an access that crosses a page is logged byte by byte):
 * returns how many (at most AERO_WATCH_LOG_MAX) and fills out[5*i .. 5*i+4] with the linear
 * address, the physical address, the size, the kind (AERO_WATCH_READ or _WRITE) and the
 * value read or written (0xFF.. for a read of unmapped memory); *lost gets the number of
 * accesses that did not fit, and the log is emptied. */
uint32_t aero_watch_log(aero_machine *m, uint32_t *out, uint32_t *lost);

/* Canonical, layout-independent serialization of the CPU state (AERO_CPU_STATE_BYTES). */
void aero_cpu_serialize(aero_machine *m, uint8_t *out);
int aero_cpu_deserialize(aero_machine *m, const uint8_t *in);

/* Snapshots: serialized CPU state + tick counter + RAM, then for a writable disk its overlay
 * (count:u32 block:u32[count] data:4096[count], blocks ascending); the size follows the
 * overlay, so take aero_snapshot_size just before saving. */
uint64_t aero_snapshot_size(aero_machine *m);
int aero_snapshot_save(aero_machine *m, uint8_t *out, uint64_t cap);
int aero_snapshot_load(aero_machine *m, const uint8_t *in, uint64_t len);

/* 64-bit state fingerprint over CPU state, tick counter and RAM (page hashes cached,
 * only pages written since the last fingerprint are rehashed). */
uint64_t aero_fingerprint(aero_machine *m);
/* XXH64 of a byte range: the hash the fingerprint is built from. */
uint64_t aero_hash64(const uint8_t *data, uint64_t len, uint64_t seed);
