"""Which tensor-core rate a datatype runs at on a given device.

The catalog lists each device's dense rate per datatype it supports (`peak_tflops`), as the vendor
states it: FP4 only where there are FP4 tensor cores (Blackwell, MI355X), FP8 at twice the bf16 rate on
Hopper or CDNA3 but at the bf16 rate on Gaudi 3 (its matrix engines run both at 1,835 TFLOP/s), int8
on TPUs and Ascend (no FP8 there). A datatype the device lacks runs on the next path an engine would
take: 4-bit inputs are widened to 8 bits (W4A8, then 16), 8-bit ones to 16 bits (weight-only kernels
dequantise). The block-scaled 4-bit formats (NVFP4, MXFP4) use the device's FP4 rate unless it lists
them on their own.
"""

from __future__ import annotations

from servesim.catalog.specs import HardwareSpec

FALLBACK = {
    "nvfp4": ("nvfp4", "fp4", "fp8", "bf16"),
    "mxfp4": ("mxfp4", "fp4", "fp8", "bf16"),
    "fp4": ("fp4", "fp8", "bf16"),
    "int4": ("int4", "int8", "bf16"),
    "fp8": ("fp8", "bf16"),
    "int8": ("int8", "bf16"),
    "fp16": ("fp16", "bf16"),
}
"""Datatype -> the rates to try, fastest first; anything else runs at bf16."""


def rate_dtype(hardware: HardwareSpec, dtype: str) -> str:
    """The catalog datatype whose rate `dtype` inputs run at on `hardware`."""
    for candidate in FALLBACK.get(dtype, (dtype, "bf16")):
        if candidate in hardware.peak_tflops:
            return candidate
    return "bf16"


def tensor_flops(hardware: HardwareSpec, dtype: str) -> float:
    """Dense FLOP/s of `hardware` for GEMM or attention inputs of `dtype`."""
    return hardware.peak_tflops[rate_dtype(hardware, dtype)] * 1e12
