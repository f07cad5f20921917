"""Benchmarks for llm-operator (not part of the installed package)."""
