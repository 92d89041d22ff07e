"""Benchmarks: timing goals live here, never in tests/ (see bench/README.md)."""
