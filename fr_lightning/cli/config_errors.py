"""Point a config error at the YAML file (and dotted key) that caused it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


def config_files(args: list[str]) -> list[Path]:
    """The files passed with ``--config`` / ``-c`` in ``args``, in order."""
    files: list[Path] = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(Path(args[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return files


def _flatten(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        out: list[tuple[str, Any]] = []
        for key, value in node.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(node, list):
        out = []
        for i, value in enumerate(node):
            out += _flatten(value, f"{prefix}[{i}]")
        return out
    return [(prefix, node)]


def culprits(message: str) -> tuple[set[str], set[str]]:
    """The innermost offending option names and class paths in a jsonargparse error message."""
    keys = set(re.findall(r"Option '([\w.\-]+)' is not accepted", message))
    parser_keys = re.findall(r'Parser key "([\w.\-]+)"', message)
    if not keys and parser_keys:
        keys.add(parser_keys[-1])
    missing = re.findall(r"has no attribute '([\w]+)'", message)
    class_paths = re.findall(r"class_path '([\w.]+)'", message)
    values = set(missing)
    if missing and class_paths:
        values.add(class_paths[-1])
    return keys, values


def locate(message: str, files: list[Path], argv: list[str] | None = None) -> list[str]:
    """Where the error in ``message`` comes from: ``file: key = value`` or the command-line argument.

    Later sources override earlier ones, so the command line is searched first, then the files
    from last to first; the first source mentioning the culprit is reported.
    """
    keys, values = culprits(message)
    if not keys and not values:
        return []
    for arg in argv or []:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            if key.rsplit(".", 1)[-1] in keys or value in values:
                return [f"command line: {arg}"]
    for path in reversed(files):
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            return [f"{path}: cannot be read as YAML ({err})"]
        hits = []
        for key, value in _flatten(data):
            leaf = key.rsplit(".", 1)[-1]
            named_class = isinstance(value, str) and (value in values or value.rsplit(".", 1)[-1] in values)
            if (leaf in keys and leaf != "class_path") or (leaf == "class_path" and named_class):
                hits.append(f"{path}: {key} = {value!r}")
        if hits:
            return hits
    return []
