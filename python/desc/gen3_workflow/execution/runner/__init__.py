"""The submit-side runner: the loop over the store that submits ready jobs,
records how they end, retries and watches them (`~.graph_runner`), with its
ready set and memory budget (`~.scheduler`), attempts (`~.attempts`),
ctrl_bps's retry rules (`~.retry_rules`), the watchdog (`~.watchdog`), the
store's batches (`~.store_batch`) and the local init and final jobs
(`~.local_jobs`).

May import the bridge, warm, worker and job_io rooms; progress is handed in
by the caller (`~.graph_runner.ProgressDisplay`), not imported from
reporting.  Its ``__init__`` imports nothing.
"""
