"""Test and benchmark helpers (e.g. a throw-away one-machine Slurm cluster)."""
