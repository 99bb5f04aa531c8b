"""Benchmarks (not part of `make test`): see benchmarks/README.md."""
