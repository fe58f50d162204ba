"""``must-bench build``: render or read tracks, annotate them, generate questions, write the benchmark."""
