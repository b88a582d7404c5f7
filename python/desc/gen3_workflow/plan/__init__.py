"""Planning: ctrl_bps's GenericWorkflow turned into the rows of a store.

- `~.commands`: each job's command as data (argument vector, environment);
- `~.workflow`: jobs in topological order, their resources, log paths and
  edges, and what the run's record keeps of the bps configuration.

This ``__init__`` imports nothing (see the package docstring).
"""
