"""What a run is: the resolved config as W&B sees it, the recipe name and the run's tags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["recipe_name", "run_config", "run_tags"]


def _plain(value: Any) -> Any:
    """JSON-friendly copy: dicts and lists kept, numbers/str/bool/None as is, anything else as str."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _short(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def recipe_name(config_files: Sequence[Any] | None) -> str:
    """The recipe of a run: the stem of the first ``--config`` file inside a ``recipes/`` folder,
    else of the first config file, else ``fr``."""
    paths = [Path(str(getattr(p, "absolute", p))) for p in (config_files or [])]
    for path in paths:
        if path.parent.name == "recipes":
            return path.stem
    return paths[0].stem if paths else "fr"


def _callback_entries(callbacks: Any) -> dict[str, dict[str, Any]]:
    """``trainer.callbacks`` (a list of ``{class_path, init_args}``) as ``{ClassName: init_args}``."""
    out: dict[str, dict[str, Any]] = {}
    for entry in callbacks or []:
        if not isinstance(entry, Mapping) or "class_path" not in entry:
            continue
        name = _short(entry["class_path"])
        key, k = name, 2
        while key in out:
            key, k = f"{name}#{k}", k + 1
        out[key] = _plain(entry.get("init_args") or {})
    return out


def run_config(config: Mapping[str, Any], methods: Sequence[str], recipe: str) -> dict[str, Any]:
    """The W&B run config of a resolved ``fr`` config.

    Keeps the CLI's own nesting, so a W&B key reads like the command-line key that sets it
    (``model.init_args.head.init_args.m`` <-> ``--model.init_args.head.init_args.m``), except
    ``trainer.callbacks``: a list is not browsable in W&B, so each callback's init args go to
    ``callbacks.<ClassName>`` (methods included). Adds ``methods`` (their names) and ``recipe``.
    """
    cfg = _plain(dict(config))
    files = cfg.pop("config", None)
    trainer = dict(cfg.get("trainer") or {})
    callbacks = _callback_entries(trainer.pop("callbacks", None))
    if "logger" in trainer:
        trainer["logger"] = _plain(trainer["logger"])
    cfg["trainer"] = trainer
    cfg["callbacks"] = callbacks
    cfg["methods"] = list(methods)
    cfg["recipe"] = recipe
    cfg["config_files"] = [str(f) for f in files or []]
    return cfg


def run_tags(config: Mapping[str, Any], methods: Sequence[str]) -> list[str]:
    """Tags of a run: ``method:<name>`` for each method, ``head:``, ``backbone:`` and ``data:``
    (the training source's class)."""
    model = (config.get("model") or {}).get("init_args") or {}
    data = (config.get("data") or {}).get("init_args") or {}
    tags = [f"method:{m}" for m in methods]
    for tag, entry in (("head", model.get("head")), ("backbone", model.get("backbone")), ("data", data.get("train"))):
        if isinstance(entry, Mapping) and entry.get("class_path"):
            tags.append(f"{tag}:{_short(entry['class_path'])}")
    if isinstance(model.get("classifier"), Mapping) and model["classifier"].get("class_path"):
        tags.append(f"classifier:{_short(model['classifier']['class_path'])}")
    return [t[:64] for t in tags]  # W&B's tag length limit
