"""Runtime choices made once per process, each logged with the reason: device, dtype, CPU threads
(looked at again during training and decoding); and the heap."""

from __future__ import annotations

import functools
import logging
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from piilab import threads
from piilab.errors import PiilabError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision a run computes."""

    device: torch.device
    dtype: torch.dtype
    reason: str


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (avx512_bf16 or amx_bf16 on x86). Read once
    per process: a bf16 swap asks once per linear layer."""
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
    """Pick device and dtype once, and log both with the reason (and the threads, the first time)."""
    configure_threads()
    dev, dev_reason = choose_device(device)
    dt, dt_reason = choose_dtype(dev, dtype)
    reason = f"device {dev} ({dev_reason}); dtype {str(dt).removeprefix('torch.')} ({dt_reason})"
    log.info("runtime: %s", reason)
    return Runtime(dev, dt, reason)


# ---------------------------------------------------------------- CPU threads


_threads_reason: str | None = None  # set by the first configure_threads of this process
_threads_auto = False  # whether that choice came from the load (no --threads, OMP_NUM_THREADS, ...)


def configure_threads(requested: int | None = None) -> str:
    """Set torch's intra-op thread count once per process (piilab.threads.choose_threads), log it.

    Later calls without `requested` keep the first choice; `requested` (--threads) always applies.
    Returns the logged reason.
    """
    global _threads_reason, _threads_auto
    if _threads_reason is not None and requested is None:
        return _threads_reason
    cpus = threads.usable_cpus()
    cores = threads.physical_cores(cpus)
    busy, measured = 0.0, "not measured"
    auto = requested is None and not os.environ.get("OMP_NUM_THREADS") \
        and torch.get_num_threads() == cores
    if auto:  # the only case that looks at the load; measuring takes a fraction of a second
        busy_cpus, measured = threads.measure_busy(cpus)
        busy = busy_cpus * cores / len(cpus)  # logical CPUs to physical cores
    count, reason = threads.choose_threads(
        cores, busy, requested=requested, omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        torch_threads=torch.get_num_threads())
    if count is not None:
        torch.set_num_threads(count)
    _threads_auto = auto
    if auto:
        reason += f", {measured}"
    _threads_reason = f"{torch.get_num_threads()} ({reason}); {threads.openmp_note()}"
    log.info("runtime: threads: %s", _threads_reason)
    return _threads_reason


class ThreadWatch:
    """Looks at the load again every `every` seconds of a long run and sets torch's thread count
    anew, where piilab chose it from the load at start (`configure_threads`'s auto case; never
    over --threads, OMP_NUM_THREADS or the caller's torch.set_num_threads). A brief job at the
    start no longer holds a whole run to one thread, and a long one that starts later gets its
    core. Only other processes' CPU time counts: this process is busy when it looks."""

    def __init__(self, every: float = 60.0, read=threads.read_load, clock=time.monotonic) -> None:
        self.every, self.read, self.clock = every, read, clock
        self.cpus = threads.usable_cpus()
        self.cores = threads.physical_cores(self.cpus)
        self.ticks_per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = read(self.cpus) if _threads_auto else None
        self.since = clock()
        self.count = torch.get_num_threads()  # what piilab set; another count is the caller's

    def poll(self) -> int | None:
        """Between steps: once `every` seconds have passed, look again; the new thread count if
        it changed (logged), else None."""
        if self.last is None or self.clock() - self.since < self.every:
            return None
        if torch.get_num_threads() != self.count:
            self.last = None  # the caller set torch's count since: it stays theirs
            return None
        now, seconds = self.read(self.cpus), self.clock() - self.since
        if now is None:
            self.last = None  # no /proc/stat: keep the choice made at start
            return None
        busy = threads.others_busy(self.last, now, len(self.cpus), self.ticks_per_second)
        self.last, self.since = now, self.clock()
        count, reason = threads.choose_threads(self.cores, busy * self.cores / len(self.cpus))
        if count == torch.get_num_threads():
            return None
        torch.set_num_threads(count)
        self.count = count
        log.info("runtime: threads: %d (%s over the last %.0f s)", count, reason, seconds)
        return count


_watch: ThreadWatch | None = None


def look_again() -> None:
    """Between batches or passes of a long decoding loop: this process's ThreadWatch looks at
    the load (at most once a minute; a clock reading otherwise)."""
    global _watch
    if _watch is None:
        _watch = ThreadWatch()
    _watch.poll()


# ---------------------------------------------------------------- the heap (glibc)


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameter numbers
GLIBC_MMAP_THRESHOLD_MAX = 32 << 20  # the ceiling of glibc's own dynamic threshold (64-bit)
_threshold_set = False  # whether return_large_blocks_to_the_os changed it in this process


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Set glibc malloc options (parameter, value) for the whole process; whether all applied
    (False off glibc Linux)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return all([libc.mallopt(option, value) for option, value in settings])
    except (OSError, AttributeError):
        return False


def _malloc_trim() -> None:
    """Give the OS back the heap's free memory (glibc's malloc_trim), wherever it lies."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def return_large_blocks_to_the_os(threshold: int = 128 << 10) -> bool:
    """Make glibc serve allocations of `threshold` bytes or more with mmap, for the whole process.

    glibc raises its mmap threshold each time a large block is freed, so a training step's
    activations soon come from the heap, whose freed holes are kept rather than returned. With
    the prompt prefix shared, a step allocates many mid-sized tensors (the rows' own tokens): at
    a 1 MiB threshold the heap grew by ~0.8 GB over four SmolLM2 steps while live tensors stayed
    at the model's 0.57 GB. Peak RSS of a step (batch 8, 256 tokens) against step time, by
    threshold: 1 MiB 3.3 GB / 3.1 s, 512 KiB 3.0 GB / 4.9 s, 256 KiB 2.9 GB / 5.1 s, 128 KiB
    2.85 GB / 5.7 s (fresh pages cost page faults). 128 KiB keeps a step under 3 GB with a margin
    (the benchmark's 256 KiB run peaked at 2.97 GB). A user who would rather have the speed
    passes `--cpu-memory fast` (this is then not called) or sets glibc's own
    `MALLOC_MMAP_THRESHOLD_` (e.g. 1048576), which is left alone. Returns whether it applied
    (glibc Linux only).
    """
    global _threshold_set
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    # trim threshold and top pad back to glibc's defaults (keep_freed_blocks_for_decoding's undone)
    _threshold_set = _mallopt((M_MMAP_THRESHOLD, threshold), (M_TRIM_THRESHOLD, 128 << 10),
                              (M_TOP_PAD, 0))
    if _threshold_set:
        _malloc_trim()  # what decoding kept goes back now, not at some later free
    return _threshold_set


DECODING_HEAP = 1 << 30  # bytes: the mmap and trim thresholds while decoding
DECODING_TOP_PAD = 256 << 20  # bytes the heap grows by at a time


def keep_freed_blocks_for_decoding() -> bool:
    """Let glibc keep freed memory for the next tensors instead of returning it, for the whole
    process: decoding allocates and frees the same large activations pass after pass, and each
    fresh block from the OS costs a page fault per 4 KiB. With the mmap and trim thresholds at
    1 GiB and the heap growing 256 MiB at a time, a bf16 prefill of 16 SmolLM2 prompts took
    261 ms instead of 368, and 150 texts through `extract` 10.1-10.5 s instead of 10.5-11.1.
    Memory freed stays with the process (its peak stays what decoding needed). Leaves glibc's
    own MALLOC_*_ settings alone; returns whether it applied (glibc Linux only)."""
    global _threshold_set
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    _threshold_set = False  # training's low threshold is undone
    return _mallopt((M_MMAP_THRESHOLD, DECODING_HEAP), (M_TRIM_THRESHOLD, DECODING_HEAP),
                    (M_TOP_PAD, DECODING_TOP_PAD))


def let_the_heap_keep_blocks_again() -> None:
    """After training: a high mmap threshold again, as glibc's dynamic one reaches in a long run.

    The low training threshold makes decoding in the same process (`piilab run`, the demo)
    about 30% slower, and nothing there needs the memory back. Only undoes what
    `return_large_blocks_to_the_os` did.
    """
    global _threshold_set
    if _threshold_set:
        _mallopt((M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX))
        _threshold_set = False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
