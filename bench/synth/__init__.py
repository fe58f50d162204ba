"""Generative multitrack pieces with exact ground truth, rendered with tinysoundfont."""
