"""Reading a bps file's ctrl_bps_parsl site, with `~.ctrl_bps_parsl_sites`'s table.

`site_translation` finds ``computeSite`` and ``site.<computeSite>``, checks
the section's keys against its class and translates it; `merged_parsl_config`
is the rule where the file has a ``parsl_config`` section too (its keys win,
key by key).  Everything this plug-in cannot take stops ``bps submit``
before the QuantumGraph is built, with one `ParslConfigError` line: a site
key or class it does not take, a user's own ``SiteConfig`` subclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ParslConfigError
from .ctrl_bps_parsl_multi import SITE_CLASSES
from .ctrl_bps_parsl_sites import (
    DOC_PAGE,
    REFUSED_KEYS,
    REQUIRED,
    SITE_PACKAGE,
    SiteClass,
    SiteContext,
    SiteKey,
    SiteSection,
    SiteTranslation,
)

__all__ = [
    "merged_parsl_config",
    "origin_line",
    "relabel_error",
    "site_class_for",
    "site_parsl_config",
    "site_translation",
    "workflow_name",
]

_BY_PATH = {
    path: site_class for site_class in SITE_CLASSES for path in (site_class.path, *site_class.aliases)
}


def site_class_for(site: str, class_path: str) -> SiteClass:
    """The table's entry for a ``site.<site>.class`` value.

    Raises
    ------
    ParslConfigError
        One line: a class of ctrl_bps_parsl's this plug-in does not know,
        or a class elsewhere.
    """
    if class_path in _BY_PATH:
        return _BY_PATH[class_path]
    if class_path.startswith(SITE_PACKAGE + "."):
        supported = ", ".join(site_class.path.removeprefix(SITE_PACKAGE + ".") for site_class in SITE_CLASSES)
        raise ParslConfigError(
            f"site.{site}.class: {class_path} is not a ctrl_bps_parsl site class desc.gen3_workflow knows "
            f"(supported, under {SITE_PACKAGE}: {supported})"
        )
    raise ParslConfigError(
        f"site.{site}.class {class_path} is not a ctrl_bps_parsl site class this plug-in knows; express it "
        f"with parsl_config: executor/provider/... ({DOC_PAGE})"
    )


_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


def _ctrl_bps_job_keys() -> frozenset[str]:
    """The per-job keys ctrl_bps itself reads from ``site.<computeSite>``
    (``requestMemory``, ``numberOfRetries``, ...): its, not the site class's."""
    from lsst.ctrl.bps import GenericWorkflowJob

    return frozenset(
        re.sub(r"_(\w)", lambda match: match.group(1).upper(), field.name)
        for field in dataclasses.fields(GenericWorkflowJob)
    )


def _refuse_unknown(where: str, key: Any, names: tuple[str, ...]) -> None:
    """One line for a key the class does not take: why, or the closest name."""
    supported = ", ".join(names)
    reason = REFUSED_KEYS.get(key)
    if reason is not None:
        raise ParslConfigError(
            f"{where}.{key}: not supported by desc.gen3_workflow: {reason} (supported: {supported})"
        )
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ParslConfigError(
        f"{where}.{key}: not supported by desc.gen3_workflow{hint} (supported: {supported})"
    )


def _fits(value: Any, kind: type) -> bool:
    """Whether a value is of a key's kind: a float takes an integer too
    (2 GB), and no kind but bool takes a bool."""
    kinds = (int, float) if kind is float else (kind,)
    return isinstance(value, kinds) and (kind is bool or not isinstance(value, bool))


def _checked(where: str, site_key: SiteKey, value: Any) -> Any:
    """A key's value (its default when absent) checked against its type;
    a mapping's own keys checked and given their defaults likewise."""
    if value is None:
        return None
    if not _fits(value, site_key.kind):
        unit = f" of {site_key.unit}" if site_key.unit else ""
        hint = ' (quote times in YAML: "05:00:00")' if site_key.name.endswith("walltime") else ""
        kind = "a whole number" if site_key.kind is int and unit else _TYPE_NAMES[site_key.kind]
        raise ParslConfigError(f"{where}: expected {kind}{unit}, got {value!r}{hint}")
    if not site_key.subkeys:
        return value
    names = tuple(key.name for key in site_key.subkeys)
    for key in value:
        if key not in names:
            _refuse_unknown(where, key, names)
    return {
        key.name: _checked(f"{where}.{key.name}", key, value.get(key.name, key.default))
        for key in site_key.subkeys
    }


def _site_values(name: str, site_class: SiteClass, section: Mapping[str, Any]) -> SiteSection:
    """The section's keys checked against the class, its defaults filled in."""
    taken = {key.name: key for key in site_class.keys}
    job_keys = _ctrl_bps_job_keys()
    for key, value in section.items():
        if key == "class" or key in taken:
            continue
        # ctrl_bps's own environment is a mapping of variables; the site's a bool.
        if key in job_keys and not (key == "environment" and isinstance(value, bool)):
            continue
        _refuse_unknown(f"site.{name}", key, site_class.key_names)
    values: SiteSection = {}
    for site_key in site_class.keys:
        value = section.get(site_key.name, site_key.default)
        if site_key.name == "environment" and not isinstance(value, bool):
            value = site_key.default  # ctrl_bps's mapping of variables, not the site's flag
        if value is REQUIRED:
            raise ParslConfigError(f"site.{name}.{site_key.name}: required by {site_class.path}; missing")
        values[site_key.name] = _checked(f"site.{name}.{site_key.name}", site_key, value)
    return values


def site_parsl_config(name: str, section: Mapping[str, Any], workflow_name: str = "bps") -> SiteTranslation:
    """Translate a ctrl_bps_parsl site section into ``parsl_config`` keys.

    Parameters
    ----------
    name : `str`
        The site's name (``computeSite``).
    section : `~collections.abc.Mapping`
        ``site.<name>``, as read from the bps file (``class`` included).
    workflow_name : `str`, optional
        ctrl_bps_parsl's workflow name (``project.campaign``), which names
        Slurm jobs of a ``singleton`` site.

    Returns
    -------
    translation : `SiteTranslation`
        Our keys, and the site key each came from.

    Raises
    ------
    ParslConfigError
        One line naming the site key or class that cannot be taken.
    """
    class_path = section.get("class")
    if not isinstance(class_path, str) or not class_path:
        raise ParslConfigError(
            f"site.{name}.class: expected a ctrl_bps_parsl site class name, got {class_path!r}"
        )
    site_class = site_class_for(name, class_path)
    values = _site_values(name, site_class, section)
    parsl_config = site_class.translate(values, SiteContext(name, workflow_name))
    sources = _sources(site_class, section, parsl_config) | _entry_sources(site_class, section, parsl_config)
    return SiteTranslation(name, class_path, parsl_config, sources)


_OUR_KEY_SOURCES = {
    "nodes_per_block": ("nodes", "nodes_per_block"),
    "max_workers": ("cores", "tasks_per_node"),
    "cores_per_node": ("cores_per_node", "tasks_per_node"),
    "monitoring": ("monitorEnable",),
    "worker_init": ("worker_init", "commandPrefix", "environment"),
    "scheduler_options": ("scheduler_options", "singleton"),
}


def _sources(
    site_class: SiteClass, section: Mapping[str, Any], parsl_config: Mapping[str, Any]
) -> dict[str, str]:
    """For each of our keys, the site key (given, else of the class) it came from."""
    names = set(site_class.key_names)
    sources = {}
    for ours in parsl_config:
        candidates = [key for key in _OUR_KEY_SOURCES.get(ours, (ours,)) if key in names]
        given = [key for key in candidates if key in section]
        sources[ours] = (given or candidates or ["class"])[0]
    return sources


def _entry_sources(
    site_class: SiteClass, section: Mapping[str, Any], parsl_config: Mapping[str, Any]
) -> dict[str, str]:
    """For each key of each translated ``executors`` entry, as
    ``executors[NAME].KEY``, the site key it came from (``small_walltime``,
    ``small.memory``, ...): the first given, else the last the class takes
    (the templates list the fallback, e.g. the site-wide key, last)."""

    def taken(key: str) -> bool:
        outer, _, inner = key.partition(".")
        return outer in site_class.key_names and (
            not inner
            or any(sub.name == inner for k in site_class.keys if k.name == outer for sub in k.subkeys)
        )

    def given(key: str) -> bool:
        outer, _, inner = key.partition(".")
        value = section.get(outer)
        return outer in section and (not inner or (isinstance(value, Mapping) and inner in value))

    sources = {}
    for entry in parsl_config.get("executors", ()):
        for ours in entry:
            templates = site_class.entry_sources.get(ours, _OUR_KEY_SOURCES.get(ours, (ours,)))
            candidates = [key for key in (t.format(name=entry["name"]) for t in templates) if taken(key)]
            chosen = [key for key in candidates if given(key)] or candidates[-1:] or ["class"]
            sources[f"executors[{entry['name']}].{ours}"] = chosen[0]
    return sources


def workflow_name(config: Any) -> str:
    """ctrl_bps_parsl's name for a workflow: ``project.campaign`` (campaign
    defaulting to ``operator``), or ``uniqProcName`` without a project."""

    def value(key: str) -> Any:
        found, found_value = config.search(key, opt={"default": None})
        return found_value if found else None

    project = value("project")
    if project is None:
        return str(value("uniqProcName") or "bps")
    return f"{project}.{value('campaign') or value('operator')}"


def site_translation(config: Any) -> SiteTranslation | None:
    """The translation of a bps configuration's ctrl_bps_parsl site, if it
    selects one: ``computeSite`` set and ``site.<computeSite>`` holding a
    ``class``.  A site section without ``class`` is ctrl_bps's own per-site
    job settings and is left to it.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The run's configuration.

    Raises
    ------
    ParslConfigError
        One line naming the site key or class that cannot be taken.
    """
    found, name = config.search("computeSite", opt={"default": None})
    if not found or not name:
        return None
    found, section = config.search(f".site.{name}", opt={"default": None})
    if not found or not hasattr(section, "items") or "class" not in section:
        return None
    translation = site_parsl_config(str(name), _read_values(section), workflow_name(config))
    # Their one key outside the site: the level of parsl's log (ours: what reaches the terminal).
    found, level = config.search(".parsl.log_level", opt={"default": None})
    if found and level is not None:
        level = str(level).upper()
        translation.parsl_config["log_level"] = _LOG_LEVEL_NAMES.get(level, level)
        translation.sources["log_level"] = "parsl.log_level"
    return translation


_LOG_LEVEL_NAMES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
"""ctrl_bps_parsl's ``parsl.log_level`` words that Python spells otherwise."""


def _read_values(section: Any, path: str = "") -> dict[str, Any]:
    """A section's values as ctrl_bps_parsl reads them: environment
    variables expanded and {variables} replaced, as get_bps_config_value
    does, in the site's mappings too (Ccin2p3's ``small.partition``)."""
    options = {"expandEnvVars": True, "replaceVars": True}
    values = {}
    for key in section[path[1:]] if path else section:
        raw = section[f"{path[1:]}.{key}"] if path else section[key]
        if hasattr(raw, "items"):
            values[key] = _read_values(section, f"{path}.{key}")
        else:
            values[key] = section.search(f"{path}.{key}" if path else key, opt=options)[1]
    return values


def merged_parsl_config(
    translation: SiteTranslation, parsl_config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The rule where a bps file has both: the site's translation, then
    every key of the file's own ``parsl_config`` in place of the site's.

    An ``executors`` list of the file's replaces the translated one whole.
    Otherwise a key of the file's also replaces the translated entries'
    values of it: at the top it is only their default, and the file's
    ``walltime`` must not lose to a TripleSlurm's ``small_walltime``.
    """
    own = dict(parsl_config or {})
    merged = {**translation.parsl_config, **own}
    entries = translation.parsl_config.get("executors")
    if entries and "executors" not in own:
        merged["executors"] = [
            {key: value for key, value in entry.items() if key == "name" or key not in own}
            for entry in entries
        ]
    return merged


def origin_line(translation: SiteTranslation, parsl_config: Mapping[str, Any] | None) -> str:
    """Where merged settings came from, for ``bps ping``: the site, and the
    ``parsl_config`` keys that replaced or added to its translation."""
    own = sorted(parsl_config or {})
    if not own:
        return translation.origin
    return f"{translation.origin}, with parsl_config keys over it: {', '.join(own)}"


def relabel_error(
    error: ParslConfigError, translation: SiteTranslation, parsl_config: Mapping[str, Any] | None
) -> ParslConfigError:
    """A check of merged settings, naming the site key a bad value came from
    (``site.NAME.KEY (as parsl_config.OURS): ...``) unless the file's own
    ``parsl_config`` gave it; ``executors[NAME].KEY`` in an entry of the
    site's executors."""
    match = re.match(r"^parsl_config\.((?:executors\[([\w-]+)\]\.)?(\w+)):", str(error))
    if match is None:
        return error
    ours, entry, key = match.groups()
    own = parsl_config or {}
    source = translation.sources.get(ours) or translation.sources.get(key)
    if source is None or key in own or (entry is not None and "executors" in own):
        return error
    where = source if source.startswith("parsl.") else f"site.{translation.site}.{source}"
    return ParslConfigError(f"{where} (as parsl_config.{ours}):{str(error)[match.end() :]}")
