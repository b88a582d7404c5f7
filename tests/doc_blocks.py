"""The command blocks of README.md and doc/user_guide.md, and the markers
that say why one is not run.

The rule for command blocks
---------------------------
A command block is a fenced block with no language, or ``sh``, ``bash``,
``shell``, ``console`` or ``python``.  Each one is RUN by this module
(`test_command_block`, one test per block) unless the line before its fence
is ``<!-- not run here: REASON -->`` with REASON one of `NOT_RUN_REASONS`, a
closed list; each reason also checks that the block is what it says (a block
marked "needs CVMFS/EUPS" must use CVMFS or EUPS, and so on), so a marker
cannot be an arbitrary excuse.  Sample output goes in ``text`` fences, bps
files in ``yaml`` fences (`test_user_guide_parsl_config_examples_are_accepted`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "doc/user_guide.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
COMMAND_LANGUAGES = ("", "sh", "bash", "shell", "console", "python")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced command block of a document."""

    doc: str
    line: int
    """Line number of its opening fence."""
    language: str
    text: str
    marker: str | None
    """The line before the fence."""

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def not_run_reason(self) -> str | None:
        match = re.fullmatch(r"<!-- not run here: (.+?) -->", self.marker or "")
        return match.group(1) if match else None


def command_blocks(doc: str) -> list[Block]:
    """The command blocks of one document, in order."""
    text = (ROOT / doc).read_text()
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) not in COMMAND_LANGUAGES:
            continue
        before = text[: match.start()].rstrip().splitlines()
        blocks.append(
            Block(
                doc=doc,
                line=text.count("\n", 0, match.start()) + 1,
                language=match.group(1),
                text=match.group(2),
                marker=before[-1].strip() if before else None,
            )
        )
    return blocks


ALL_BLOCKS = [block for doc in DOCS for block in command_blocks(doc)]
RUN_BLOCKS = [block for block in ALL_BLOCKS if block.not_run_reason is None]


def _make_targets(block: str) -> str | None:
    makefile = (ROOT / "Makefile").read_text()
    rules = re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE)
    calls = [line.split()[1:2] for line in block.splitlines() if line.split()[:1] == ["make"]]
    if not calls:
        return "the block runs no make"
    for words in calls:
        target = words[0] if words else rules[0]  # `make` alone: the first rule
        if target not in rules:
            return f"the Makefile has no target {target!r}"
    if rules[0] != "setup":
        return f"`make` alone runs {rules[0]!r}, not the set-up"
    return None


def _eups(block: str) -> str | None:
    if not re.search(r"/cvmfs/|^setup ", block, re.MULTILINE):
        return "the block uses neither CVMFS nor EUPS"
    # What `setup -r . -j` does: the table puts this checkout's python/ and
    # bin/ first on the paths, and bin/ holds the commands.
    table = (ROOT / "ups" / "gen3_workflow.table").read_text()
    for variable, directory in (("PYTHONPATH", "python"), ("PATH", "bin")):
        if (
            f"envPrepend({variable}, ${{PRODUCT_DIR}}/{directory})" not in table
            or not (ROOT / directory).is_dir()
        ):
            return f"ups/gen3_workflow.table does not prepend {directory}/ to {variable}"
    for script in ("gen3wf-watch", "workflow_summary", "plot_jobs_history"):
        if not os.access(ROOT / "bin" / script, os.X_OK):
            return f"bin/{script} is missing"
    return None


def _network(block: str) -> str | None:
    if not re.search(r"\bgit clone\b|\bpip install\b", block):
        return "the block neither clones nor installs with pip"
    if "pip install -e ." in block and not (ROOT / "pyproject.toml").exists():
        return "no pyproject.toml to install"
    return None


def _slurm(block: str) -> str | None:
    return None if re.search(r"\b(salloc|srun|sbatch)\b", block) else "the block uses no Slurm allocation"


def _namespaces(block: str) -> str | None:
    if not re.search(r"slurm_cluster start .*--nodes", block):
        return "the block starts no multi-node test cluster"
    test = (ROOT / "tests" / "test_multinode_e2e.py").read_text()
    if '"salloc", "-N"' not in test:
        return "tests/test_multinode_e2e.py runs no bps submit inside salloc"
    return None


NOT_RUN_REASONS: dict[str, Callable[[str], str | None]] = {
    "needs a Slurm allocation at NERSC": _slurm,
    "needs root for network namespaces (tests/test_multinode_e2e.py runs this set-up)": _namespaces,
    "needs CVMFS/EUPS": _eups,
    "needs network (git clone / pip)": _network,
    "is make (apt-get and pip set-up; make test runs this suite)": _make_targets,
}
"""Why a command block may not run here, each with the check that the block
is what the reason says (an error message, or `None`)."""
