"""The job-state store: one SQLite file per run, the only source of truth.

- `~.records`: what it holds (runs, jobs, commands, states), plain data;
- `~.job_store`: `JobStateStore`, the one API to its tables (its aggregate
  reads for reports in `~.report_queries`);
- `~.liveness`: whether a run's submitting process still runs it;
- `~.run_index`: the per-user list of submit directories.

This ``__init__`` imports nothing (see the package docstring).
"""
