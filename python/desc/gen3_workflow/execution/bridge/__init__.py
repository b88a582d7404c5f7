"""The bridge to parsl: the only room that knows parsl's executors.

- `~.modes`: one `~.modes.ExecutionMode` per way of running a job
  (ThreadPool, HighThroughput, Work Queue, in either execution mode): what
  every other module asks instead of testing names;
- `~.executors`, `~.providers`, `~.parsl_factory`: what the plug-in adds to
  parsl's executors, the providers, the run's ``parsl.Config``;
- `~.parsl_session`: parsl started while the init job runs, stopped while
  the final job runs; `~.parsl_logging`: where parsl logs;
- `~.submitters`: how a job attempt becomes a parsl app call;
- `~.availability`, `~.ping`: what this machine can run, before anything
  is built and for ``bps ping``.

May import the warm, worker and job_io rooms and settings; parsl itself is
imported only where an executor is built or started (reports never do).
Its ``__init__`` imports nothing.
"""
