"""How many CPU threads to compute with: the cores this process may use, less the ones other work
keeps busy. Imports no torch: the CLI chooses before torch loads."""

from __future__ import annotations

import math
import os
import time
from collections.abc import MutableMapping
from pathlib import Path

from piilab.errors import PiilabError

# How OpenMP threads wait between parallel regions: GNU libgomp (Linux torch wheels) reads
# OMP_WAIT_POLICY, Intel/LLVM OpenMP KMP_BLOCKTIME. piilab leaves both to the user (docs/runtime.md).
OPENMP_WAIT = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")

# A core counts as free when at least this share of it is idle: a thread on a core that other
# work holds waits for its time slice at every parallel region, which costs far more than one
# thread fewer (docs/runtime.md).
FREE_SHARE = 0.75

def openmp_note(environ: MutableMapping[str, str] = os.environ) -> str:
    """How OpenMP threads wait, for the log: as the user set it, else OpenMP's own spinning."""
    users = {k: environ[k] for k in OPENMP_WAIT if environ.get(k)}
    if users:
        return "OpenMP waiting as the user set it (" + ", ".join(f"{k}={v}" for k, v in users.items()) + ")"
    return "OpenMP spin-waits (its default; OMP_WAIT_POLICY=PASSIVE suits a machine whose load comes and goes)"


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """How many physical cores the logical CPUs sit on (hyperthreads share one); len(cpus) when
    the topology cannot be read. torch's own default is one thread per physical core."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


def cpu_times(stat_text: str, cpus: list[int]) -> tuple[int, int]:
    """(idle, total) clock ticks summed over `cpus`, from the text of /proc/stat."""
    wanted = {f"cpu{c}" for c in cpus}
    idle = total = 0
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if name in wanted:
            # user nice system idle iowait irq softirq steal (guest time is inside user already)
            ticks = [int(x) for x in fields[:8]]
            idle += ticks[3] + ticks[4]
            total += sum(ticks)
    return idle, total


def busy_fraction(before: tuple[int, int], after: tuple[int, int], ncpus: int) -> float:
    """How many of `ncpus` CPUs were busy between two cpu_times readings (0..ncpus)."""
    idle, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return 0.0
    return ncpus * (1.0 - idle / total)


def measure_busy(cpus: list[int], window: float = 0.2) -> tuple[float, str]:
    """(logical CPUs of `cpus` kept busy by other work now, how it was measured).

    /proc/stat over a short window sees the load as it is now; the one-minute load average
    lags by a minute both ways (it still counts a run that just ended and misses one that just
    began: docs/runtime.md), so it is only the fallback where /proc/stat is missing. This
    process sleeps during the window, so its own threads are not counted.
    """
    before = read_load(cpus)
    if before is not None:
        time.sleep(window)
        after = read_load(cpus)
    if before is None or after is None:
        try:
            return min(float(len(cpus)), os.getloadavg()[0]), "1-minute load average"
        except OSError:
            return 0.0, "load unknown"
    return busy_fraction(before[:2], after[:2], len(cpus)), f"/proc/stat over {window:.1f} s"


def own_cpu_seconds() -> float:
    """CPU time this process has used, all its threads (user and system)."""
    used = os.times()
    return used.user + used.system


def read_load(cpus: list[int]) -> tuple[int, int, float] | None:
    """(idle ticks, total ticks, this process's CPU seconds) now, for `others_busy`; None where
    /proc/stat is missing."""
    try:
        idle, total = cpu_times(Path("/proc/stat").read_text(), cpus)
    except OSError:
        return None
    return idle, total, own_cpu_seconds()


def others_busy(before: tuple[int, int, float], after: tuple[int, int, float], ncpus: int,
                ticks_per_second: int) -> float:
    """How many of `ncpus` CPUs other processes kept busy between two `read_load` readings:
    all the busy time less this process's own (it is busy itself when it asks, mid-run)."""
    busy_all = busy_fraction(before[:2], after[:2], ncpus)
    seconds_per_cpu = (after[1] - before[1]) / ncpus / ticks_per_second
    if seconds_per_cpu <= 0:
        return 0.0
    own = (after[2] - before[2]) / seconds_per_cpu
    return max(0.0, busy_all - own)


def choose_threads(cores: int, busy: float, *, requested: int | None = None,
                   omp_num_threads: str | None = None, torch_threads: int | None = None
                   ) -> tuple[int | None, str]:
    """(torch intra-op threads, or None to leave torch's count alone; the reason).

    cores: physical cores this process may use; busy: how many of them other work keeps busy;
    requested: --threads; omp_num_threads: the user's OMP_NUM_THREADS; torch_threads: torch's
    count now, which differs from `cores` (torch's default) when set with torch.set_num_threads.
    """
    if requested is not None:
        if requested < 1:
            raise PiilabError(f"--threads must be at least 1, got {requested}")
        more = f", more than the {cores} cores this process may use" if requested > cores else ""
        return requested, f"--threads {requested}{more}"
    if omp_num_threads:
        return None, f"OMP_NUM_THREADS={omp_num_threads} set by the user"
    if torch_threads is not None and torch_threads != cores:
        return None, f"torch.set_num_threads({torch_threads}) was called before piilab chose"
    free = max(0.0, cores - busy)
    threads = max(1, min(cores, math.floor(free + (1 - FREE_SHARE))))
    return threads, f"auto: {cores} usable cores, {busy:.1f} of them busy with other work"
