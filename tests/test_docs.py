"""The documentation against the code: every ``parsl_config`` key is in the
reference, every example is accepted, every command block of the user guide
names the test that runs it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from desc.gen3_workflow.settings.parsl_section import ParslSettings

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def test_every_parsl_config_key_is_in_the_reference() -> None:
    text = (ROOT / "doc" / "parsl_config.md").read_text()
    first_cells = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    documented = set(re.findall(r"`(\w+)`", " ".join(first_cells)))
    missing = [key for key in ParslSettings.keys() if key not in documented]
    assert not missing, f"doc/parsl_config.md does not describe: {missing}"
    assert "(parsl_config.md)" in (ROOT / "doc" / "user_guide.md").read_text()


def test_user_guide_parsl_config_examples_are_accepted() -> None:
    blocks = [m.group(2) for m in _FENCE.finditer((ROOT / "doc" / "user_guide.md").read_text())]
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


def test_user_guide_commands_are_exercised() -> None:
    """Each command block of the guide names what runs it, and that exists."""
    text = (ROOT / "doc" / "user_guide.md").read_text()
    blocks = 0
    for match in _FENCE.finditer(text):
        if match.group(1) not in ("", "python", "sh", "bash", "console"):
            continue  # yaml examples (checked above) and sample output
        blocks += 1
        before = text[: match.start()].rstrip().splitlines()[-1]
        assert before.startswith("<!-- exercised: ") and before.endswith("-->"), match.group(2)
        for path, name in re.findall(r"(tests/\w+\.py)::(\w+)", before):
            assert f"def {name}(" in (ROOT / path).read_text(), (path, name)
        for path in re.findall(r"(tests/\w+\.py)(?!::)", before):
            assert (ROOT / path).exists(), path
        if "make demo" in before or "make test" in before:
            assert re.search(r"^demo: setup$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert blocks >= 12
    # EUPS: the table puts this checkout's python/ and bin/ first on the paths.
    table = (ROOT / "ups" / "gen3_workflow.table").read_text()
    for variable, directory in (("PYTHONPATH", "python"), ("PATH", "bin")):
        assert f"envPrepend({variable}, ${{PRODUCT_DIR}}/{directory})" in table
        assert (ROOT / directory).is_dir()
    for script in ("gen3wf-watch", "workflow_summary", "plot_jobs_history"):
        assert os.access(ROOT / "bin" / script, os.X_OK), script


def test_the_state_table_is_the_code_s() -> None:
    """The user guide's table of states says what the views show."""
    from desc.gen3_workflow.reporting.bps_report import JOB_STATES, RUN_STATES
    from desc.gen3_workflow.reporting.snapshot import PROGRESS_NAMES
    from desc.gen3_workflow.store.records import JobState, RunState

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
