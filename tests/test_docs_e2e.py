"""Every command block of README.md and doc/user_guide.md runs, and does
what the docs say (the rule for which blocks run: `doc_blocks`).

How blocks run
--------------
A module-scoped fixture (`docs_session`) copies the 2 x 2 demo repository to
``demo_work/repo`` in a temporary working directory (with ``config`` and
``.venv`` there linking to this checkout's ``config/`` and the running
interpreter's environment, and ``bps.yaml`` / ``bps_sfp.yaml``: the demo's
``config/bps_laptop.yaml``, and ``config/bps_sfp.yaml`` with the laptop's
ThreadPool ``parsl_config``), then runs, in this order:

1. the user-area block (``ln -s``: its link must exist before outputs are
   written; the repository gets the ``u/`` a shared one has);
2. README's first block that runs: it activates the environment, exports
   ``BPS_WMS_SERVICE_CLASS`` and ``GEN3WF_DEMO_REPO`` and runs the module's
   one ``bps --no-log-tty submit`` (``config/bps_sfp.yaml`` replaced by
   ``config/bps_laptop.yaml``, as its comment says: threads only); the submit
   directory it prints is ``SUBMIT_DIR`` for every later block, and the
   environment it leaves is every later block's;
3. every other block, in document order.

Shell blocks run line by line, each line in its own ``bash`` (``set -e``)
with a time limit, the working directory and exported environment carried
from line to line (``cd``, ``source``, ``export``); a block stops at its
first unexpected exit status.  Placeholders are replaced, shell-quoted, by
`PLACEHOLDERS` (``SUBMIT_DIR``, ``<the Submit dir it printed>``,
``<working_dir>``, ``<user_name>``, ``/path/to/repo``); a line left with a
``<...>`` or ``/path/to/`` fails.  ``bps submit`` runs once: a ``bps
[--no-log-tty] submit FILE`` line of any other block is not run again: FILE
must be a bps file there selecting this plug-in, what the docs say of a
submission is checked on the module's run, and the block goes on with it.
Each line's exit status and output are checked by
the first of `EXPECTATIONS` whose pattern matches it (exit status 0 and
nothing else if none does), with what the docs promise: ``bps status``
exits with the run's ``WmsStates`` value, ``bps report --id`` shows every
label, ``plot_jobs_history -o`` writes a PNG, ...

Python blocks run in one interpreter, each block in a namespace of its own:
with ``>>>`` prompts the statements are run as at the prompt (expression
values echoed) and every line of sample output under a statement must be in
what it printed (numbers other than 0 compared as "some number"), without
prompts the block's statements run as a script; ``submit_dir`` is the
module's run and ``name`` a job of ``graph``; an assignment commented
``# .a, .b`` must give an object with those attributes; no statement may
raise.

The block tests run real ``bps`` (about a minute in all).
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from doc_blocks import ROOT, RUN_BLOCKS, Block
from doc_expectations import expectation, run_shell_block
from doc_session import PY_VALUES, SUBMIT_LINE, Session, normalized, run_python_blocks, shell_lines

# --- the fixture and the test ---------------------------------------------------


@pytest.fixture(scope="module")
def docs_session(demo_repo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    base = tmp_path_factory.mktemp("docs")
    work, scratch, state = base / "work", base / "scratch", base / "state"
    for directory in (work, scratch, state):
        directory.mkdir()
    repo = work / "demo_work" / "repo"
    shutil.copytree(demo_repo_template, repo)
    (repo / "u").mkdir(exist_ok=True)  # as in a shared repository
    (work / "config").symlink_to(ROOT / "config")
    (work / ".venv").symlink_to(sys.prefix)
    laptop = yaml.safe_load((ROOT / "config" / "bps_laptop.yaml").read_text())
    sfp = yaml.safe_load((ROOT / "config" / "bps_sfp.yaml").read_text())
    sfp["parsl_config"] = laptop["parsl_config"]
    (work / "bps.yaml").write_text((ROOT / "config" / "bps_laptop.yaml").read_text())
    (work / "bps_sfp.yaml").write_text(yaml.safe_dump(sfp, sort_keys=False))
    unset = ("BPS_WMS_SERVICE_CLASS", "GEN3WF_DEMO_REPO", "VIRTUAL_ENV")
    base_env = {key: value for key, value in os.environ.items() if key not in unset}
    # Runs are listed in an index of the module's own, not the user's.
    base_env["GEN3WF_RUN_INDEX"] = str(base / "runs.txt")
    session = Session(work, repo, scratch, getpass.getuser())

    shell = [block for block in RUN_BLOCKS if block.language != "python"]
    user_area = [block for block in shell if re.search(r"^ln -s ", block.text, re.MULTILINE)]
    first = next(block for block in shell if block.doc == "README.md")
    assert any(SUBMIT_LINE.match(line) for line in shell_lines(first)), first.text
    rest = [block for block in shell if block not in user_area and block is not first]
    for block in [*user_area, first, *rest]:
        result, env = run_shell_block(block, session, session.env if block in rest else base_env, state)
        session.results[block.id] = result
        if block is first:
            assert session.submit_dir, f"README's first block printed no submit dir:\n{session.submit_output}"
            session.env = env
    run_python_blocks([block for block in RUN_BLOCKS if block.language == "python"], session, state)
    return session


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.id for block in RUN_BLOCKS])
def test_command_block(block: Block, docs_session: Session) -> None:
    """The block runs here and does what the docs say."""
    result = docs_session.results[block.id]
    assert result.error is None, f"{block.id}: {result.error}"
    if block.language == "python":
        for statement in result.statements:
            assert statement.error is None, f"{block.id}: >>> {statement.source}\n{statement.error}"
            got = {normalized(line) for line in statement.output.splitlines()}
            for sample in statement.sample:
                assert normalized(sample) in got, (
                    f"{block.id}: >>> {statement.source}\nthe docs show {sample!r}; it printed:\n"
                    f"{statement.output}"
                )
            for pattern, value in PY_VALUES:
                if re.search(pattern, statement.source):
                    assert statement.value and re.search(value, statement.value), (
                        statement.source,
                        statement.value,
                    )
        return
    lines = shell_lines(block)
    assert len(result.lines) == len(lines), f"{block.id}: stopped at {result.lines[-1]}"
    for ran in result.lines:
        expect = expectation(ran.line)
        where = f"{block.id}: {ran.line}\n$ {ran.command}\n{ran.output}"
        assert ran.returncode == expect.returncode(docs_session), where
        for word in expect.words:
            word = word.format(submit_dir=docs_session.submit_dir, user=docs_session.user)
            assert word in ran.output, f"{word!r} not in the output of {where}"
        if expect.check is not None:
            expect.check(ran, docs_session)
