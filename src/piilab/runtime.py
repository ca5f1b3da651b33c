"""Device and dtype, chosen once per run and logged with the reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from piilab.errors import PiilabError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision a run computes."""

    device: torch.device
    dtype: torch.dtype
    reason: str


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (avx512_bf16 or amx_bf16 on x86)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device_type: str) -> bool:
    """True where bf16 arithmetic runs in hardware: a CUDA GPU with bf16, a CPU with avx512_bf16."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device_type == "cpu" and cpu_supports_bf16()


def choose_device(requested: str = "auto") -> tuple[torch.device, str]:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), f"auto: CUDA is available ({torch.cuda.get_device_name()})"
        if torch.backends.mps.is_available():
            return torch.device("mps"), "auto: Apple MPS is available"
        return torch.device("cpu"), "auto: no CUDA or MPS device"
    if requested == "cuda" and not torch.cuda.is_available():
        raise PiilabError("--device cuda was asked for, but torch sees no CUDA device")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise PiilabError("--device mps was asked for, but torch sees no MPS device")
    if requested not in ("cpu", "cuda", "mps"):
        raise PiilabError(f"unknown device {requested!r}: use auto, cpu, cuda or mps")
    return torch.device(requested), f"--device {requested}"


def choose_dtype(device: torch.device, requested: str = "auto") -> tuple[torch.dtype, str]:
    """Weights dtype. auto: bf16 on GPUs that support it; float32 on CPU and MPS.

    On CPU the weights stay float32 even when the CPU has bf16: training uses bf16 *autocast*
    there instead, which keeps the master weights exact, and decoding stays float32 (only a
    self-speculative draft's head is a bf16 copy, since verification checks its choices).
    """
    if requested != "auto":
        if requested not in DTYPES:
            raise PiilabError(f"unknown dtype {requested!r}: use auto, float32, bfloat16 or float16")
        return DTYPES[requested], f"--dtype {requested}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "auto: this GPU supports bf16"
        return torch.float16, "auto: this GPU lacks bf16, using fp16"
    return torch.float32, f"auto: float32 weights on {device.type}"


def choose_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """Pick device and dtype once, and log both with the reason."""
    dev, dev_reason = choose_device(device)
    dt, dt_reason = choose_dtype(dev, dtype)
    reason = f"device {dev} ({dev_reason}); dtype {str(dt).removeprefix('torch.')} ({dt_reason})"
    log.info("runtime: %s", reason)
    return Runtime(dev, dt, reason)
