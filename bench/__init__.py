"""Benchmarks: figures as ratios against bounds measured in the same run."""
