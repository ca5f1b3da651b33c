"""The thread choice as a table, the load reading from /proc/stat text, the core count from a
sysfs tree, and OpenMP's wait policy set only where the user has not set it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from piilab import threads
from piilab.errors import PiilabError


@pytest.mark.parametrize("cores, busy, threads_now, expected", [
    (2, 0.0, 2, 2),    # idle: every core
    (2, 0.2, 2, 2),    # a little background work still leaves both cores
    (2, 0.3, 2, 1),    # under 3/4 of the second core free: it would hold up every parallel region
    (2, 1.0, 2, 1),    # a busy process on one of two cores: one thread
    (2, 2.0, 2, 1),    # both busy: still one thread, never none
    (2, 5.0, 2, 1),    # a load above the core count
    (1, 0.0, 1, 1),
    (8, 3.0, 8, 5),
    (8, 2.3, 8, 5),
    (8, 0.0, 8, 8),
])
def test_auto_threads_are_the_cores_other_work_leaves_free(cores, busy, threads_now, expected):
    count, reason = threads.choose_threads(cores, busy, torch_threads=threads_now)
    assert count == expected
    assert reason.startswith(f"auto: {cores} usable cores, {busy:.1f} of them busy")


@pytest.mark.parametrize("kwargs, expected, says", [
    ({"requested": 3}, 3, "--threads 3, more than the 2 cores"),
    ({"requested": 1}, 1, "--threads 1"),
    ({"requested": 2, "omp_num_threads": "1"}, 2, "--threads 2"),   # the flag wins over the env
    ({"omp_num_threads": "4"}, None, "OMP_NUM_THREADS=4 set by the user"),
    ({"torch_threads": 1}, None, "torch.set_num_threads(1) was called"),
    ({"torch_threads": 2}, 1, "auto"),   # torch's default (one per core): piilab chooses
])
def test_a_user_setting_wins_over_the_load(kwargs, expected, says):
    count, reason = threads.choose_threads(2, 1.0, **kwargs)
    assert count == expected
    assert says in reason


def test_threads_below_one_are_refused():
    with pytest.raises(PiilabError, match="--threads must be at least 1, got 0"):
        threads.choose_threads(2, 0.0, requested=0)


STAT_BEFORE = """cpu  300 0 30 700 0 0 0 0 0 0
cpu0 100 0 10 390 0 0 0 0 0 0
cpu1 200 0 20 310 0 0 0 0 0 0
intr 1 2 3
"""
# 100 ticks later: cpu0 was busy 10 of them, cpu1 all 100 (90 user, 10 steal), cpu2 is not ours
STAT_AFTER = """cpu  400 0 40 790 0 0 0 10 0 0
cpu0 105 0 15 480 0 0 0 0 0 0
cpu1 290 0 20 310 0 0 0 10 0 0
cpu2 999 0 0 0 0 0 0 0 0 0
"""


def test_busy_cpus_from_two_proc_stat_readings():
    before = threads.cpu_times(STAT_BEFORE, [0, 1])
    after = threads.cpu_times(STAT_AFTER, [0, 1])
    assert before == (700, 1030)
    assert threads.busy_fraction(before, after, 2) == pytest.approx(1.1)  # 0.1 + 1.0
    only_cpu1 = threads.busy_fraction(threads.cpu_times(STAT_BEFORE, [1]),
                                      threads.cpu_times(STAT_AFTER, [1]), 1)
    assert only_cpu1 == pytest.approx(1.0)
    assert threads.busy_fraction((5, 10), (5, 10), 2) == 0.0  # no time passed


def test_measure_busy_reads_this_machine():
    busy, how = threads.measure_busy(threads.usable_cpus(), window=0.05)
    assert 0.0 <= busy <= len(threads.usable_cpus()) + 1e-9
    assert how.startswith("/proc/stat") or "load" in how


def _cpu(sysfs, n, package, core):
    topology = sysfs / f"cpu{n}" / "topology"
    topology.mkdir(parents=True)
    (topology / "physical_package_id").write_text(f"{package}\n")
    (topology / "core_id").write_text(f"{core}\n")


def test_hyperthreads_of_one_core_count_once(tmp_path):
    for n, (package, core) in enumerate([(0, 0), (0, 0), (0, 1), (1, 0)]):
        _cpu(tmp_path, n, package, core)
    assert threads.physical_cores([0, 1, 2, 3], tmp_path) == 3
    assert threads.physical_cores([0, 1], tmp_path) == 1
    assert threads.physical_cores([0, 7], tmp_path) == 2  # cpu7 unreadable: count logical CPUs


def test_openmp_waiting_is_the_users_choice_and_the_log_says_which():
    assert "as the user set it (OMP_WAIT_POLICY=PASSIVE)" in threads.openmp_note({"OMP_WAIT_POLICY": "PASSIVE"})
    assert "spin-waits (its default" in threads.openmp_note({})


def test_importing_piilab_on_a_loaded_machine_leaves_openmp_waiting_alone():
    # Set from the lagging load average, PASSIVE made the demo's training 1.8x slower on an idle
    # machine just after another job (docs/runtime.md): piilab no longer sets it.
    env = {k: v for k, v in os.environ.items() if k not in threads.OPENMP_WAIT}
    code = ("import os; os.getloadavg = lambda: (9.0, 9.0, 9.0); import piilab, piilab.cli; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('KMP_BLOCKTIME'))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]


def test_others_busy_leaves_out_this_processs_own_cpu_time():
    # 2 CPUs, 1 s at 100 ticks/s: 200 ticks, 50 idle, so 1.5 CPUs busy; this process used 1.0
    # s of CPU time of them, so other work kept 0.5 of a CPU busy
    before, after = (1000, 5000, 10.0), (1050, 5200, 11.0)
    assert threads.others_busy(before, after, 2, 100) == pytest.approx(0.5)
    assert threads.others_busy(before, (1050, 5200, 12.0), 2, 100) == 0.0  # never below 0
    assert threads.others_busy(before, before, 2, 100) == 0.0  # no time passed


def test_read_load_gives_both_halves_of_a_reading():
    reading = threads.read_load(threads.usable_cpus())
    if reading is None:
        pytest.skip("no /proc/stat here")
    idle, total, own = reading
    assert 0 <= idle <= total and own > 0


class _Load:
    """Readings of a 2-CPU machine, one second apart, with `others` CPUs of other work and this
    process using 1.5 CPUs."""

    def __init__(self) -> None:
        self.at, self.others = (0, 0, 0.0), 0.0

    def __call__(self, cpus):
        idle, total, own = self.at
        busy = min(2.0, self.others + 1.5)
        self.at = (idle + round(100 * (2 - busy)), total + 200, own + 1.5)
        return self.at


def test_a_thread_watch_gives_back_the_core_a_brief_job_held_at_the_start(monkeypatch):
    import torch

    from piilab import runtime

    monkeypatch.setattr(runtime, "_threads_auto", True)
    monkeypatch.setattr(threads, "usable_cpus", lambda: [0, 1])
    monkeypatch.setattr(threads, "physical_cores", lambda cpus: 2)
    clock = iter(range(0, 1000, 30)).__next__  # 30 s per poll
    load, before = _Load(), torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what the start chose beside a brief job
        watch = runtime.ThreadWatch(every=60, read=load, clock=clock)
        assert watch.poll() is None  # 30 s: too soon to look
        assert watch.poll() == 2 and torch.get_num_threads() == 2  # the machine is free now
        load.others = 1.0  # a long job starts beside the run
        assert watch.poll() is None and watch.poll() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_thread_watch_leaves_a_count_it_did_not_choose_from_the_load(monkeypatch):
    import torch

    from piilab import runtime

    monkeypatch.setattr(runtime, "_threads_auto", False)  # --threads, OMP_NUM_THREADS, ...
    watch = runtime.ThreadWatch(every=0, read=_Load(), clock=iter(range(100)).__next__)
    before = torch.get_num_threads()
    assert watch.poll() is None and torch.get_num_threads() == before
    # chosen from the load, but the caller set torch's count since: it stays the caller's
    monkeypatch.setattr(runtime, "_threads_auto", True)
    monkeypatch.setattr(threads, "usable_cpus", lambda: [0, 1])
    monkeypatch.setattr(threads, "physical_cores", lambda cpus: 2)
    try:
        torch.set_num_threads(2)
        watch = runtime.ThreadWatch(every=0, read=_Load(), clock=iter(range(100)).__next__)
        torch.set_num_threads(1)
        assert watch.poll() is None and watch.poll() is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_look_again_keeps_one_watch_for_the_process(monkeypatch):
    from piilab import runtime

    made = []

    class Watch:
        def __init__(self):
            made.append(self)
            self.polls = 0

        def poll(self):
            self.polls += 1

    monkeypatch.setattr(runtime, "ThreadWatch", Watch)
    monkeypatch.setattr(runtime, "_watch", None)
    for _ in range(3):
        runtime.look_again()
    assert len(made) == 1 and made[0].polls == 3


def test_training_steps_look_through_the_process_watch(monkeypatch):
    from piilab import runtime
    from piilab.train.run_log import ThreadWatchCallback

    looks = []
    monkeypatch.setattr(runtime, "look_again", lambda: looks.append(1))
    callback = ThreadWatchCallback()
    for _ in range(2):
        callback.on_step_end(None, None, None)
    assert len(looks) == 2
