"""Settings: the bps file's ``parsl_config:`` section and what it builds.

- `~.parsl_section`: `ParslSettings`, every key validated up front;
- `~.executors`, `~.providers`: one small factory per executor and provider;
- `~.parsl_factory`: the run's `parsl.config.Config` from those;
- `~.submission_checks`: names and paths checked before anything is built;
- `~.ping`: ``bps ping``, what the settings need from this machine.

This ``__init__`` imports nothing (see the package docstring).
"""
