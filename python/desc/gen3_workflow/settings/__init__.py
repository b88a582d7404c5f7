"""Settings: the bps file's ``parsl_config:`` section, validated.

- `~.parsl_section`: `ParslSettings`, every key validated up front, with
  the allowed values and ranges in `~.value_checks`;
- `~.ctrl_bps_parsl_sites` and `~.ctrl_bps_parsl_reading`: a ctrl_bps_parsl
  ``site:`` section (``computeSite``) read as the equivalent settings;
- `~.submission_checks`: names, paths and workflow nodes checked before
  anything is built.

What the settings build (parsl's executors and providers, the run's
``parsl.Config``, ``bps ping``) is `desc.gen3_workflow.execution.bridge`'s.
This room imports nothing of the package but `~desc.gen3_workflow.errors`;
its ``__init__`` imports nothing.
"""
