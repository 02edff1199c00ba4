"""Benchmarks that print figures: ratios to baselines measured in the same run (foundation), and
the portfolio service's trade rates and live-price fan-out."""
