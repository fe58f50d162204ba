"""``must-bench evaluate`` (resumable, sharded runs) and ``must-bench report`` (side-by-side comparisons)."""
