"""Warm execution (``execution: in_process``): jobs run by long-lived
runners that imported the middleware once.

- `~.in_process`: the parsl app that hands a job to a runner, and the
  handles of runners kept in this process;
- `~.in_process_runner`: the runner and its forked executors;
  `~.warm_qbb`: ``run-qbb`` on a QuantumGraph held open; `~.job_argv`: what
  a runner reads in a job's request;
- `~.node_runner`: one runner per node and run (Work Queue, HighThroughput
  on this machine), reached over a socket by `~.node_client` in the
  `~.protocol` both share (who may connect, signed requests);
- `~.local_fork`: forks of ``bps submit`` (init and final jobs, ThreadPool
  runners, this machine's node runner).

May import the worker and job_io rooms, never parsl at import time (parsl
workers import `~.in_process`).  Its ``__init__`` imports nothing.
"""
