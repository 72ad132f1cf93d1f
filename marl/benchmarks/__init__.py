"""Benchmarks. Each module runs with `python -m marl.benchmarks.<name>` and writes its results to results/."""
