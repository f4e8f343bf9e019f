/* aero core: the x87 floating-point unit of the P6 (state and entry points; fpu.c). */
#ifndef AERO_FPU_H
#define AERO_FPU_H

#include <stdint.h>

/* Status word bits. */
#define FSW_IE 0x0001u
#define FSW_DE 0x0002u
#define FSW_ZE 0x0004u
#define FSW_OE 0x0008u
#define FSW_UE 0x0010u
#define FSW_PE 0x0020u
#define FSW_SF 0x0040u
#define FSW_ES 0x0080u
#define FSW_C0 0x0100u
#define FSW_C1 0x0200u
#define FSW_C2 0x0400u
#define FSW_TOP 0x3800u
#define FSW_C3 0x4000u
#define FSW_B 0x8000u
#define FSW_CC (FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3)

/* Power-on values (SDM Vol. 3, "Processor State Following Power-up, Reset, or INIT"):
 * FCW 0040h, FSW 0, FTW 5555h (every register valid and +0.0). The serialized state stores
 * the FPU relative to them, so a machine that never touched the x87 serializes as zeros. */
#define FPU_FCW_RESET 0x0040u
#define FPU_FCW_INIT 0x037Fu /* FNINIT */

/* The x87 state. Registers are physical R0-R7; ST(i) is R((TOP + i) mod 8). The full tag
 * word is not stored: valid/zero/special follow from the register contents, as the P6
 * computes them for FSTENV/FSAVE; only "empty" is state. */
typedef struct aero_fpu {
    uint64_t sig[8]; /* R0-R7 significands (bit 63 the explicit integer bit) */
    uint16_t se[8];  /* R0-R7 sign (bit 15) and biased exponent (bits 0-14) */
    uint16_t fcw;    /* control word: masks (0-5), PC (8-9), RC (10-11), X (12) */
    uint16_t fsw;    /* status word, TOP included (bits 11-13) */
    uint8_t empty;   /* bit i: R(i) is empty (tag 11) */
    uint8_t ferr;    /* 1: FERR# latched onto IRQ 13 (CR0.NE = 0), until port F0h is written */
    uint8_t ignne;   /* 1: IGNNE# asserted by the port F0h write: the pending error is ignored
                        by waiting instructions until the status word's ES clears */
    uint16_t fop;    /* last non-control instruction's opcode: (first byte & 7) << 8 | ModRM */
    uint16_t fcs;    /* its CS selector */
    uint32_t fip;    /* its offset (first prefix byte) */
    uint16_t fds;    /* segment selector of its memory operand */
    uint32_t fdp;    /* offset of its memory operand (kept when it had none) */
} aero_fpu;

struct aero_machine;
/* Power-on state (aero_reset). */
void aero_fpu_reset(aero_fpu *f);
/* Port F0h written (any value): clear the IRQ 13 latch, assert IGNNE#. */
void aero_fpu_port_f0(struct aero_machine *m);

#endif
