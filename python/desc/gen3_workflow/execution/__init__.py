"""Execution: the runner that hands a store's jobs to parsl, and what runs them.

The submit side:

- `~.modes`: one object per way of running a job (ThreadPool,
  HighThroughput, Work Queue): what every other module asks instead of
  testing the executor's or provider's name;
- `~.runner`: `GraphRunner`, init job, quanta through parsl, final job;
  `~.scheduler` (the ready set, the memory budget), `~.attempts`,
  `~.retry_rules` (ctrl_bps's retry and memory rules), `~.watchdog`;
- `~.submitters`: how a quantum job becomes a parsl app call;
  `~.parsl_session`: parsl started and stopped around the run;
  `~.parsl_logging`: where parsl logs;
- `~.local_jobs`, `~.local_fork`: jobs the submitting process runs itself,
  and its forks;
- `~.cancel`, `~.processes`, `~.oom`: stopping a run and its processes.

On workers (warm execution, see `~.in_process`):

- `~.in_process`: the parsl app that hands a job to a warm runner;
  `~.in_process_runner`: the runner and its forked executors;
  `~.warm_qbb`: ``run-qbb`` on a QuantumGraph held open; `~.job_argv`: what
  a runner reads in a job's request;
- `~.node_runner` (one per node and run, for Work Queue), `~.node_client`
  (a task's side of it), `~.runner_protocol` (who may talk to it, and
  how), `~.run_secrets` (the run's Work Queue password and runner key);
- `~.bash_app`, `~.supervise`, `~.wq_task`: process mode's bash app, the
  job supervisor, parsl's Work Queue task script started fast;
- `~.markers`, `~.job_usage`: what a job records of how it ended;
  `~.environment`, `~.zipfix`: what jobs inherit.

This ``__init__`` imports nothing: parsl workers import `~.bash_app` and
`~.in_process` through it.
"""
