"""Benchmarks behind `emostream bench NAME`: medians and ratios measured in one run."""
