"""Shared plumbing for the method-vs-baseline studies: run `fr fit`, cache by code version, tabulate.

Each study runs the same recipe with and without a method, same budget, several seeds, and
writes ``<out dir>/<study>.json`` plus a markdown table (mean ± population std) that is pasted
into ``docs/results/v1.md`` together with the command. Run a study as ``python -m experiments.<study>``.

Runs are cached in ``<out dir>/runs/<name>-c<key>-s<seed>.json``; the key hashes the code that
decides a run's outcome (:func:`code_version`) and the run's arguments, so a change to either
re-runs it instead of reusing a stale result.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.preset_study import fit, flow  # one runner and one YAML writer for every study

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out"

#: Files whose content decides what a run computes (the experiment scripts only build arguments,
#: and the arguments are part of the cache key).
CODE_GLOBS = ("fr_lightning/**/*.py", "recipes/**/*.yaml", "configs/**/*.yaml", "pyproject.toml")


def git_head(root: Path = ROOT) -> str:
    """The checked-out commit (``unknown`` outside a git work tree); recorded with each run."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return proc.stdout.strip()


def code_version(root: Path = ROOT) -> str:
    """12 hex digits of SHA-256 over the sources that decide a run's outcome.

    Hashes every file of :data:`CODE_GLOBS` (relative path and bytes, so uncommitted edits
    count too) and the torch and Lightning versions. Unlike the git commit it does not change
    when only docs or experiment reports change, so a resumed study keeps its valid runs.
    """
    import lightning
    import torch

    digest = hashlib.sha256(f"torch {torch.__version__} lightning {lightning.__version__}\n".encode())
    files = sorted({p for pattern in CODE_GLOBS for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts})
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def run_key(name: str, seed: int, args: Sequence[str], root: Path = ROOT) -> str:
    """``<name>-c<key>-s<seed>``: ``key`` hashes :func:`code_version` and ``args`` (paths under the
    repository written relative to it, so two clones share keys)."""
    portable = [a.replace(str(root), ".") for a in args]
    key = hashlib.sha256(json.dumps([code_version(root), portable]).encode()).hexdigest()[:10]
    return f"{name}-c{key}-s{seed}"


def run_cache_path(out_dir: Path, name: str, seed: int, args: Sequence[str]) -> Path:
    """Where the metrics of run ``name`` at ``seed`` with ``args`` are cached under ``out_dir``.

    A different code version or argument list gives a different path, so a stale cached run is
    never reused.
    """
    return out_dir / "runs" / f"{run_key(name, seed, args)}.json"


def run_fit(name: str, args: Sequence[str], seed: int, out_dir: Path = OUT) -> dict[str, Any]:
    """Run ``fr fit args --seed_everything=seed`` in this process; final scalar metrics plus ``wall_s``.

    :func:`experiments.preset_study.fit` with the run keyed by :func:`run_key`: it works in
    :func:`run_work_dir` (its checkpoints land there) and its metrics are cached at
    :func:`run_cache_path` together with ``code_version`` and ``git_head``, so an interrupted
    study resumes and a code change re-runs.
    """
    run_id = run_key(name, seed, args)
    fresh = not (out_dir / "runs" / f"{run_id}.json").is_file()
    quiet = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    record = {"code_version": code_version(), "git_head": git_head()} if fresh else None
    metrics = fit(name, [*args, *quiet], seed, out_dir, run_id=run_id, record=record)
    if fresh:
        lfw = metrics.get("val/synth-lfw/acc", float("nan"))
        print(f"  {name} seed {seed}: {100 * lfw:.2f} % synth-lfw ({metrics['wall_s']:.0f} s)", flush=True)
    return metrics


def run_work_dir(out_dir: Path, name: str, seed: int, args: Sequence[str]) -> Path:
    """The working directory of a run (``out_dir/work/<run key>``), keyed like its cache entry."""
    return out_dir / "work" / run_key(name, seed, args)


def command(module: str, args: Any) -> str:
    """The ``python -m experiments.<module> ...`` line that reproduces a parsed namespace.

    ``--quick`` and ``--out-dir`` are left out (the quick settings are spelled out instead)."""
    parts = [f"python -m experiments.{module}"]
    for key, value in vars(args).items():
        if key in ("quick", "out_dir") or value is None:
            continue
        if isinstance(value, list):
            value = " ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in value)
        parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def save(study: str, results: Mapping[str, Any], markdown: str, out_dir: Path = OUT) -> Path:
    """Write the raw results and the table to ``<out_dir>/<study>.{json,md}``; print the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{study}.json").write_text(json.dumps(results, indent=1))
    path = out_dir / f"{study}.md"
    path.write_text(markdown + "\n")
    print(markdown)
    return path


#: Verification sets a study can ask for: name -> (kind, set_seed), as in `default_val_sets`.
SETS: dict[str, tuple[str, int]] = {
    "synth-lfw": ("standard", 0),
    "synth-cfpfp": ("cross_pose", 1),
    "synth-lowres": ("lowres", 2),
    **{f"synth-rfw-g{g}": ("group", 10 + g) for g in range(4)},
}


def val_set(name: str, pairs: int) -> dict[str, Any]:
    """The ``SyntheticPairs`` entry of ``data.val_sets`` for set ``name`` of :data:`SETS`."""
    kind, set_seed = SETS[name]
    init: dict[str, Any] = {"name": name, "kind": kind, "pairs": pairs, "set_seed": set_seed}
    if kind == "group":
        init["group"] = int(name[-1])
    return {"class_path": "fr_lightning.data.SyntheticPairs", "init_args": init}


def callbacks_arg(callbacks: Sequence[Mapping[str, Any]]) -> str:
    """``--trainer.callbacks=[...]`` with ``callbacks`` as YAML."""

    return f"--trainer.callbacks={flow(list(callbacks))}"


def budget_args(
    epochs: int,
    identities: int,
    per_identity: int,
    pairs: int,
    sets: Sequence[str] = ("synth-lfw",),
    batch_size: int | None = None,
    keep_checkpoints: bool = False,
) -> list[str]:
    """`fr fit` overrides shared by every variant of a study: data size, epochs, evaluation sets.

    Validation runs once, at the end; checkpoints are off unless ``keep_checkpoints`` (a KD
    teacher needs its ``last.ckpt``).
    """

    args = [
        f"--data.init_args.train.init_args.num_identities={identities}",
        f"--data.init_args.train.init_args.samples_per_identity={per_identity}",
        f"--data.init_args.val_sets={flow([val_set(name, pairs) for name in sets])}",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.check_val_every_n_epoch={epochs}",
    ]
    if batch_size is not None:
        args.append(f"--data.init_args.batch_size={batch_size}")
    if not keep_checkpoints:
        args.append("--trainer.enable_checkpointing=false")
    return args


def quick_budget(args: Any, **extra: Any) -> None:
    """Shrink a parsed namespace to the smoke-run budget: 1 epoch of 6 identities × 4, batch 12,
    40 pairs, seed 0 (plus ``extra`` overrides, e.g. fewer variants)."""
    settings = {"seeds": [0], "epochs": 1, "identities": 6, "per_identity": 4, "batch_size": 12, "pairs": 40, **extra}
    for key, value in settings.items():
        if hasattr(args, key):
            setattr(args, key, value)
