"""Performance measurements, run as ``python -m retrieval bench NAME``; results go to results/benchmarks/."""
