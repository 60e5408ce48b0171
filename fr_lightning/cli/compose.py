"""Compose ``--config`` files: ``extends`` and appended ``trainer.callbacks``.

Two departures from plain LightningCLI, applied to the command line before jsonargparse sees it:

* **Appended callbacks.** Plain LightningCLI replaces a list given by an earlier ``--config``
  with the one of a later file, so ``--config a.yaml --config b.yaml`` keeps only ``b.yaml``'s
  ``trainer.callbacks``. Here each file's ``trainer.callbacks`` is *appended* to those of the
  files before it (in command-line order), so method fragments stack:
  ``--config recipes/arcface.yaml --config configs/methods/lowres.yaml --config configs/methods/kd.yaml``.
  The command line itself keeps LightningCLI's rules: ``--trainer.callbacks+=...`` appends,
  ``--trainer.callbacks=[...]`` replaces the whole list, ``--trainer.callbacks.init_args.x=...``
  sets ``x`` on the last callback. Every other key (lists included) is still replaced by the
  later file.
* **``extends``.** A config file may start with ``extends: [other.yaml, ...]`` (paths relative to
  the file). It stands for ``--config other.yaml ... --config <the file without extends>``, so a
  recipe can be a base recipe plus method fragments plus its own overrides.

A file that needs no rewriting is passed on by its path; one that does (an ``extends`` file's
own part, or a file whose callbacks follow earlier ones) is passed as a YAML string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fr_lightning.cli.mistakes import yaml_error_message

#: The top-level key naming the config files a file builds on.
EXTENDS = "extends"
CONFIG_FLAGS = ("--config", "-c")


@dataclass
class Composed:
    """The rewritten command line and the config files it reads, in order (for error messages)."""

    argv: list[str]
    files: list[Path] = field(default_factory=list)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(yaml_error_message(path, err)) from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _sources(path: Path, chain: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any], bool]]:
    """``(path, data, rewritten)`` for ``path`` and, first, every file it extends (depth first)."""
    if path.resolve() in [p.resolve() for p in chain]:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ValueError(f"{path}: `{EXTENDS}` forms a cycle ({cycle})")
    data = _load(path)
    bases = data.pop(EXTENDS, None)
    if bases is None:
        return [(path, data, False)]
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ValueError(f"{path}: `{EXTENDS}` must be a file name or a list of file names, got {bases!r}")
    out: list[tuple[Path, dict[str, Any], bool]] = []
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ValueError(f"{path}: `{EXTENDS}` names {base!r}, but {base_path} does not exist")
        out += _sources(base_path, (*chain, path))
    return out + [(path, data, True)]


def _callbacks(data: dict[str, Any], path: Path) -> list[Any] | None:
    """``trainer.callbacks`` of a config (None when it sets none)."""
    trainer = data.get("trainer")
    if not isinstance(trainer, dict) or "callbacks" not in trainer:
        return None
    value = trainer["callbacks"]
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{path}: trainer.callbacks must be a list of class_path/init_args entries")
    return list(value)


def _config_values(argv: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, value)`` of every ``--config`` argument (``end`` exclusive)."""
    found = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            found.append((i, i + 2, argv[i + 1]))
            i += 2
            continue
        if arg.startswith("--config="):
            found.append((i, i + 1, arg.split("=", 1)[1]))
        i += 1
    return found


def compose_files(paths: list[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """The configs ``--config p1 --config p2 ...`` stands for: ``extends`` expanded, callbacks appended.

    For tools that read recipes without the CLI (merge the returned mappings in order).
    """
    out: list[tuple[Path, dict[str, Any]]] = []
    stacked: list[Any] = []
    for p in paths:
        for source, data, _ in _sources(Path(p)):
            callbacks = _callbacks(data, source)
            if callbacks is not None:
                stacked = stacked + callbacks
                data = {**data, "trainer": {**data["trainer"], "callbacks": list(stacked)}}
            out.append((source, data))
    return out


def compose(argv: list[str]) -> Composed:
    """Rewrite the ``--config`` arguments of ``argv`` (see the module docstring).

    Raises:
        ValueError: a config file is not YAML, ``extends`` names a missing file or forms a cycle,
            or ``trainer.callbacks`` is not a list. The message names the file.
    """
    out: list[str] = []
    files: list[Path] = []
    stacked: list[Any] = []
    pos = 0
    for start, end, value in _config_values(argv):
        out += argv[pos:start]
        pos = end
        path = Path(value)
        if not path.is_file():
            out += argv[start:end]  # a YAML string or a missing file: jsonargparse reports it
            continue
        for source, data, rewritten in _sources(path):
            files.append(source)
            callbacks = _callbacks(data, source)
            if callbacks is not None and stacked:
                data = {**data, "trainer": {**data["trainer"], "callbacks": stacked + callbacks}}
                rewritten = True
            if callbacks is not None:
                stacked = stacked + callbacks
            if rewritten:
                out += ["--config", yaml.safe_dump(data, sort_keys=False)]
            else:
                out += ["--config", str(source)]
    out += argv[pos:]
    return Composed(out, files)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Later files override earlier ones key by key (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config(paths: list[str | Path]) -> dict[str, Any]:
    """Read and merge config files in order, as repeated ``fr fit --config`` composes them
    (``extends`` expanded, ``trainer.callbacks`` appended): the model description that
    ``fr export|embed|verify|eval --config`` hand to :func:`fr_lightning.deploy.load_model`.

    Raises:
        FileNotFoundError: a file does not exist.
    """
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
    merged: dict[str, Any] = {}
    for _, data in compose_files(list(paths)):
        merged = _merge(merged, data)
    return merged
