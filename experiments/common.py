"""Shared plumbing for the method-vs-baseline studies: run `fr fit`, collect metrics, tabulate.

Each study runs the same recipe with and without a method, same budget, several seeds, and
writes ``experiments/out/<study>.json`` plus a markdown table (mean ± population std) that is
pasted into ``docs/results.md`` together with the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out"

_RUNNER = """
import json, sys
from fr_lightning.cli import cli_main
cli = cli_main(json.loads(sys.argv[1]))
metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if v.numel() == 1}
print("@@METRICS@@" + json.dumps(metrics))
"""


def run_fit(name: str, args: Sequence[str], seed: int, workdir: Path | None = None) -> dict[str, float]:
    """Run ``fr fit`` with ``args`` and ``--seed_everything=seed`` in a subprocess; return final metrics.

    Results are cached in ``experiments/out/runs/<name>-s<seed>.json`` so a study can be resumed.
    """
    cache = OUT / "runs" / f"{name}-s{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    cache.parent.mkdir(parents=True, exist_ok=True)
    workdir = workdir or OUT / "work" / f"{name}-s{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["fit", *args, f"--seed_everything={seed}", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]
    env = dict(os.environ, WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1", PYTHONPATH=str(ROOT))
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(argv)], cwd=workdir, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"run {name} seed {seed} failed:\n{proc.stderr[-4000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@METRICS@@"))
    metrics = json.loads(line[len("@@METRICS@@") :])
    metrics["wall_s"] = time.time() - start
    cache.write_text(json.dumps(metrics, indent=1))
    print(f"  {name} seed {seed}: {metrics.get('val/synth-lfw/acc', float('nan')):.4f} synth-lfw acc ({metrics['wall_s']:.0f} s)", flush=True)
    return metrics


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (population std) in percent with two decimals."""
    arr = 100.0 * np.asarray(values, dtype=float)
    return f"{arr.mean():.2f} ± {arr.std():.2f}"


def table(results: dict[str, list[dict[str, float]]], columns: dict[str, str]) -> str:
    """Markdown table: one row per variant, one column per metric (mean ± std over seeds, in %)."""
    head = "| variant | " + " | ".join(columns) + " |"
    sep = "|---|" + "---|" * len(columns)
    rows = [head, sep]
    for variant, runs in results.items():
        cells = []
        for key in columns.values():
            vals = [r[key] for r in runs if key in r]
            cells.append(mean_std(vals) if vals else "n/a")
        rows.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def save(study: str, results: dict[str, list[dict[str, float]]], markdown: str) -> Path:
    """Write the raw results and the table to ``experiments/out/<study>.{json,md}``."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{study}.json").write_text(json.dumps(results, indent=1))
    path = OUT / f"{study}.md"
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
    entries = ", ".join(
        f"{{class_path: fr_lightning.data.SyntheticPairs, init_args: {{name: {name}, kind: {SETS[name][0]}, pairs: {pairs}, set_seed: {SETS[name][1]}"
        + (f", group: {name[-1]}" if SETS[name][0] == "group" else "")
        + "}}"
        for name in sets
    )
    args = [
        f"--data.init_args.train.init_args.num_identities={identities}",
        f"--data.init_args.train.init_args.samples_per_identity={per_identity}",
        f"--data.init_args.val_sets=[{entries}]",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.check_val_every_n_epoch={epochs}",
    ]
    if batch_size is not None:
        args.append(f"--data.init_args.batch_size={batch_size}")
    if not keep_checkpoints:
        args.append("--trainer.enable_checkpointing=false")
    return args
