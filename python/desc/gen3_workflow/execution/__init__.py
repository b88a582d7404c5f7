"""Execution: the runner that hands a store's jobs to parsl, and what runs them.

Five rooms, each importing only the rooms below it (and settings, store,
plan, host), in this order from the top:

- `~.runner`: the submit-side loop over the store (`~.runner.graph_runner.
  GraphRunner`), the ready set and memory budget, attempts and ctrl_bps's
  retry rules, the watchdog, the init and final jobs;
- `~.bridge`: everything that knows parsl: one object per way of running a
  job (`~.bridge.modes`), the executors, providers and ``parsl.Config`` they
  build, the session that starts and stops parsl, how a job becomes an app
  call (`~.bridge.submitters`), parsl's logs, ``bps ping``;
- `~.warm`: warm execution: the parsl app that hands a job to a warm runner
  (`~.warm.in_process`), the runners (per worker, per node) and their
  forks, the node runner's protocol and client;
- `~.worker`: what runs beyond parsl with the standard library and psutil
  only: the bash app, the job supervisor, Work Queue's task script;
- `~.job_io`: what jobs, runners and ``bps cancel`` leave in the submit
  directory (exit records, kill requests, pids, usage, OOM kills, the cancel
  mark, the run's secrets) and the run's processes.

This ``__init__`` imports nothing: parsl workers import
`~.worker.bash_app` and `~.warm.in_process` through it.
"""
