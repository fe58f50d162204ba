"""Reward functions with TRL's signature and their registry."""
