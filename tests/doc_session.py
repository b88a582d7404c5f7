"""Running the command blocks of the docs: a session (its working
directory, environment and run), shell lines, and Python blocks (how they
run: `test_docs_e2e`)."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from doc_blocks import Block

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LINE_TIMEOUT = 120.0
"""Seconds a line of a shell block may take (a ``bps submit``: 3 times that)."""


@dataclasses.dataclass
class LineResult:
    """One line of a block, as run (or as not run, and why)."""

    line: str
    """As the document has it."""
    command: str = ""
    """As run, placeholders replaced."""
    returncode: int | None = None
    output: str = ""
    seconds: float = 0.0
    cwd: str = ""
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    """The exported environment after it."""
    note: str = ""
    """Why it did not run, if it did not."""


@dataclasses.dataclass
class Statement:
    """One statement of a Python block, as run."""

    source: str
    sample: list[str]
    output: str = ""
    value: str | None = None
    error: str | None = None


@dataclasses.dataclass
class BlockResult:
    lines: list[LineResult] = dataclasses.field(default_factory=list)
    statements: list[Statement] = dataclasses.field(default_factory=list)
    error: str | None = None


@dataclasses.dataclass
class Session:
    """The module's working directory, its run, and every block's result."""

    work: Path
    repo: Path
    scratch: Path
    user: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    submit_dir: str | None = None
    submit_output: str = ""
    results: dict[str, BlockResult] = dataclasses.field(default_factory=dict)

    def placeholders(self) -> dict[str, str | None]:
        return {
            "submit_dir": self.submit_dir,
            "working_dir": str(self.scratch),
            "user_name": self.user,
            "repo": str(self.repo),
        }


PLACEHOLDERS: list[tuple[str, str]] = [
    (r"<the Submit dir it printed>", "submit_dir"),
    (r"\bSUBMIT_DIR\b", "submit_dir"),
    (r"<working_dir>", "working_dir"),
    (r"<user_name>", "user_name"),
    (r"/path/to/repo(?=/|\s|$)", "repo"),
]
"""Placeholder (a regular expression) -> the `Session.placeholders` key of
its value."""

SUBSTITUTIONS: list[tuple[str, str]] = [
    # README's first block: "config/bps_laptop.yaml: threads only".
    (r"(?<![\w/])config/bps_sfp\.yaml\b", "config/bps_laptop.yaml"),
]
"""Literal replacements of a file the docs name by another that runs here."""

SUBMIT_LINE = re.compile(r"^bps (?:--no-log-tty )?submit (\S+)")


def substitute(line: str, values: dict[str, str | None]) -> str:
    """The line with placeholders replaced by their shell-quoted values."""
    for pattern, replacement in SUBSTITUTIONS:
        line = re.sub(pattern, replacement, line)
    for pattern, key in PLACEHOLDERS:
        if re.search(pattern, line):
            value = values[key]
            if value is None:
                raise AssertionError(f"{line!r}: no value for {key} yet")
            line = re.sub(pattern, lambda _m, v=value: shlex.quote(v), line)
    words = " ".join(shlex.split(line, comments=True))
    left = re.findall(r"<[^<>]*>|/path/to/\S*", words)
    assert not left, f"{line!r}: placeholder(s) {left} have no value here (see PLACEHOLDERS)"
    return line


def shell_lines(block: Block) -> list[str]:
    """The commands of a shell block: no blank or comment lines, continued
    lines joined, a console block's ``$`` lines only."""
    lines: list[str] = []
    pending = ""
    for raw in block.text.splitlines():
        if block.language == "console":
            if not raw.startswith("$ "):
                continue
            raw = raw[2:]
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def run_line(command: str, cwd: str, env: dict[str, str], state: Path, timeout: float) -> LineResult:
    """Run one line in its own bash (``set -e``), in a session of its own
    (killed whole after ``timeout``); return its status, output, and the
    working directory and exported environment it leaves."""
    cwd_file, env_file = state / "cwd", state / "env"
    for path in (cwd_file, env_file):
        path.unlink(missing_ok=True)
    script = (
        f"trap 'pwd > {shlex.quote(str(cwd_file))}; env -0 > {shlex.quote(str(env_file))}' EXIT\n"
        f"set -e\n{command}\n"
    )
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env={**env, "PWD": cwd},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += f"\n[killed after {timeout:.0f} s]"
    result = LineResult(command, command, proc.returncode, output, time.monotonic() - start)
    result.cwd = cwd_file.read_text().strip() if cwd_file.exists() else cwd
    if env_file.exists():
        pairs = (item.partition("=") for item in env_file.read_text().split("\0") if "=" in item)
        result.env = {key: value for key, _, value in pairs}
    else:
        result.env = env
    return result


# --- Python blocks ------------------------------------------------------------------

_PY_RUNNER = r"""
import ast, builtins, json, os, re, signal, sys, tempfile, traceback

blocks, bindings, out_path = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]

def alarm(signum, frame):
    raise TimeoutError("statement took too long")

signal.signal(signal.SIGALRM, alarm)
results = []
for block in blocks:
    namespace = {"__name__": "__main__"}
    done = []
    results.append(done)
    for source, mode in block:
        record = {"output": "", "value": None, "error": None}
        done.append(record)
        # What the statement prints, at the level of the file descriptor (as
        # a terminal would show it: `status(file=sys.stdout)` binds the
        # original stream).
        sys.stdout.flush()
        buffer, saved = tempfile.TemporaryFile(mode="w+"), os.dup(1)
        os.dup2(buffer.fileno(), 1)
        try:
            tree = ast.parse(source, mode="exec")
            free = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            for name in sorted(free - set(namespace) - set(dir(builtins))):
                if name in bindings["values"]:
                    namespace[name] = bindings["values"][name]
                elif name in bindings["expressions"]:
                    namespace[name] = eval(bindings["expressions"][name], namespace)
            signal.alarm(bindings["timeout"])
            if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
                value = eval(compile(ast.Expression(tree.body[0].value), "<doc>", "eval"), namespace)
                record["value"] = None if value is None else repr(value)
                if value is not None and mode == "prompt":
                    print(repr(value))
            else:
                exec(compile(tree, "<doc>", "exec"), namespace)
            signal.alarm(0)
            comment = source.partition("#")[2]
            target = source.split("=")[0].strip() if " = " in source.split("#")[0] else None
            if target and target.isidentifier():
                for attribute in re.findall(r"\.(\w+)", comment):
                    if not hasattr(namespace[target], attribute):
                        raise AttributeError(f"{target} has no .{attribute}, as its comment says")
        except BaseException:
            signal.alarm(0)
            record["error"] = traceback.format_exc()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        buffer.seek(0)
        record["output"] = buffer.read()
        buffer.close()
        if record["error"]:
            break
with open(out_path, "w") as f:
    json.dump(results, f)
"""


def python_statements(block: Block) -> list[Statement]:
    """A block's statements and, at a prompt, the sample output under each."""
    if ">>> " not in block.text:
        tree = ast.parse(block.text)
        lines = block.text.splitlines()
        return [Statement("\n".join(lines[node.lineno - 1 : node.end_lineno]), []) for node in tree.body]
    statements: list[Statement] = []
    for raw in block.text.splitlines():
        if raw.startswith(">>> "):
            statements.append(Statement(raw[4:], []))
        elif raw.startswith("... ") and statements:
            statements[-1].source += "\n" + raw[4:]
        elif raw.strip() and statements:
            statements[-1].sample.append(raw)
    return statements


PY_BINDINGS = {"name": "graph.get_jobs('isr')[0]"}
"""Names the Python blocks use without defining them: Python expressions
evaluated in the block's namespace (``submit_dir`` is the module's run)."""


def run_python_blocks(blocks: list[Block], session: Session, state: Path) -> None:
    parsed = [python_statements(block) for block in blocks]
    payload = [
        [[s.source, "prompt" if ">>> " in block.text else "script"] for s in statements]
        for block, statements in zip(blocks, parsed, strict=True)
    ]
    bindings = {
        "values": {"submit_dir": session.submit_dir},
        "expressions": PY_BINDINGS,
        "timeout": int(LINE_TIMEOUT),
    }
    out = state / "python.json"
    runner = state / "run_python_blocks.py"
    runner.write_text(_PY_RUNNER)
    proc = run_line(
        shlex.join([sys.executable, str(runner), json.dumps(payload), json.dumps(bindings), str(out)]),
        str(session.work),
        session.env,
        state,
        LINE_TIMEOUT * 3,
    )
    done = json.loads(out.read_text()) if out.exists() else None
    for index, (block, statements) in enumerate(zip(blocks, parsed, strict=True)):
        result = BlockResult(statements=statements)
        if done is None:
            result.error = f"the Python runner failed (exit {proc.returncode}):\n{proc.output[-3000:]}"
        else:
            for statement, record in zip(statements, done[index], strict=False):
                statement.output = record["output"]
                statement.value = record["value"]
                statement.error = record["error"]
            if len(done[index]) < len(statements) and not any(s.error for s in statements):
                result.error = "not every statement ran"
        session.results[block.id] = result


def normalized(line: str) -> str:
    """A line's words, numbers other than 0 as N: sample tables of a bigger
    repository compare with this one's."""
    return " ".join("N" if re.fullmatch(r"\d+(\.\d+)?", w) and float(w) != 0 else w for w in line.split())


PY_VALUES: list[tuple[str, str]] = [
    (r"\.wait\(\)", r"RunState\.SUCCEEDED"),
    (r"^graph\.run\(\)", r"RunState\.SUCCEEDED"),
    (r"\.get_jobs\(.*status=\"failed\"", r"^\[\]$"),
]
"""Statement pattern -> what the repr of its value must match (the module's
runs succeed)."""
