"""Benchmark scripts (``make bench``, ``gen3wf-bench-status``); not used by the plug-in."""
