"""The IA-32 integer instruction set as data.

This table is the single description of the instruction set aero executes. It drives the C
decoder (``aero/_core/optable.inc`` is generated from it at build time). The differential
campaigns deliberately do not use it: they generate and judge instructions with their own
SDM model (:mod:`aero.fuzz.sdm`), so that a wrong row here is found rather than assumed.

Each row is ``opcode  mnemonic  operands  handler  [flags]``:

``opcode``
    ``"00"`` for a one-byte opcode, ``"0F A2"`` for a two-byte one, and a ``/r`` suffix
    (``"80/3"``) for a group member selected by the ModRM reg field.
``operands``
    Intel opcode-map notation (``Eb,Gb``, ``Ev,Iz``, ``Jb`` ...). ModRM presence and the
    immediate layout are derived from it, never written twice.
``handler``
    The C function ``aero_op_<handler>`` that executes the instruction.
``flags``
    ``lock``: LOCK is legal with a memory destination. ``branch``: may change EIP other
    than by falling through (ends a decoded block). ``str``: string instruction, REP
    applies. ``mem``: the ModRM operand must be memory (#UD otherwise). ``pm``: #UD in
    real and virtual-8086 mode. ``sys``: a system instruction that ends a decoded block.
    ``undef=XX,YY``: architecturally undefined flags (masked in differential tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["FLAG_BITS", "IMM_AP", "IMM_B", "IMM_NONE", "IMM_O", "IMM_W", "IMM_WB", "IMM_Z",
           "INSTRUCTIONS", "Insn", "OPF", "PREFIXES", "generate_c", "group_opcodes", "lookup"]

# Each line: opcode, mnemonic, operands ("-" for none), handler, flags...
_TABLE = r"""
00    add     Eb,Gb   add_EbGb    lock
01    add     Ev,Gv   add_EvGv    lock
02    add     Gb,Eb   add_GbEb
03    add     Gv,Ev   add_GvEv
04    add     AL,Ib   add_ALIb
05    add     eAX,Iz  add_eAXIz
06    push    ES      push_sreg
07    pop     ES      pop_sreg    sys
08    or      Eb,Gb   or_EbGb     lock undef=AF
09    or      Ev,Gv   or_EvGv     lock undef=AF
0A    or      Gb,Eb   or_GbEb     undef=AF
0B    or      Gv,Ev   or_GvEv     undef=AF
0C    or      AL,Ib   or_ALIb     undef=AF
0D    or      eAX,Iz  or_eAXIz    undef=AF
0E    push    CS      push_sreg
10    adc     Eb,Gb   adc_EbGb    lock
11    adc     Ev,Gv   adc_EvGv    lock
12    adc     Gb,Eb   adc_GbEb
13    adc     Gv,Ev   adc_GvEv
14    adc     AL,Ib   adc_ALIb
15    adc     eAX,Iz  adc_eAXIz
16    push    SS      push_sreg
17    pop     SS      pop_sreg    sys
18    sbb     Eb,Gb   sbb_EbGb    lock
19    sbb     Ev,Gv   sbb_EvGv    lock
1A    sbb     Gb,Eb   sbb_GbEb
1B    sbb     Gv,Ev   sbb_GvEv
1C    sbb     AL,Ib   sbb_ALIb
1D    sbb     eAX,Iz  sbb_eAXIz
1E    push    DS      push_sreg
1F    pop     DS      pop_sreg    sys
20    and     Eb,Gb   and_EbGb    lock undef=AF
21    and     Ev,Gv   and_EvGv    lock undef=AF
22    and     Gb,Eb   and_GbEb    undef=AF
23    and     Gv,Ev   and_GvEv    undef=AF
24    and     AL,Ib   and_ALIb    undef=AF
25    and     eAX,Iz  and_eAXIz   undef=AF
27    daa     -       daa         undef=OF
28    sub     Eb,Gb   sub_EbGb    lock
29    sub     Ev,Gv   sub_EvGv    lock
2A    sub     Gb,Eb   sub_GbEb
2B    sub     Gv,Ev   sub_GvEv
2C    sub     AL,Ib   sub_ALIb
2D    sub     eAX,Iz  sub_eAXIz
2F    das     -       das         undef=OF
30    xor     Eb,Gb   xor_EbGb    lock undef=AF
31    xor     Ev,Gv   xor_EvGv    lock undef=AF
32    xor     Gb,Eb   xor_GbEb    undef=AF
33    xor     Gv,Ev   xor_GvEv    undef=AF
34    xor     AL,Ib   xor_ALIb    undef=AF
35    xor     eAX,Iz  xor_eAXIz   undef=AF
37    aaa     -       aaa         undef=OF,SF,ZF,PF
38    cmp     Eb,Gb   cmp_EbGb
39    cmp     Ev,Gv   cmp_EvGv
3A    cmp     Gb,Eb   cmp_GbEb
3B    cmp     Gv,Ev   cmp_GvEv
3C    cmp     AL,Ib   cmp_ALIb
3D    cmp     eAX,Iz  cmp_eAXIz
3F    aas     -       aas         undef=OF,SF,ZF,PF
40+r  inc     Zv      inc_Zv
48+r  dec     Zv      dec_Zv
50+r  push    Zv      push_Zv
58+r  pop     Zv      pop_Zv
60    pusha   -       pusha
61    popa    -       popa
62    bound   Gv,Ma   bound       mem branch
63    arpl    Ew,Gw   arpl        pm
68    push    Iz      push_Iz
69    imul    Gv,Ev,Iz imul_GvEvIz undef=SF,ZF,AF,PF
6A    push    Ib      push_Ib
6B    imul    Gv,Ev,Ib imul_GvEvIb undef=SF,ZF,AF,PF
6C    insb    -       ins         str sys
6D    ins     -       ins         str sys
6E    outsb   -       outs        str sys
6F    outs    -       outs        str sys
70+c  jcc     Jb      jcc         branch
80/0  add     Eb,Ib   add_EbIb    lock
80/1  or      Eb,Ib   or_EbIb     lock undef=AF
80/2  adc     Eb,Ib   adc_EbIb    lock
80/3  sbb     Eb,Ib   sbb_EbIb    lock
80/4  and     Eb,Ib   and_EbIb    lock undef=AF
80/5  sub     Eb,Ib   sub_EbIb    lock
80/6  xor     Eb,Ib   xor_EbIb    lock undef=AF
80/7  cmp     Eb,Ib   cmp_EbIb
81/0  add     Ev,Iz   add_EvIz    lock
81/1  or      Ev,Iz   or_EvIz     lock undef=AF
81/2  adc     Ev,Iz   adc_EvIz    lock
81/3  sbb     Ev,Iz   sbb_EvIz    lock
81/4  and     Ev,Iz   and_EvIz    lock undef=AF
81/5  sub     Ev,Iz   sub_EvIz    lock
81/6  xor     Ev,Iz   xor_EvIz    lock undef=AF
81/7  cmp     Ev,Iz   cmp_EvIz
82/0  add     Eb,Ib   add_EbIb    lock
82/1  or      Eb,Ib   or_EbIb     lock undef=AF
82/2  adc     Eb,Ib   adc_EbIb    lock
82/3  sbb     Eb,Ib   sbb_EbIb    lock
82/4  and     Eb,Ib   and_EbIb    lock undef=AF
82/5  sub     Eb,Ib   sub_EbIb    lock
82/6  xor     Eb,Ib   xor_EbIb    lock undef=AF
82/7  cmp     Eb,Ib   cmp_EbIb
83/0  add     Ev,Ib   add_EvIb    lock
83/1  or      Ev,Ib   or_EvIb     lock undef=AF
83/2  adc     Ev,Ib   adc_EvIb    lock
83/3  sbb     Ev,Ib   sbb_EvIb    lock
83/4  and     Ev,Ib   and_EvIb    lock undef=AF
83/5  sub     Ev,Ib   sub_EvIb    lock
83/6  xor     Ev,Ib   xor_EvIb    lock undef=AF
83/7  cmp     Ev,Ib   cmp_EvIb
84    test    Eb,Gb   test_EbGb   undef=AF
85    test    Ev,Gv   test_EvGv   undef=AF
86    xchg    Eb,Gb   xchg_EbGb   lock
87    xchg    Ev,Gv   xchg_EvGv   lock
88    mov     Eb,Gb   mov_EbGb
89    mov     Ev,Gv   mov_EvGv
8A    mov     Gb,Eb   mov_GbEb
8B    mov     Gv,Ev   mov_GvEv
8C    mov     Ew,Sw   mov_EwSw
8D    lea     Gv,M    lea         mem
8E    mov     Sw,Ew   mov_SwEw    sys
8F/0  pop     Ev      pop_Ev
90    nop     -       nop
91+r  xchg    Zv,eAX  xchg_ZveAX
98    cbw     -       cbw
99    cwd     -       cwd
9A    callf   Ap      callf_Ap    branch
9B    wait    -       wait
9C    pushf   -       pushf
9D    popf    -       popf        sys
9E    sahf    -       sahf
9F    lahf    -       lahf
A0    mov     AL,Ob   mov_ALOb
A1    mov     eAX,Ov  mov_eAXOv
A2    mov     Ob,AL   mov_ObAL
A3    mov     Ov,eAX  mov_OveAX
A4    movsb   -       movs        str
A5    movs    -       movs        str
A6    cmpsb   -       cmps        str
A7    cmps    -       cmps        str
A8    test    AL,Ib   test_ALIb   undef=AF
A9    test    eAX,Iz  test_eAXIz  undef=AF
AA    stosb   -       stos        str
AB    stos    -       stos        str
AC    lodsb   -       lods        str
AD    lods    -       lods        str
AE    scasb   -       scas        str
AF    scas    -       scas        str
B0+r  mov     Zb,Ib   mov_ZbIb
B8+r  mov     Zv,Iv   mov_ZvIv
C0/0  rol     Eb,Ib   rot_EbIb    undef=OF
C0/1  ror     Eb,Ib   rot_EbIb    undef=OF
C0/2  rcl     Eb,Ib   rot_EbIb    undef=OF
C0/3  rcr     Eb,Ib   rot_EbIb    undef=OF
C0/4  shl     Eb,Ib   rot_EbIb    undef=OF,AF
C0/5  shr     Eb,Ib   rot_EbIb    undef=OF,AF
C0/6  sal     Eb,Ib   rot_EbIb    undef=OF,AF
C0/7  sar     Eb,Ib   rot_EbIb    undef=OF,AF
C1/0  rol     Ev,Ib   rot_EvIb    undef=OF
C1/1  ror     Ev,Ib   rot_EvIb    undef=OF
C1/2  rcl     Ev,Ib   rot_EvIb    undef=OF
C1/3  rcr     Ev,Ib   rot_EvIb    undef=OF
C1/4  shl     Ev,Ib   rot_EvIb    undef=OF,AF
C1/5  shr     Ev,Ib   rot_EvIb    undef=OF,AF
C1/6  sal     Ev,Ib   rot_EvIb    undef=OF,AF
C1/7  sar     Ev,Ib   rot_EvIb    undef=OF,AF
C2    ret     Iw      ret_Iw      branch
C3    ret     -       ret         branch
C4    les     Gv,Mp   lxs         mem sys
C5    lds     Gv,Mp   lxs         mem sys
C6/0  mov     Eb,Ib   mov_EbIb
C7/0  mov     Ev,Iz   mov_EvIz
C8    enter   Iw,Ib   enter
C9    leave   -       leave
CA    retf    Iw      retf        branch
CB    retf    -       retf        branch
CC    int3    -       int3        branch
CD    int     Ib      int_Ib      branch
CE    into    -       into        branch
CF    iret    -       iret        branch
D0/0  rol     Eb,1    rot_Eb1
D0/1  ror     Eb,1    rot_Eb1
D0/2  rcl     Eb,1    rot_Eb1
D0/3  rcr     Eb,1    rot_Eb1
D0/4  shl     Eb,1    rot_Eb1     undef=AF
D0/5  shr     Eb,1    rot_Eb1     undef=AF
D0/6  sal     Eb,1    rot_Eb1     undef=AF
D0/7  sar     Eb,1    rot_Eb1     undef=AF
D1/0  rol     Ev,1    rot_Ev1
D1/1  ror     Ev,1    rot_Ev1
D1/2  rcl     Ev,1    rot_Ev1
D1/3  rcr     Ev,1    rot_Ev1
D1/4  shl     Ev,1    rot_Ev1     undef=AF
D1/5  shr     Ev,1    rot_Ev1     undef=AF
D1/6  sal     Ev,1    rot_Ev1     undef=AF
D1/7  sar     Ev,1    rot_Ev1     undef=AF
D2/0  rol     Eb,CL   rot_EbCL    undef=OF
D2/1  ror     Eb,CL   rot_EbCL    undef=OF
D2/2  rcl     Eb,CL   rot_EbCL    undef=OF
D2/3  rcr     Eb,CL   rot_EbCL    undef=OF
D2/4  shl     Eb,CL   rot_EbCL    undef=OF,AF
D2/5  shr     Eb,CL   rot_EbCL    undef=OF,AF
D2/6  sal     Eb,CL   rot_EbCL    undef=OF,AF
D2/7  sar     Eb,CL   rot_EbCL    undef=OF,AF
D3/0  rol     Ev,CL   rot_EvCL    undef=OF
D3/1  ror     Ev,CL   rot_EvCL    undef=OF
D3/2  rcl     Ev,CL   rot_EvCL    undef=OF
D3/3  rcr     Ev,CL   rot_EvCL    undef=OF
D3/4  shl     Ev,CL   rot_EvCL    undef=OF,AF
D3/5  shr     Ev,CL   rot_EvCL    undef=OF,AF
D3/6  sal     Ev,CL   rot_EvCL    undef=OF,AF
D3/7  sar     Ev,CL   rot_EvCL    undef=OF,AF
D4    aam     Ib      aam         undef=OF,AF,CF
D5    aad     Ib      aad         undef=OF,AF,CF
D6    salc    -       salc
D7    xlat    -       xlat
D8+r  esc     Ex      fpu_esc
E0    loopnz  Jb      loopcc      branch
E1    loopz   Jb      loopcc      branch
E2    loop    Jb      loopcc      branch
E3    jcxz    Jb      jcxz        branch
E4    in      AL,Ib   in_Ib       sys
E5    in      eAX,Ib  in_Ib       sys
E6    out     Ib,AL   out_Ib      sys
E7    out     Ib,eAX  out_Ib      sys
E8    call    Jz      call_Jz     branch
E9    jmp     Jz      jmp_J       branch
EA    jmpf    Ap      jmpf_Ap     branch
EB    jmp     Jb      jmp_J       branch
EC    in      AL,DX   in_DX       sys
ED    in      eAX,DX  in_DX       sys
EE    out     DX,AL   out_DX      sys
EF    out     DX,eAX  out_DX      sys
F1    int1    -       int1        branch
F4    hlt     -       hlt         sys
F5    cmc     -       cmc
F6/0  test    Eb,Ib   test_EbIb   undef=AF
F6/1  test    Eb,Ib   test_EbIb   undef=AF
F6/2  not     Eb      not_Eb      lock
F6/3  neg     Eb      neg_Eb      lock
F6/4  mul     Eb      mul_Eb      undef=SF,ZF,AF,PF
F6/5  imul    Eb      imul_Eb     undef=SF,ZF,AF,PF
F6/6  div     Eb      div_Eb      branch undef=OF,SF,ZF,AF,PF,CF
F6/7  idiv    Eb      idiv_Eb     branch undef=OF,SF,ZF,AF,PF,CF
F7/0  test    Ev,Iz   test_EvIz   undef=AF
F7/1  test    Ev,Iz   test_EvIz   undef=AF
F7/2  not     Ev      not_Ev      lock
F7/3  neg     Ev      neg_Ev      lock
F7/4  mul     Ev      mul_Ev      undef=SF,ZF,AF,PF
F7/5  imul    Ev      imul_Ev     undef=SF,ZF,AF,PF
F7/6  div     Ev      div_Ev      branch undef=OF,SF,ZF,AF,PF,CF
F7/7  idiv    Ev      idiv_Ev     branch undef=OF,SF,ZF,AF,PF,CF
F8    clc     -       clc
F9    stc     -       stc
FA    cli     -       cli
FB    sti     -       sti         sys
FC    cld     -       cld
FD    std     -       std
FE/0  inc     Eb      inc_Eb      lock
FE/1  dec     Eb      dec_Eb      lock
FF/0  inc     Ev      inc_Ev      lock
FF/1  dec     Ev      dec_Ev      lock
FF/2  call    Ev      call_Ev     branch
FF/3  callf   Mp      callf_Mp    mem branch
FF/4  jmp     Ev      jmp_Ev      branch
FF/5  jmpf    Mp      jmpf_Mp     mem branch
FF/6  push    Ev      push_Ev
0F 00/0 sldt  Ew      sldt        pm
0F 00/1 str   Ew      str         pm
0F 00/2 lldt  Ew      lldt        pm sys
0F 00/3 ltr   Ew      ltr         pm sys
0F 00/4 verr  Ew      verrw       pm
0F 00/5 verw  Ew      verrw       pm
0F 01/0 sgdt  Ms      sgdt        mem
0F 01/1 sidt  Ms      sidt        mem
0F 01/2 lgdt  Ms      lgdt        mem sys
0F 01/3 lidt  Ms      lidt        mem sys
0F 01/4 smsw  Ew      smsw
0F 01/6 lmsw  Ew      lmsw        sys
0F 01/7 invlpg M      invlpg      mem sys
0F 02   lar   Gv,Ew   lar         pm
0F 03   lsl   Gv,Ew   lsl         pm
0F 06   clts  -       clts        sys
0F 08   invd  -       invd        sys
0F 09   wbinvd -      invd        sys
0F 0B   ud2   -       ud2
0F 18+r nop   Ev      nop_Ev
0F 20   mov   Rd,Cd   mov_RdCd
0F 21   mov   Rd,Dd   mov_RdDd
0F 22   mov   Cd,Rd   mov_CdRd    sys
0F 23   mov   Dd,Rd   mov_DdRd    sys
0F 30   wrmsr -       wrmsr       sys
0F 31   rdtsc -       rdtsc       sys
0F 32   rdmsr -       rdmsr       sys
0F 34   sysenter -    sysenter    branch
0F 35   sysexit -     sysexit     branch
0F 40+c cmovcc Gv,Ev  cmovcc
0F 80+c jcc   Jz      jcc         branch
0F 90+c setcc Eb      setcc
0F A0   push  FS      push_sreg
0F A1   pop   FS      pop_sreg    sys
0F A2   cpuid -       cpuid
0F A3   bt    Ev,Gv   bt_EvGv     undef=OF,SF,AF,PF
0F A4   shld  Ev,Gv,Ib shxd       undef=OF,AF
0F A5   shld  Ev,Gv,CL shxd       undef=OF,AF
0F A8   push  GS      push_sreg
0F A9   pop   GS      pop_sreg    sys
0F AB   bts   Ev,Gv   bt_EvGv     lock undef=OF,SF,AF,PF
0F AC   shrd  Ev,Gv,Ib shxd       undef=OF,AF
0F AD   shrd  Ev,Gv,CL shxd       undef=OF,AF
0F AF   imul  Gv,Ev   imul_GvEv   undef=SF,ZF,AF,PF
0F B0   cmpxchg Eb,Gb cmpxchg_EbGb lock
0F B1   cmpxchg Ev,Gv cmpxchg_EvGv lock
0F B2   lss   Gv,Mp   lxs         mem sys
0F B3   btr   Ev,Gv   bt_EvGv     lock undef=OF,SF,AF,PF
0F B4   lfs   Gv,Mp   lxs         mem sys
0F B5   lgs   Gv,Mp   lxs         mem sys
0F B6   movzx Gv,Eb   movzx_GvEb
0F B7   movzx Gv,Ew   movzx_GvEw
0F BA/4 bt    Ev,Ib   bt_EvIb     undef=OF,SF,AF,PF
0F BA/5 bts   Ev,Ib   bt_EvIb     lock undef=OF,SF,AF,PF
0F BA/6 btr   Ev,Ib   bt_EvIb     lock undef=OF,SF,AF,PF
0F BA/7 btc   Ev,Ib   bt_EvIb     lock undef=OF,SF,AF,PF
0F BB   btc   Ev,Gv   bt_EvGv     lock undef=OF,SF,AF,PF
0F BC   bsf   Gv,Ev   bsf         undef=CF,OF,SF,AF,PF
0F BD   bsr   Gv,Ev   bsr         undef=CF,OF,SF,AF,PF
0F BE   movsx Gv,Eb   movsx_GvEb
0F BF   movsx Gv,Ew   movsx_GvEw
0F C0   xadd  Eb,Gb   xadd_EbGb   lock
0F C1   xadd  Ev,Gv   xadd_EvGv   lock
0F C7/1 cmpxchg8b Mq  cmpxchg8b   mem lock
0F C8+r bswap Zv      bswap
"""

# Prefix bytes (not instructions): segment overrides, operand/address size, LOCK, REP.
PREFIXES: dict[int, str] = {
    0x26: "es", 0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x64: "fs", 0x65: "gs",
    0x66: "osize", 0x67: "asize", 0xF0: "lock", 0xF2: "repne", 0xF3: "rep",
}

FLAG_BITS: dict[str, int] = {"CF": 0x001, "PF": 0x004, "AF": 0x010, "ZF": 0x040,
                             "SF": 0x080, "OF": 0x800}

# Operand tokens that need a ModRM byte: Eb Gv Sw Rd Cd Dd Ex, and M with or without a size.
_MODRM_OPERAND = re.compile(r"^([EGSRCD][a-z]|M[a-z]?)$")

# Immediate layout codes shared with the C decoder (aero/_core/cpu.h, AERO_IMM_*).
IMM_NONE, IMM_B, IMM_W, IMM_Z, IMM_AP, IMM_O, IMM_WB = range(7)

# Decoder flag bits shared with the C decoder (aero/_core/cpu.h, AERO_OPF_*).
OPF = {"modrm": 0x01, "lock": 0x02, "branch": 0x04, "str": 0x08, "mem": 0x10,
       "pm": 0x20, "sys": 0x40, "group": 0x80}


@dataclass(frozen=True)
class Insn:
    """One encoding of one instruction.

    Invariant: ``opcode`` is 0x00-0xFF for one-byte opcodes and 0x100-0x1FF for ``0F xx``;
    ``reg`` is the ModRM reg field for group members and ``None`` otherwise.
    """

    opcode: int
    reg: int | None
    mnemonic: str
    operands: tuple[str, ...]
    handler: str
    flags: frozenset[str] = field(default_factory=frozenset)
    undefined_flags: int = 0

    @property
    def has_modrm(self) -> bool:
        return self.reg is not None or any(_MODRM_OPERAND.match(op) for op in self.operands)

    @property
    def imm(self) -> int:
        """Immediate layout (IMM_*) derived from the operand list."""
        ops = self.operands
        if "Ap" in ops:
            return IMM_AP
        if ops[:2] == ("Iw", "Ib"):
            return IMM_WB
        if any(op in ("Ob", "Ov") for op in ops):
            return IMM_O
        if any(op in ("Iz", "Iv", "Jz") for op in ops):
            return IMM_Z
        if any(op == "Iw" for op in ops):
            return IMM_W
        if any(op in ("Ib", "Jb") for op in ops):
            return IMM_B
        return IMM_NONE

    @property
    def two_byte(self) -> bool:
        return self.opcode >= 0x100

    def encoding_prefix(self) -> bytes:
        """The opcode bytes (without ModRM) that select this instruction."""
        if self.two_byte:
            return bytes([0x0F, self.opcode & 0xFF])
        return bytes([self.opcode])


def _parse() -> list[Insn]:
    rows: list[Insn] = []
    for line in _TABLE.strip().splitlines():
        parts = line.split()
        if parts[0] == "0F":
            key = "0F " + parts[1]
            parts = [key] + parts[2:]
        key, mnemonic, operands, handler, *flag_words = parts
        base = 0x100 if key.startswith("0F ") else 0
        code = key[3:] if base else key
        reg: int | None = None
        count = 1
        if "/" in code:
            code, r = code.split("/")
            reg = int(r)
        if code.endswith("+r"):
            code, count = code[:-2], 8
        elif code.endswith("+c"):
            code, count = code[:-2], 16
        flags = {w for w in flag_words if not w.startswith("undef=")}
        undef = 0
        for w in flag_words:
            if w.startswith("undef="):
                for name in w[6:].split(","):
                    undef |= FLAG_BITS[name]
        ops = tuple(operands.split(",")) if operands != "-" else ()
        for i in range(count):
            rows.append(Insn(base + int(code, 16) + i, reg, mnemonic, ops, handler,
                             frozenset(flags), undef))
    return rows


INSTRUCTIONS: list[Insn] = _parse()


def lookup(opcode: int, reg: int | None = None) -> Insn | None:
    """The table row for an opcode (and ModRM reg field for group opcodes)."""
    for insn in INSTRUCTIONS:
        if insn.opcode == opcode and (insn.reg is None or insn.reg == reg):
            return insn
    return None


def group_opcodes() -> set[int]:
    return {i.opcode for i in INSTRUCTIONS if i.reg is not None}


def generate_c() -> str:
    """C source for the decoder tables (included by aero/_core/decode.c)."""
    handlers = sorted({i.handler for i in INSTRUCTIONS})
    groups = sorted(group_opcodes())
    out = ["/* Generated from aero/isa.py by aero/_build.py. Do not edit. */"]
    out += [f"void aero_op_{h}(aero_machine *m, const aero_insn *in);" for h in handlers]

    def desc(i: Insn | None, group: bool = False) -> str:
        if i is None:
            return "{aero_op_ud, 0, 0, 0}" if not group else "{0, 0, 0, 0}"
        f = 0
        for name in i.flags:
            f |= OPF[name]
        if i.has_modrm:
            f |= OPF["modrm"]
        return f"{{aero_op_{i.handler}, {f:#04x}, {i.imm}, {i.opcode & 0xFF:#04x}}}"

    by_op: dict[int, Insn] = {i.opcode: i for i in INSTRUCTIONS if i.reg is None}
    out.append("static const aero_opdesc aero_optable[512] = {")
    for op in range(512):
        if op in groups:
            members = [i for i in INSTRUCTIONS if i.opcode == op]
            first = members[0]
            imms = {m.imm for m in members}
            # Group members with different immediates (F6/F7 TEST) are resolved after
            # ModRM; the row carries the group marker and index into aero_grptable.
            f = OPF["group"] | OPF["modrm"]
            imm = first.imm if len(imms) == 1 else IMM_NONE
            out.append(f"  /* {op:03x} group */ {{aero_op_ud, {f:#04x}, {imm}, "
                       f"{groups.index(op)}}},")
        else:
            out.append(f"  /* {op:03x} */ {desc(by_op.get(op))},")
    out.append("};")
    out.append(f"static const aero_opdesc aero_grptable[{max(len(groups), 1)}][8] = {{")
    for op in groups:
        row = []
        for r in range(8):
            row.append(desc(lookup(op, r)))
        out.append(f"  /* {op:03x} */ {{{', '.join(row)}}},")
    out.append("};")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(generate_c())
