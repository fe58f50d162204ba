"""How many threads a run of torch work may use on this machine, and a warning when they would share cores with
work already running (threads that share a core wait for each other at every small op)."""

from __future__ import annotations

import logging
import os

__all__ = ["usable_cpus", "threads_per_process", "oversubscription_warning", "warn_if_oversubscribed"]

log = logging.getLogger(__name__)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: ``taskset``, a SLURM or container cpuset), not the
    machine's count — threads beyond them only wait for each other."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity API (macOS, Windows)
        return os.cpu_count() or 2


def threads_per_process(world: int) -> int:
    """Intra-op threads for each of ``world`` processes: ``OMP_NUM_THREADS`` when set, else the usable CPUs shared."""
    # Two runs side by side with more threads than cores wait at every small op's barrier for a thread the other
    # run holds the core of: GRPO went from ~1 s to 17-35 s per step (docs/training-log.md), so a user's
    # OMP_NUM_THREADS must win over the share computed here.
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, usable_cpus() // world)


def oversubscription_warning(load: float, cpus: int, threads: int, nproc: int) -> str | None:
    """A warning when ``nproc`` processes of ``threads`` threads would share ``cpus`` CPUs with other work already
    keeping ``load`` of them busy (the 1-minute load average), else ``None``."""
    free = cpus - load
    if load < 1.0 or threads * nproc <= max(free, 0.0) + 0.5:
        return None
    return (f"the CPUs are already busy (load {load:.1f} on {cpus}) and each of {nproc} process(es) would use "
            f"{threads} thread(s): threads that share a core wait for each other at every small op, which made a GRPO "
            f"step 30-40x slower on this project's 2-core machine. Set OMP_NUM_THREADS to the cores left free "
            f"(e.g. OMP_NUM_THREADS={max(1, int(free + 0.5) // nproc)}), or run one thing at a time")


def warn_if_oversubscribed(threads: int, nproc: int = 1) -> None:
    """Log :func:`oversubscription_warning` for ``nproc`` processes of ``threads`` threads about to start, unless the
    user set ``OMP_NUM_THREADS`` (their choice) or the platform has no load average."""
    if "OMP_NUM_THREADS" in os.environ or not hasattr(os, "getloadavg"):
        return
    warning = oversubscription_warning(os.getloadavg()[0], usable_cpus(), threads, nproc)
    if warning:
        log.warning(warning)
