"""Common mistakes as one paragraph and an exit code instead of a traceback.

``fr`` catches the exceptions listed in :func:`explain` and prints ``fr: <cause>. <fix>`` on
stderr; ``--debug`` (anywhere on the command line) or ``FR_DEBUG=1`` lets them through with
their traceback. Exit codes (docs/training.md, "Exit codes"): 2 when the command line or a config
file asks for something impossible, 1 when the data is missing, empty or too small.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from fr_lightning.data.errors import DataFormatError
from fr_lightning.tracking.exit_codes import EXIT_FAILED, EXIT_USAGE

__all__ = [
    "DEBUG_ENV",
    "UserMistake",
    "cuda_missing_message",
    "debug_requested",
    "explain",
    "init_from_size_problem",
    "known_backbones",
    "known_heads",
    "missing_config_message",
    "report",
    "strip_debug",
    "unknown_class",
    "unknown_class_message",
    "where_value",
    "yaml_error_message",
]

#: Environment variable that asks for tracebacks (any value but "", "0", "false", "no").
DEBUG_ENV = "FR_DEBUG"


class UserMistake(Exception):
    """A mistake in the command, config or data, with the fix in its message; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def strip_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (which LightningCLI and the subcommands do not know), and whether it was there."""
    kept = [a for a in argv if a != "--debug"]
    return kept, len(kept) != len(argv)


def debug_requested(flag: bool = False) -> bool:
    """True when ``--debug`` was given or ``FR_DEBUG`` is set to a true value."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def known_heads() -> list[str]:
    """The registered heads as YAML class paths (``fr_lightning.heads.ArcFace``, ...)."""
    from fr_lightning.heads import HEADS

    return sorted(f"fr_lightning.heads.{cls.__name__}" for cls in HEADS.values())


def known_backbones() -> list[str]:
    """The backbone classes ``fr fit`` accepts as ``class_path`` (the registered factories build these)."""
    import fr_lightning.backbones as backbones
    from fr_lightning.backbones import FaceBackbone

    classes = sorted(
        f"fr_lightning.backbones.{name}"
        for name, value in vars(backbones).items()
        if isinstance(value, type) and issubclass(value, FaceBackbone) and value is not FaceBackbone
    )
    return classes


def unknown_class(message: str) -> tuple[str, str] | None:
    """``(key, value)`` when a jsonargparse ``message`` says a head or backbone class path does not resolve."""
    match = re.search(
        r'Parser key "(head|backbone)":\s*\n\s*(?:- )?(?:'
        r"Expected a path but (\S+) either not accessible or invalid"  # given on the command line
        r"|Problem with given class_path '([\w.]+)':\s*\n\s*module \S+ has no attribute"  # class_path in a YAML file
        r"|Expected a dot import path string: (\S+))",  # a short name in a YAML file
        message,
    )
    if match is None:
        return None
    return match.group(1), next(g for g in match.groups()[1:] if g)


def where_value(value: str, files: list[Path], argv: list[str]) -> list[str]:
    """``file: key = value`` (or the command-line argument) where ``value`` is given, the last source first."""
    import yaml

    from fr_lightning.cli.config_errors import _flatten

    for arg in argv:
        if arg.startswith("--") and arg.endswith(f"={value}"):
            return [f"command line: {arg}"]
    for path in reversed(files):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        hits = [f"{path}: {key} = {v!r}" for key, v in _flatten(data) if v == value]
        if hits:
            return hits
    return []


def unknown_class_message(key: str, value: str, where: list[str]) -> str:
    """One paragraph for an unknown head or backbone, listing the registered ones."""
    names = known_heads() if key == "head" else known_backbones()
    at = f" (at {'; '.join(where)})" if where else ""
    return (
        f"unknown {key} {value!r}{at}: no such class. Give model.init_args.{key} as one of the registered "
        f"{key}s: {', '.join(names)} (full class paths; e.g. --model.init_args.{key}={names[0]})."
    )


def missing_config_message(path: Path) -> str:
    """One paragraph for a ``--config`` file that does not exist, listing the YAML files beside it."""
    folder = path.parent if str(path.parent) not in ("", ".") else Path(".")
    nearby = sorted(p.name for p in folder.glob("*.yaml")) if folder.is_dir() else []
    hint = f" {folder}/ holds: {', '.join(nearby)}." if nearby else " The recipes are in recipes/ (see the README's recipe table)."
    return f"config file not found: {path} (given with --config; relative paths start at {Path.cwd()}).{hint}"


def yaml_error_message(path: Path, err: Exception) -> str:
    """``path, line L, column C: problem`` for a YAML syntax error (1-based, as editors count)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or (str(err).splitlines() or [type(err).__name__])[0]
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    extra = ""
    if context and context_mark is not None and context_mark is not mark:
        extra = f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return f"{path}{where}: YAML syntax error: {problem}{extra}. Fix the file there (indentation, a missing ':' or a closing bracket)."


def cuda_missing_message(accelerator: str) -> str:
    """One paragraph for ``--trainer.accelerator=gpu|cuda`` where torch sees no CUDA device."""
    import torch

    if torch.version.cuda is None:
        cause = f"the installed torch {torch.__version__} is a CPU-only build (it has no CUDA support)"
        fix = (
            "install a CUDA build of torch following pytorch.org's instructions for your CUDA version "
            "(pip install torch --index-url <the CUDA wheel index they give>)"
        )
    else:
        cause = f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU on this machine (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
        fix = "run on a machine with an NVIDIA GPU and a matching driver"
    return (
        f"trainer.accelerator={accelerator} asks for a GPU, but {cause}. Either {fix}, or drop the flag "
        "(and GPU configs such as configs/scale/r50-1gpu.yaml) to train on the CPU: --trainer.accelerator=cpu."
    )


def init_from_size_problem(path: Path, size: int) -> str | None:
    """Why ``data.init_args.image_size=size`` cannot take the weights in ``init_from=path`` (None: it can, or unknown)."""
    from fr_lightning.deploy.weights import guess_backbone, read_weights

    try:
        guess = guess_backbone(read_weights(path).backbone_state())
    except (OSError, ValueError, KeyError):
        return None  # init_from itself reports a file that is not weights
    if guess is None or size in guess.input_sizes():
        return None
    sizes = guess.input_sizes()
    fit = guess.default_input_size()
    to = f"={fit}" if fit else f" to the size those weights were trained at ({sizes[0]}-{sizes[-1]})"
    return (
        f"data.init_args.image_size={size} does not fit the backbone of model.init_args.init_from={path}: "
        f"those weights are {guess}, whose final layer takes inputs of {sizes[0]}-{sizes[-1]} px only. "
        f"Set --data.init_args.image_size{to}, with faces aligned to that size, or drop init_from to train "
        f"a backbone from scratch at {size} px."
    )


def explain(exc: BaseException) -> tuple[int, str] | None:
    """``(exit code, one paragraph)`` for an exception that is a user's mistake; None for anything else (a bug)."""
    if isinstance(exc, UserMistake):
        return exc.code, str(exc)
    if isinstance(exc, DataFormatError):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, FileNotFoundError):
        text = str(exc)
        if text.startswith("verification set not found"):
            return EXIT_FAILED, (
                f"{text}. Fix the path in data.init_args.val_sets, write the file (fr data make-bin, or the "
                "insightface .bin files next to the training data), or drop that entry from data.init_args.val_sets."
            )
        if text.startswith("image folder not found"):
            return EXIT_FAILED, f"{text}. Fix data.init_args.train.init_args.root (relative paths start at {Path.cwd()})."
        return EXIT_FAILED, text
    name = type(exc).__name__
    if name == "MisconfigurationException" and "gpu backend" in str(exc).lower():
        return EXIT_USAGE, cuda_missing_message("gpu")
    if isinstance(exc, ValueError) and "does not fit the configured backbone" in str(exc):
        return EXIT_USAGE, (
            f"{exc} Fix the model.init_args.backbone init_args (layers, width, embedding_dim) and "
            "data.init_args.image_size to match these weights, or drop model.init_args.init_from."
        )
    if isinstance(exc, ValueError) and str(exc).startswith("image_size must be"):
        return EXIT_USAGE, f"data.init_args.image_size: {exc}. Set --data.init_args.image_size to 16 or more (112 is the usual face crop)."
    if isinstance(exc, ValueError) and "expected images of shape" in str(exc):
        return EXIT_USAGE, (
            f"the images do not fit the backbone: {exc}. data.init_args.image_size sets the crop size and the "
            "backbone's input_size; make them agree (112 for published insightface models)."
        )
    return None


def report(exc: BaseException, command: str = "fr") -> int | None:
    """Print :func:`explain`'s paragraph for ``exc`` on stderr and return its exit code (None: not a known mistake)."""
    explained = explain(exc)
    if explained is None:
        return None
    code, text = explained
    print(f"{command}: {text} (--debug or {DEBUG_ENV}=1 shows the traceback.)", file=sys.stderr)
    return code
