"""Instrumentation overhead of corrstack against the libraries services use today.

Run `python -m benchmarks --help`; see benchmarks/README.md for what is measured and how.
"""
