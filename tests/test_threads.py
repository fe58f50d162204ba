"""Threads for torch work: the usable CPUs, the per-process share, and the warning when other work holds the cores."""

import logging
import os

import pytest

from must.cli import main


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity API")
def test_usable_cpus_follows_the_affinity_mask():
    from must.threads import usable_cpus

    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # as `taskset -c 0` or a one-CPU SLURM allocation would
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cpus() == len(before)


def test_oversubscription_warning_when_other_work_holds_the_cores():
    """One evaluation thread already busy on 2 cores (load 1.0): 2 training threads would share a core (warn, suggest
    1); 1 thread would not. An idle machine, or 8 cores with 2 busy and 4 threads wanted, gives no warning."""
    from must.threads import oversubscription_warning

    warning = oversubscription_warning(1.0, 2, 2, 1)
    assert warning is not None and "load 1.0 on 2" in warning and "OMP_NUM_THREADS=1" in warning
    assert oversubscription_warning(1.0, 2, 1, 1) is None
    assert oversubscription_warning(0.3, 2, 2, 1) is None
    assert oversubscription_warning(2.0, 8, 4, 1) is None
    assert "OMP_NUM_THREADS=2" in oversubscription_warning(4.0, 8, 4, 2)  # 4 cores free, 2 processes


def test_threads_per_process_honours_omp_num_threads(monkeypatch):
    from must.threads import threads_per_process, usable_cpus

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_process(1) == usable_cpus()
    assert threads_per_process(usable_cpus() * 4) == 1  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_process(1) == 1  # the user's choice wins over the CPU share
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_process(2) == 3
    for unusable in ("0", "", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert threads_per_process(1) == usable_cpus()


def test_warning_only_when_the_user_left_the_threads_to_us(monkeypatch, caplog):
    """With the 1-minute load at 1.5 on 2 CPUs, two threads warn; ``OMP_NUM_THREADS`` set, whatever its value, or no
    load average on the platform, never."""
    from must import threads

    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with caplog.at_level(logging.WARNING, logger="must.threads"):
        threads.warn_if_oversubscribed(2)
    assert "load 1.5 on 2" in caplog.text and "OMP_NUM_THREADS=1" in caplog.text
    caplog.clear()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    threads.warn_if_oversubscribed(2)
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delattr(os, "getloadavg")
    threads.warn_if_oversubscribed(2)
    assert not caplog.text


def test_evaluate_warns_for_a_local_torch_model_only(monkeypatch, caplog, tmp_path):
    """``must-bench evaluate`` on a ``must:`` checkpoint while another job holds a core warns before loading it; a
    baseline, which runs no torch threads, does not."""
    import torch

    from must import threads

    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    missing = tmp_path / "missing"
    with caplog.at_level(logging.WARNING):
        rc = main(["evaluate", "--model", f"must:{missing}", "--bench", str(tmp_path / "bench"),
                   "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 2 and "OMP_NUM_THREADS=1" in caplog.text
    assert f"must:{missing}: not a MusT checkpoint" in caplog.text  # named, not a hub-name traceback
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rc = main(["evaluate", "--model", "random", "--bench", str(tmp_path / "bench"), "--out", str(tmp_path / "run"),
                   "--no-progress"])
    assert rc == 2 and "benchmark not found" in caplog.text and "OMP_NUM_THREADS" not in caplog.text
