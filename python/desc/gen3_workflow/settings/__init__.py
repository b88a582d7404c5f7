"""Settings: the bps file's ``parsl_config:`` section, validated.

- `~.parsl_section`: `ParslSettings`, every key validated up front;
- `~.submission_checks`: names, paths and workflow nodes checked before
  anything is built.

What the settings build (parsl's executors and providers, the run's
``parsl.Config``, ``bps ping``) is `desc.gen3_workflow.execution.bridge`'s.
This room imports nothing of the package but `~desc.gen3_workflow.errors`;
its ``__init__`` imports nothing.
"""
