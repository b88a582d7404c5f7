"""What a run's jobs, runners and commands leave in its submit directory,
and the run's processes:

- `~.markers`: each job's exit record, kill request and pids (``status/``);
- `~.job_usage`, `~.oom`: what a payload used, and kernel OOM kills;
- `~.cancel`: ``bps cancel``'s request and mark, and the prefix of every
  job's command that honours them;
- `~.run_secrets`: the run's Work Queue password and runner key
  (``secrets/``), and directories only the owner may write in;
- `~.processes`: finding and stopping the run's and a job's processes.

The ground floor of execution: imports nothing of the package but its
constants and the store (for ``bps cancel``).  Its ``__init__`` imports
nothing.
"""
