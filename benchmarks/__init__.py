"""Benchmarks: each measures the project beside its named baseline in one run."""
