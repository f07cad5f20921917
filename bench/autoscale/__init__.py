"""Trace-driven autoscaling benchmark: `python -m bench.autoscale --trace FILE`."""
