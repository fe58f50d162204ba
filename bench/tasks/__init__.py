"""Task generators (one module per task, registered by name) and the balancing pass."""

from bench.tasks import avqa, gto, ltr, mtr, tad, tsg  # noqa: F401  (import registers the generators)
from bench.tasks.base import TASK_GENERATORS, Draft, TaskConfig, generate_drafts, register_task

__all__ = ["TASK_GENERATORS", "Draft", "TaskConfig", "generate_drafts", "register_task"]
