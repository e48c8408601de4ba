"""Benchmarks, ours against the reference libraries in one run (`python -m bench`, `make bench`)."""
