"""Turn a GenericWorkflowJob into a `JobCommand`: argument vector and
environment, as data.

ctrl_bps leaves three kinds of placeholder in a job's executable and
arguments (see ``lsst.ctrl.bps.transform._enhance_command``):

- ``{name}``: a value from the job's ``cmdvals``;
- ``<FILE:name>``: a file of the GenericWorkflow, used in place on a shared
  filesystem;
- ``<ENV:NAME>``: an environment variable, expanded on the worker.

The template is split into words *before* any value is substituted, so a
value from the bps file (a ``payloadName`` holding ``; rm -rf ~``, a data
query with quotes) always reaches the program as one literal argument; the
store keeps the words, and a shell sees them only through
`~desc.gen3_workflow.store.records.JobCommand.shell`, which quotes each one
and leaves only ``<ENV:NAME>`` for the shell to expand.  Placeholders that
name option lists (``{runPreCmdOpts}``, ``{extraRunQuantumOptions}``, ...)
stand alone as a word and are split into several words, again without a
shell.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowJob

from ..errors import CommandError
from ..store.records import ENV_NAME, JobCommand

__all__ = ["JobCommandBuilder", "is_option_list"]

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_FILE = re.compile(r"<FILE:([^>]+)>")
_ENV = re.compile(r"<ENV:([^>]*)>")
# Substitution may reveal further placeholders (a cmdval that refers to
# another); stop after this many rounds rather than loop on a cycle.
_MAX_ROUNDS = 10


def is_option_list(key: str) -> bool:
    """Whether placeholder ``key`` holds several command-line words.

    By ctrl_bps's naming, ``*PreCmdOpts``, ``*Options`` and ``extra*``
    values are option lists (``--long-log --log-level=VERBOSE``).
    """
    return key.startswith("extra") or key.endswith(("Opts", "Options"))


_MAX_CACHED = 100_000
"""Substituted words remembered at most (per-job values such as node ids
are not worth keeping)."""


@functools.lru_cache(maxsize=1024)
def _split_template(template: str) -> tuple[str, ...]:
    # Jobs of one label share one template, and option lists repeat: cache
    # the (slow) shlex split.
    return tuple(shlex.split(template))


@functools.lru_cache(maxsize=1024)
def _compiled(template: str) -> tuple[tuple[str, tuple[str, ...] | None, bool], ...]:
    """The template's words, each with the placeholders it names (`None`
    for a literal word) and whether it is an option list (split into
    several words once substituted)."""
    compiled = []
    for token in _split_template(template):
        keys = tuple(_PLACEHOLDER.findall(token))
        whole = _PLACEHOLDER.fullmatch(token)
        compiled.append((token, keys or None, bool(whole and is_option_list(whole.group(1)))))
    return tuple(compiled)


def _command_template(gwjob: GenericWorkflowJob) -> str:
    """The job's executable and arguments, placeholders unresolved."""
    return f"{gwjob.executable.src_uri} {gwjob.arguments or ''}"


class JobCommandBuilder:
    """Build the commands of the jobs of one GenericWorkflow.

    Parameters
    ----------
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow whose files ``<FILE:name>`` refers to.
    command_prepend : `~collections.abc.Callable`, optional
        Returns the ``commandPrepend`` words for a job label (e.g. a
        container launcher); none by default.
    """

    def __init__(
        self,
        generic_workflow: GenericWorkflow,
        command_prepend: Callable[[str], str] | None = None,
    ) -> None:
        self._workflow = generic_workflow
        self._command_prepend = command_prepend or (lambda label: "")
        self._file_uris: dict[str, str] = {}
        self._substituted: dict[tuple[str, tuple[str, ...]], str] = {}

    def words(self, gwjob: GenericWorkflowJob) -> list[str]:
        """The job's argument vector, ``<ENV:NAME>`` markers kept.

        Parameters
        ----------
        gwjob : `lsst.ctrl.bps.GenericWorkflowJob`
            The job.

        Returns
        -------
        words : `list` [`str`]
            Executable first, then its arguments.
        """
        if gwjob.executable is None or gwjob.executable.src_uri is None:
            raise CommandError(f"job {gwjob.name}: no executable")
        template = _command_template(gwjob)
        words = list(_split_template(self._command_prepend(gwjob.label)))
        cmdvals = gwjob.cmdvals
        for token, keys, option_list in _compiled(template):
            if keys is None:  # a literal word
                words.append(self._files(gwjob.name, token))
                continue
            value = self._substitute_cached(gwjob.name, token, keys, cmdvals)
            if option_list:
                words.extend(self._files(gwjob.name, w) for w in _split_template(value))
            else:
                words.append(self._files(gwjob.name, value))
        return words

    def _substitute_cached(
        self, job_name: str, token: str, keys: tuple[str, ...], cmdvals: Mapping[str, Any]
    ) -> str:
        """`_substitute`, remembered per token and values: jobs of a label
        mostly share them (only the node id differs), and a million jobs
        should not substitute the same text a million times."""
        try:
            values = tuple(str(cmdvals[key]) for key in keys)
        except KeyError:
            return self._substitute(job_name, token, cmdvals)  # says which key is missing
        if any("{" in value for value in values):
            # A value naming further placeholders: their values are not in the key.
            return self._substitute(job_name, token, cmdvals)
        cache_key = (token, values)
        found = self._substituted.get(cache_key)
        if found is None:
            found = self._substituted[cache_key] = self._substitute(job_name, token, cmdvals)
            if len(self._substituted) > _MAX_CACHED:
                self._substituted.clear()
        return found

    def command(self, gwjob: GenericWorkflowJob) -> JobCommand:
        """The job's command: its environment and argument vector.

        Parameters
        ----------
        gwjob : `lsst.ctrl.bps.GenericWorkflowJob`
            The job.

        Returns
        -------
        command : `JobCommand`
            The job's own environment variables (sorted by name) and words.

        Raises
        ------
        CommandError
            If a placeholder, file or variable name cannot be resolved.
        """
        words = self.words(gwjob)
        self.check_env_markers(gwjob.name, words)
        return JobCommand(tuple(words), self.environment(gwjob))

    def environment(self, gwjob: GenericWorkflowJob) -> tuple[tuple[str, str], ...]:
        """The job's own environment variables, sorted by name."""
        return tuple(
            (self._env_name(gwjob.name, str(k), str(k)), str(v))
            for k, v in sorted((gwjob.environment or {}).items())
        )

    def check_env_markers(self, job_name: str, words: list[str]) -> None:
        """Raise `CommandError` for an ``<ENV:NAME>`` whose name is not one."""
        for word in words:
            if "<ENV:" in word:
                for name in _ENV.findall(word):
                    self._env_name(job_name, name, f"<ENV:{name}>")

    @staticmethod
    def placeholders(gwjob: GenericWorkflowJob) -> tuple[str, ...]:
        """The ``{name}`` placeholders of the job's executable and arguments."""
        template = _command_template(gwjob)
        return tuple(dict.fromkeys(key for _, keys, _ in _compiled(template) for key in keys or ()))

    def shared_words(self, gwjob: GenericWorkflowJob, varying: set[str]) -> list[str | None] | None:
        """The job's words, `None` for each word that names a ``varying``
        placeholder (jobs sharing this template fill those with
        `own_words`); `None` as a whole when the words cannot be shared
        (such a placeholder holds an option list, or a value names
        further placeholders)."""
        if gwjob.executable is None or gwjob.executable.src_uri is None:
            raise CommandError(f"job {gwjob.name}: no executable")
        template = _command_template(gwjob)
        compiled = _compiled(template)
        cmdvals = gwjob.cmdvals
        if any("{" in str(cmdvals.get(key, "")) for _, keys, _ in compiled for key in keys or ()):
            return None
        words: list[str | None] = list(_split_template(self._command_prepend(gwjob.label)))
        for token, keys, option_list in compiled:
            if keys is not None and varying.intersection(keys):
                if option_list:
                    return None
                words.append(None)
            elif keys is None:
                words.append(self._files(gwjob.name, token))
            else:
                value = self._substitute_cached(gwjob.name, token, keys, cmdvals)
                if option_list:
                    words.extend(self._files(gwjob.name, w) for w in _split_template(value))
                else:
                    words.append(self._files(gwjob.name, value))
        self.check_env_markers(gwjob.name, [w for w in words if w is not None])
        return words

    def placeholder_alone(self, gwjob: GenericWorkflowJob, varying: set[str]) -> str | None:
        """The placeholder, if the only word of the job's command that names
        a ``varying`` one is exactly that one placeholder (``{qgraphNodeId}``)."""
        template = _command_template(gwjob)
        holes = [
            (token, keys) for token, keys, _ in _compiled(template) if keys and varying.intersection(keys)
        ]
        if len(holes) != 1:
            return None
        token, keys = holes[0]
        return keys[0] if len(keys) == 1 and token == "{" + keys[0] + "}" else None

    def own_words(self, gwjob: GenericWorkflowJob, varying: set[str]) -> list[str]:
        """The job's words for the holes `shared_words` left, in order."""
        template = _command_template(gwjob)
        cmdvals = gwjob.cmdvals
        words = []
        for token, keys, _ in _compiled(template):
            if keys is not None and varying.intersection(keys):
                if token[0] == "{" and token[-1] == "}" and len(keys) == 1 and keys[0] in cmdvals:
                    value = str(cmdvals[keys[0]])  # the usual case: the token is one placeholder
                    if "{" in value:
                        value = self._substitute(gwjob.name, value, cmdvals)
                else:
                    value = self._substitute(gwjob.name, token, cmdvals)
                words.append(self._files(gwjob.name, value) if "<FILE:" in value else value)
        self.check_env_markers(gwjob.name, words)
        return words

    @staticmethod
    def _env_name(job_name: str, name: str, where: str) -> str:
        if not ENV_NAME.match(name):
            raise CommandError(f"job {job_name}: invalid environment variable name in {where!r}")
        return name

    @staticmethod
    def _substitute(job_name: str, text: str, cmdvals: Mapping[str, Any]) -> str:
        for _ in range(_MAX_ROUNDS):
            if "{" not in text:
                return text

            def value(match: re.Match[str]) -> str:
                key = match.group(1)
                if key not in cmdvals:
                    raise CommandError(f"job {job_name}: no value for placeholder {{{key}}}")
                return str(cmdvals[key])

            new = _PLACEHOLDER.sub(value, text)
            if new == text:
                return text
            text = new
        raise CommandError(
            f"job {job_name}: placeholders still unresolved after {_MAX_ROUNDS} rounds: {text}"
        )

    def _files(self, job_name: str, word: str) -> str:
        if "<FILE:" not in word:
            return word
        return _FILE.sub(lambda m: self._file_uri(job_name, m.group(1)), word)

    def _file_uri(self, job_name: str, name: str) -> str:
        # On a shared filesystem every job reads a file where it is, whether
        # or not ctrl_bps marked it for transfer.
        if name not in self._file_uris:
            try:
                gwfile = self._workflow.get_file(name)
            except KeyError:
                raise CommandError(f"job {job_name}: unknown workflow file <FILE:{name}>") from None
            if gwfile.src_uri is None:
                raise CommandError(f"job {job_name}: workflow file {name} has no location")
            self._file_uris[name] = str(gwfile.src_uri)
        return self._file_uris[name]
