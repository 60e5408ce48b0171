"""Shared plumbing of the preset studies: build `fr fit` arguments with YAML, run in-process, tabulate.

Each study (``experiments/lowres_preset.py``, ...) trains a baseline and the method's variants
with the same data, budget and seeds on one difficulty preset, and reports mean ± population
std over seeds and the gain over the baseline paired by seed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out"


def flow(value: Any) -> str:
    """``value`` as one-line YAML (what a ``--key=value`` argument of ``fr fit`` takes)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


def pairs_entry(name: str, kind: str, pairs: int, set_seed: int, preset: str | None, **extra: Any) -> dict[str, Any]:
    """A ``SyntheticPairs`` entry of ``data.val_sets``."""
    init = {"name": name, "kind": kind, "pairs": pairs, "set_seed": set_seed, "preset": preset, **extra}
    return {"class_path": "fr_lightning.data.SyntheticPairs", "init_args": init}


def data_args(
    preset: str | None,
    identities: int,
    per_identity: int,
    val_sets: Sequence[Mapping[str, Any]],
    batch_size: int,
    image_size: int | None = None,
    label_noise: float | None = None,
    train_extra: Mapping[str, Any] | None = None,
) -> list[str]:
    """`fr fit` overrides of the data: a preset `SyntheticSource`, its verification sets, batch size."""
    train = {"num_identities": identities, "samples_per_identity": per_identity, "preset": preset, **(train_extra or {})}
    args = [
        f"--data.init_args.train={flow({'class_path': 'fr_lightning.data.SyntheticSource', 'init_args': train})}",
        f"--data.init_args.val_sets={flow(list(val_sets))}",
        f"--data.init_args.batch_size={batch_size}",
        "--data.init_args.num_workers=0",
    ]
    if image_size is not None:
        args.append(f"--data.init_args.image_size={image_size}")
        args.append(f"--model.init_args.backbone.init_args.input_size={image_size}")
    if label_noise is not None:
        args.append(f"--data.init_args.label_noise={flow({'kind': 'symmetric', 'rate': label_noise, 'seed': 0})}")
    return args


def trainer_args(epochs: int, callbacks: Sequence[Mapping[str, Any]], val_every: int | None = None) -> list[str]:
    """`fr fit` overrides of the trainer: epochs, validation cadence, callbacks; no logger or checkpoints."""
    return [
        f"--trainer.max_epochs={epochs}",
        f"--trainer.check_val_every_n_epoch={val_every or epochs}",
        f"--trainer.callbacks={flow(list(callbacks))}",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


class CurveRecorder(Callback):
    """Appends every validation's scalar metrics (with epoch and step) to ``curve.json`` in the work dir.

    Studies that validate more than once (``trainer_args(val_every=...)``) read the file back as
    the run's learning curve, e.g. the clean-validation curve of a noisy-label run.

    Args:
        path: where to write the curve.
    """

    def __init__(self, path: str = "curve.json") -> None:
        self.path = Path(path)
        self.points: list[dict[str, float]] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        point = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1 and k.startswith("val/")}
        self.points.append({"epoch": float(trainer.current_epoch), "step": float(trainer.global_step), **point})
        self.path.write_text(json.dumps(self.points))


CURVE = {"class_path": "experiments.preset_study.CurveRecorder"}


def fit(
    name: str,
    args: Sequence[str],
    seed: int,
    out_dir: Path,
    run_id: str | None = None,
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``fr fit args --seed_everything=seed`` in this process; final scalar metrics plus ``wall_s``.

    The run works in ``out_dir/work/<run_id>/`` and its metrics are cached in
    ``out_dir/runs/<run_id>.json``, so an interrupted study resumes. A ``curve.json`` the run
    leaves (:class:`CurveRecorder`) is stored with the metrics as ``curve``.

    Args:
        name: the run's name.
        args: the ``fr fit`` arguments.
        seed: ``--seed_everything``.
        out_dir: the study's output folder.
        run_id: names the cache entry and work dir; default ``<name>-s<seed>`` (the preset studies).
            :func:`experiments.common.run_fit` keys it by code version and arguments instead.
        record: values stored with the metrics (``experiments.common``: code version, git head).
    """
    run_id = run_id or f"{name}-s{seed}"
    cache = out_dir / "runs" / f"{run_id}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from fr_lightning.cli import cli_main

    cache.parent.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work" / run_id
    work.mkdir(parents=True, exist_ok=True)
    (work / "curve.json").unlink(missing_ok=True)  # a stale curve of an interrupted run
    os.environ.setdefault("WANDB_MODE", "offline")
    start, cwd = time.time(), os.getcwd()
    os.chdir(work)
    try:
        cli = cli_main(["fit", *args, f"--seed_everything={seed}"])
    finally:
        os.chdir(cwd)
    metrics: dict[str, Any] = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if v.numel() == 1}
    metrics["wall_s"] = time.time() - start
    if (work / "curve.json").is_file():
        metrics["curve"] = json.loads((work / "curve.json").read_text())
    metrics.update(record or {})
    cache.write_text(json.dumps(metrics, indent=1))
    return metrics


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def fit_all(tasks: Sequence[tuple[str, Sequence[str], int]], out_dir: Path, jobs: int = 1) -> list[dict[str, Any]]:
    """``fit`` every ``(name, args, seed)`` task, ``jobs`` at a time (processes of one thread each).

    Order of the results is the order of ``tasks``. With ``jobs=1`` everything runs in this process.
    """
    if jobs <= 1:
        return [fit(name, args, seed, out_dir) for name, args, seed in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(fit, name, list(args), seed, out_dir) for name, args, seed in tasks]
        return [f.result() for f in futures]


def run_grid(
    runs: Mapping[str, tuple[str, Sequence[str]]],
    seeds: Sequence[int],
    out_dir: Path,
    jobs: int = 1,
    show: Mapping[str, str] | None = None,
    derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Fit every variant at every seed (seed-major: all variants of a seed before the next seed).

    Args:
        runs: variant -> (run name, ``fr fit`` arguments); a run is cached by name and seed (:func:`fit`).
        seeds: the seeds.
        out_dir: the study's output folder.
        jobs: runs at a time (:func:`fit_all`).
        show: label -> metric key printed (in %) for each finished run.
        derive: turns a run's raw metrics into the ones reported (e.g. derived group or curve metrics).

    Returns:
        variant -> its runs' metrics in ``seeds`` order.
    """
    keys = [(seed, variant) for seed in seeds for variant in runs]
    tasks = [(runs[variant][0], runs[variant][1], seed) for seed, variant in keys]
    results: dict[str, list[dict[str, Any]]] = {variant: [] for variant in runs}
    for (seed, variant), raw in zip(keys, fit_all(tasks, out_dir, jobs)):
        metrics = derive(raw) if derive is not None else raw
        results[variant].append(metrics)
        shown = ", ".join(f"{c} {100 * metrics[k]:.2f}" for c, k in (show or {}).items() if k in metrics)
        print(f"  {variant} seed {seed}: {shown} ({metrics['wall_s']:.0f} s)", flush=True)
    return results


def mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    """``mean ± std`` (population std), scaled (percent by default), two decimals."""
    arr = scale * np.asarray(values, dtype=float)
    return f"{arr.mean():.2f} ± {arr.std():.2f}"


def paired_gain(runs: Sequence[Mapping[str, float]], base: Sequence[Mapping[str, float]], key: str) -> str:
    """Mean ± std over seeds of (variant − baseline) for ``key``, in points; ``n/a`` if missing."""
    diff = [100.0 * (r[key] - b[key]) for r, b in zip(runs, base) if key in r and key in b]
    if not diff:
        return "n/a"
    arr = np.asarray(diff)
    return f"{arr.mean():+.2f} ± {arr.std():.2f} (min {arr.min():+.2f})"


def table(results: Mapping[str, Sequence[Mapping[str, float]]], columns: Mapping[str, str]) -> list[str]:
    """Markdown rows: one per variant, one column per metric (mean ± std over seeds, in %)."""
    rows = ["| variant | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for variant, runs in results.items():
        cells = [mean_std([r[k] for r in runs if k in r]) if any(k in r for r in runs) else "n/a" for k in columns.values()]
        rows.append(f"| {variant} | " + " | ".join(cells) + " |")
    return rows


def gain_table(results: Mapping[str, Sequence[Mapping[str, float]]], columns: Mapping[str, str], baseline: str = "baseline") -> list[str]:
    """Markdown rows of the paired gains over ``baseline`` (points, mean ± std and the worst seed)."""
    rows = ["| variant | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for variant, runs in results.items():
        if variant != baseline:
            rows.append(f"| {variant} | " + " | ".join(paired_gain(runs, results[baseline], k) for k in columns.values()) + " |")
    return rows


def gain_lines(results: Mapping[str, Sequence[Mapping[str, float]]], columns: Mapping[str, str], baseline: str = "baseline") -> list[str]:
    """A titled :func:`gain_table` over ``baseline`` (with a blank line before), or nothing without it and another variant."""
    if baseline not in results or len(results) < 2:
        return []
    name = "the baseline" if baseline == "baseline" else baseline
    title = f"Gain over {name} (points, paired by seed; mean ± std, worst seed):"
    return ["", title, "", *gain_table(results, columns, baseline=baseline)]


def wall_line(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """``Mean wall time per run: <variant> <s> s, ...`` (variants with runs)."""
    walls = {v: np.mean([r["wall_s"] for r in runs]) for v, runs in results.items() if runs}
    return "Mean wall time per run: " + ", ".join(f"{v} {w:.0f} s" for v, w in walls.items())


def save(study: str, out_dir: Path, results: Mapping[str, Any], lines: Sequence[str]) -> None:
    """Write ``<out_dir>/<study>.json`` (raw per-seed metrics) and ``<study>.md`` (tables), print the tables."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{study}.json").write_text(json.dumps(results, indent=1))
    text = "\n".join(lines)
    (out_dir / f"{study}.md").write_text(text + "\n")
    print(text, flush=True)
