"""Measured performance and quality figures: ``python -m benchmarks all [--quick] --out DIR``."""
