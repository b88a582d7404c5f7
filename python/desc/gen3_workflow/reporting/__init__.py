"""Reporting: every view of a run, read from its store.

- `~.bps_report`: ``bps report``, ``bps status`` and the run listing;
- `~.failures`: what ``bps submit`` prints when a run fails;
- `~.progress`, `~.snapshot`: the live progress display;
- `~.history`, `~.summary`, `~.plots`: per-job history, summaries, plots;
- `~.outputs`: what a run registered in the butler;
- `~.text`: durations, times, failed-job lines and the status table.

This ``__init__`` imports nothing (see the package docstring).
"""
