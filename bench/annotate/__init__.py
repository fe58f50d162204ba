"""Annotation: Amuse rhythm and source labels, onsets, entries/exits, transitions, intensity; JAMS I/O."""
