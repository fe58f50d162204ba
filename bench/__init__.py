"""Benchmark construction and scoring: annotation → synthesis → tasks → build → metrics → evaluation/report."""
