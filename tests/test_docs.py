"""The documentation against the code: every ``parsl_config`` key is in the
reference, every example is accepted, the table of states is the code's, and
every command block of README.md and doc/user_guide.md is run
(`test_docs_e2e`) or marked with a reason that fits it.
"""

from __future__ import annotations

import re

import yaml
from doc_blocks import ALL_BLOCKS, FENCE, NOT_RUN_REASONS, ROOT, RUN_BLOCKS

from desc.gen3_workflow.settings.parsl_section import ParslSettings
from desc.gen3_workflow.store.records import RunState


def test_every_parsl_config_key_is_in_the_reference() -> None:
    text = (ROOT / "doc" / "parsl_config.md").read_text()
    first_cells = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    documented = set(re.findall(r"`(\w+)`", " ".join(first_cells)))
    missing = [key for key in ParslSettings.keys() if key not in documented]
    assert not missing, f"doc/parsl_config.md does not describe: {missing}"
    assert "(parsl_config.md)" in (ROOT / "doc" / "user_guide.md").read_text()


def test_user_guide_parsl_config_examples_are_accepted() -> None:
    blocks = [m.group(2) for m in FENCE.finditer((ROOT / "doc" / "user_guide.md").read_text())]
    sections = [
        yaml.safe_load(b)["parsl_config"] for b in blocks if b.lstrip().startswith(("parsl_config", "wms"))
    ]
    assert len(sections) >= 6
    executors = set()
    for section in sections:
        settings = ParslSettings.from_mapping(section)
        executors.add((settings.executor, settings.provider))
    assert executors >= {("WorkQueue", "Local"), ("ThreadPool", "Local"), ("HighThroughput", "Slurm")}
    assert ("WorkQueue", "Slurm") in executors


def test_the_state_table_is_the_code_s() -> None:
    """The user guide's table of states says what the views show."""
    from desc.gen3_workflow.reporting.bps_report import JOB_STATES, RUN_STATES
    from desc.gen3_workflow.reporting.snapshot import PROGRESS_NAMES
    from desc.gen3_workflow.store.records import JobState

    text = (ROOT / "doc" / "user_guide.md").read_text()
    table = text[text.index("| gen3_workflow | progress") :].split("\n\n")[0].splitlines()[2:]
    rows = {
        cells[0].strip("`"): cells[1:4]
        for cells in ([c.strip() for c in r.strip("|").split("|")] for r in table)
    }
    assert set(rows) == {state.value for state in JobState}
    for state in JobState:
        progress, report, _ = rows[state.value]
        assert progress == PROGRESS_NAMES[state] and report == JOB_STATES[state].name, state
    runs = text[text.index("a run is `prepared`") :].split("\n\n")[0].replace("\n", " ")
    for state in RunState:
        assert f"`{state.value}` ({RUN_STATES[state].name}" in runs, state


def test_every_command_block_is_run_or_marked() -> None:
    """The rule of the module's docstring, and its closed list of reasons."""
    assert len(ALL_BLOCKS) >= 18 and len(RUN_BLOCKS) >= 12, [b.id for b in ALL_BLOCKS]
    for block in ALL_BLOCKS:
        marker = block.marker or ""
        if marker.startswith("<!--") and block.not_run_reason is None:
            # One rule: a comment before a command block is a not-run marker.
            raise AssertionError(f"{block.id}: {marker!r} is not <!-- not run here: REASON -->")
        reason = block.not_run_reason
        if reason is not None:
            assert reason in NOT_RUN_REASONS, f"{block.id}: {reason!r} is not one of {list(NOT_RUN_REASONS)}"
            problem = NOT_RUN_REASONS[reason](block.text)
            assert problem is None, f"{block.id} is marked {reason!r}, but {problem}:\n{block.text}"
        if block.language == "console":
            assert any(line.startswith("$ ") for line in block.text.splitlines()), block.id


def test_parsl_config_blocks_of_the_readme_and_reference_are_accepted() -> None:
    """Every ``parsl_config:`` example of the README and the reference
    validates, the several-executor ones with their entries."""
    several = 0
    for page in (ROOT / "README.md", ROOT / "doc" / "parsl_config.md"):
        for match in FENCE.finditer(page.read_text()):
            if not match.group(2).lstrip().startswith("parsl_config"):
                continue
            settings = ParslSettings.from_mapping(yaml.safe_load(match.group(2))["parsl_config"])
            several += len(settings.executor_list()) > 1
    assert several >= 2
