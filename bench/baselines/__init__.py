"""Built-in baselines, registered as models: random, prior, constant, text-only, dsp, oracle."""

from bench.baselines import constant, dsp, oracle, prior, random_, text_only  # noqa: F401  (registration)
