"""The serialized device state (``Machine.devices_state_bytes()``) decoded into named fields.

The layout is the one each device's ``aero_X_save`` writes (platform.c puts them in this
order after a version word and a presence word); this module must change with them, and
``DEV_STATE_VERSION`` guards it. Used by invariant oracles and by ``aero diff`` to say which
device differs.

Invariant: :func:`decode` raises ValueError on a version it does not know, and never reads
past the buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = ["DEV_STATE_VERSION", "Fields", "SECTIONS", "decode", "differences"]

DEV_STATE_VERSION = 1

Fields = dict[str, int | list[int]]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int(self, size: int) -> int:
        if self.pos + size > len(self.data):
            raise ValueError("device state is truncated")
        v = int.from_bytes(self.data[self.pos:self.pos + size], "little")
        self.pos += size
        return v

    def bytes(self, n: int) -> list[int]:
        if self.pos + n > len(self.data):
            raise ValueError("device state is truncated")
        v = list(self.data[self.pos:self.pos + n])
        self.pos += n
        return v

    def named(self, names: str) -> Fields:
        return {n: self.int(1) for n in names.split()}


def _pic(r: _Reader) -> Fields:
    out: Fields = {}
    for chip in ("master", "slave"):
        f = r.named("irr isr imr lines elcr elcr_mask vector_base init_step icw1 icw3 icw4 "
                    "lowest read_isr poll special_mask rotate_aeoi output")
        out.update({f"{chip}_{k}": v for k, v in f.items()})
    return out


def _pit(r: _Reader) -> Fields:
    out: Fields = {"deadline": r.int(8), "next_edge": r.int(8)}
    for i in range(3):
        ch: Fields = {"load": r.int(8), "run_from": r.int(8), "base": r.int(8),
                      "pend_at": r.int(8), "null_until": r.int(8), "n": r.int(4),
                      "pend_n": r.int(4), "cr": r.int(2), "latch": r.int(2),
                      "pre_count": r.int(2)}
        ch.update(r.named("mode rw bcd running pre_out gate have_count low_start pend_low "
                          "wflip wlsb rflip latched status status_latched"))
        out.update({f"ch{i}_{k}": v for k, v in ch.items()})
    out["port61"] = r.int(1)
    return out


def _uart(r: _Reader) -> Fields:
    out: Fields = {"tx_deadline": r.int(8), "tx_end": r.int(8), "rx_timeout": r.int(8),
                   "rx_fifo": r.bytes(16), "tx_fifo": r.bytes(16)}
    out.update(r.named("rx_head rx_count tx_head tx_count rbr tsr tsr_busy tsr_loop ier lcr "
                       "mcr lsr_err msr_delta fcr dll dlm scr thr_pending timeout_pending "
                       "irq_level"))
    return out


def _rtc(r: _Reader) -> Fields:
    out: Fields = {"deadline": r.int(8), "cmos": r.bytes(128)}
    out.update(r.named("index nmi_mask flags irq dow_offset powered"))
    out["chain_c0"] = r.int(2)
    out["chain_tick"] = r.int(8)
    out["synced_tick"] = r.int(8)
    base = r.int(8)
    out["base_seconds"] = base - (1 << 64) if base >> 63 else base
    return out


def _kbc(r: _Reader) -> Fields:
    out: Fields = {"ram": r.bytes(32)}
    out.update(r.named("outport obuf obf obf_aux a2 timeout pending_cmd reply_src reply "
                       "xlat_break fifo_head fifo_len kbd_cmd scanning scancode_set leds "
                       "typematic last_sent"))
    out["fifo"] = r.bytes(16)
    return out


def _platform(r: _Reader) -> Fields:
    return {"port92": r.int(1), "a20_kbc": r.int(1), "post_code": r.int(1),
            "pci_addr": r.int(4), "pci_cfg": r.bytes(256), "reset_pending": r.int(4)}


def _piix(r: _Reader) -> Fields:
    # Registers 40h-FFh of the PIIX3 ISA bridge, XOR their power-on values (piix.c).
    return {"isa_cfg_xor": r.bytes(192)}


def _fwcfg(r: _Reader) -> Fields:
    return {"key": r.int(2), "offset": r.int(4)}


def _ide(r: _Reader) -> Fields:
    # The primary channel, its registers XOR their power-on values (ide.c), then the PCI
    # function's registers and the bitmap of unmodelled commands seen.
    out: Fields = r.named("feature error_xor nsector_xor sector_xor lcyl hcyl select status_xor "
                          "control irq_pending irq_level xfer")
    out["pos"] = r.int(2)
    out["left"] = r.int(2)
    out["lba"] = r.int(4)
    out.update(r.named("cmd heads spt"))
    out["buf"] = r.bytes(512)
    out["pci_cmd"] = r.int(1)
    out["bmiba"] = r.int(4)
    out["cfg40"] = r.bytes(16)
    out["unmodelled"] = r.bytes(32)
    return out


def _vga(r: _Reader) -> Fields:
    out: Fields = r.named("misc seq_index")
    out["seq"] = r.bytes(8)
    out["crtc_index"] = r.int(1)
    out["crtc"] = r.bytes(32)
    out["gr_index"] = r.int(1)
    out["gr"] = r.bytes(16)
    out.update(r.named("ar_index ar_flip"))
    out["ar"] = r.bytes(32)
    out.update(r.named("pel_mask_xor dac_read dac_write dac_sub dac_reading"))
    out["palette"] = r.bytes(768)
    return out


SECTIONS: tuple[tuple[str, Callable[[_Reader], Fields]], ...] = (
    ("pic", _pic), ("pit", _pit), ("com1", _uart), ("com2", _uart), ("rtc", _rtc),
    ("kbc", _kbc), ("platform", _platform), ("piix", _piix), ("fwcfg", _fwcfg),
    ("ide", _ide), ("vga", _vga))


def decode(state: bytes) -> dict[str, Fields]:
    """Device name -> field -> value. Empty when the machine has no PC devices."""
    if len(state) < 8:
        raise ValueError("device state is truncated")
    version, present = struct.unpack_from("<II", state)
    if version != DEV_STATE_VERSION:
        raise ValueError(f"device state version {version} is not supported "
                         f"(supported: {DEV_STATE_VERSION})")
    if not present:
        return {}
    r = _Reader(state)
    r.pos = 8
    return {name: fn(r) for name, fn in SECTIONS}


def differences(a: bytes, b: bytes) -> dict[str, dict[str, tuple[object, object]]]:
    """Per device, the fields whose values differ: {device: {field: (a, b)}}."""
    da, db = decode(a), decode(b)
    out: dict[str, dict[str, tuple[object, object]]] = {}
    for dev in sorted(set(da) | set(db)):
        fa, fb = da.get(dev, {}), db.get(dev, {})
        diff = {k: (fa.get(k), fb.get(k)) for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}
        if diff:
            out[dev] = diff
    return out
