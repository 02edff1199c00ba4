"""Benchmarks that print figures, every one a ratio to baselines measured in the same run."""
