"""Execution: the runner that hands a store's jobs to parsl.

- `~.runner`: `GraphRunner`, init job, quanta through parsl, final job;
- `~.submitters`: how a quantum job becomes a parsl app call;
- `~.bash_app`, `~.in_process`, `~.in_process_runner`: what workers run;
- `~.local_jobs`: jobs the submitting process runs itself;
- `~.cancel`, `~.processes`: stopping a run and its processes;
- `~.environment`, `~.parsl_logging`: what jobs inherit, where parsl logs.

This ``__init__`` imports nothing: parsl workers import `~.bash_app` and
`~.in_process` through it.
"""
