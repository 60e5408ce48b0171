"""One method against the ArcFace baseline on the difficulty preset made for it.

    python -m experiments.method_preset --study poseface      # PoseFace on `pose`
    python -m experiments.method_preset --study gabn          # GABN on `bias`
    python -m experiments.method_preset --study coteaching    # co-teaching on `noise` (40 % symmetric)
    python -m experiments.method_preset --study adasin        # AdaSin vs CurricularFace (no preset)
    python -m experiments.method_preset --study gabn --quick  # smoke run: tiny data, one seed

Every variant uses ``recipes/arcface.yaml``'s network with the preset's data, the same images,
steps, epochs and seeds; only ``trainer.callbacks`` (or, for ``adasin``, the head) changes.
Budgets are chosen so the baseline converges on the 2-core CPU (``docs/results/v1.md`` says why),
and were fixed on seed 100, which no table reports. Each run validates every ``--val-every``
epochs and keeps the curve (``CurveRecorder``), so a memorisation peak shows. Results:
``experiments/out/<study>_preset.{json,md}``; prints its wall time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.preset_study import CURVE, OUT, ROOT, data_args, flow, gain_lines, pairs_entry, run_grid, save, table, trainer_args, wall_line

Sets = list[tuple[str, str, int, dict[str, Any]]]
GROUP_SETS: Sets = [(f"synth-rfw-g{g}", "group", 10 + g, {"group": g}) for g in range(4)]


def _method(name: str, **init: Any) -> list[dict[str, Any]]:
    return [{"class_path": f"fr_lightning.methods.{name}", "init_args": init}]


@dataclass(frozen=True)
class Study:
    """A method study: preset, verification sets, variants and default budget."""

    preset: str | None
    sets: Sets
    variants: Mapping[str, list[dict[str, Any]]]
    budget: Mapping[str, int]
    heads: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    label_noise: float | None = None
    columns: Mapping[str, str] = field(default_factory=dict)


STUDIES: dict[str, Study] = {
    "poseface": Study(
        preset="pose",
        sets=[("synth-ff", "standard", 0, {}), ("synth-cfpfp", "cross_pose", 1, {})],
        variants={"baseline": [], "poseface": _method("PoseFace", adaptive="weights", disentangle=True)},
        budget={"epochs": 6, "identities": 200, "per_identity": 20, "batch_size": 64, "image_size": 32},
        columns={"frontal-frontal": "val/synth-ff/acc", "frontal-profile": "val/synth-cfpfp/acc"},
    ),
    "gabn": Study(
        preset="bias",
        sets=GROUP_SETS,
        variants={"baseline": [], "gabn": _method("GABN", num_groups=4, top_n=1)},
        budget={"epochs": 6, "identities": 200, "per_identity": 20, "batch_size": 64, "image_size": 32},
        columns={**{f"g{g}": f"val/synth-rfw-g{g}/acc" for g in range(4)}, "mean": "group/mean", "STD": "group/std"},
    ),
    "coteaching": Study(
        preset="noise",
        sets=[("synth-lfw", "standard", 0, {})],
        variants={"baseline": [], "coteaching": _method("CoTeaching", forget_rate=0.4, ramp=5, ramp_unit="epoch")},
        budget={"epochs": 10, "identities": 150, "per_identity": 20, "batch_size": 64, "image_size": 32},
        label_noise=0.4,
        columns={"final": "val/synth-lfw/acc", "peak": "curve/peak", "drop from peak": "curve/drop"},
    ),
    "adasin": Study(
        preset=None,
        sets=[("synth-lfw", "standard", 0, {}), ("synth-cfpfp", "cross_pose", 1, {})],
        variants={"curricularface": [], "adasin": []},
        heads={
            "curricularface": {"class_path": "fr_lightning.heads.CurricularFace", "init_args": {"s": 32.0}},
            "adasin": {"class_path": "fr_lightning.heads.AdaSin", "init_args": {"s": 32.0}},
        },
        budget={"epochs": 6, "identities": 200, "per_identity": 20, "batch_size": 64, "image_size": 32},
        columns={"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"},
    ),
}


def derived(run: dict[str, Any]) -> dict[str, Any]:
    """Adds group mean / STD / SER (bias sets) and curve peak / drop (when a curve was kept)."""
    out = dict(run)
    groups = [run[f"val/synth-rfw-g{g}/acc"] for g in range(4) if f"val/synth-rfw-g{g}/acc" in run]
    if len(groups) == 4:
        arr = np.asarray(groups)
        out["group/mean"], out["group/std"] = float(arr.mean()), float(arr.std())
        out["group/ser"] = float((1.0 - arr.min()) / max(1.0 - arr.max(), 1e-6))
    curve = [p["val/synth-lfw/acc"] for p in run.get("curve", []) if "val/synth-lfw/acc" in p]
    if curve:
        out["curve/peak"] = float(max(curve))
        out["curve/drop"] = float(max(curve) - curve[-1])
    return out


def run_args(study: Study, variant: str, args: argparse.Namespace) -> list[str]:
    """`fr fit` arguments of one variant."""
    val = [pairs_entry(name, kind, args.pairs, set_seed, study.preset, **extra) for name, kind, set_seed, extra in study.sets]
    head = [f"--model.init_args.head={flow(study.heads[variant])}"] if variant in study.heads else []
    data = data_args(study.preset, args.identities, args.per_identity, val, args.batch_size, args.image_size, study.label_noise)
    return [
        "--config",
        str(ROOT / "recipes" / "arcface.yaml"),
        *head,
        *data,
        *trainer_args(args.epochs, [*study.variants[variant], CURVE], val_every=args.val_every),
    ]


def extra_lines(name: str, results: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """Study-specific lines: SER for GABN, the clean-validation curve and selection precision for co-teaching."""
    lines: list[str] = []
    if name == "gabn":
        lines += ["", "SER (max error / min error over groups), mean ± std over seeds:", ""]
        for variant, runs in results.items():
            ser = np.array([r["group/ser"] for r in runs])
            lines.append(f"- {variant}: {ser.mean():.3f} ± {ser.std():.3f}")
    if name == "coteaching":
        lines += ["", "Clean-validation curve (synth-lfw %, mean over seeds, per validation):", ""]
        for variant, runs in results.items():
            curves = np.array([[p["val/synth-lfw/acc"] for p in r["curve"]] for r in runs])
            lines.append(f"- {variant}: " + ", ".join(f"{100 * v:.1f}" for v in curves.mean(0)))
        prec = [r["train/coteaching/precision"] for r in results.get("coteaching", []) if "train/coteaching/precision" in r]
        if prec:
            lines.append(f"- co-teaching selection precision (last epoch): {100 * np.mean(prec):.2f} ± {100 * np.std(prec):.2f} %")
    return lines


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=list(STUDIES), required=True)
    parser.add_argument("--variants", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    for key in ("epochs", "identities", "per_identity", "batch_size", "image_size"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=None, help="default: the study's budget")
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--val-every", type=int, default=None, help="validate every N epochs (default: 2, or the last epoch only)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each (2 = both cores of the CPU VM)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs of 6 identities × 4, 20 pairs, 32 px, seed 0")
    args = parser.parse_args(argv)
    study = STUDIES[args.study]
    for key, value in study.budget.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.variants = args.variants or list(study.variants)
    if args.quick:
        args.seeds, args.epochs, args.identities, args.per_identity = [0], 2, 6, 4
        args.batch_size, args.pairs, args.image_size, args.jobs = 12, 20, 32, 1
    args.val_every = args.val_every or min(2, args.epochs)
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    study = STUDIES[args.study]
    start = time.time()
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-s{args.image_size}-p{args.pairs}-v{args.val_every}"
    runs = {v: (f"{args.study}_preset-{v}-{tag}", run_args(study, v, args)) for v in args.variants}
    results = run_grid(runs, args.seeds, args.out_dir, args.jobs, show=study.columns, derive=derived)
    baseline = next(iter(study.variants))
    lines = [
        f"Study `{args.study}` on preset `{study.preset}`, budget {tag}, seeds {args.seeds}; accuracy in %, mean ± std over seeds:",
        "",
        *table(results, study.columns),
    ]
    lines += gain_lines(results, study.columns, baseline=baseline)
    lines += extra_lines(args.study, results)
    lines += ["", wall_line(results)]
    wall = time.time() - start
    lines.append(f"Study wall time: {wall:.0f} s")
    name = f"{args.study}_preset" + ("-quick" if args.quick else "")
    if not args.quick and (args.variants != list(study.variants) or args.seeds != [0, 1, 2]):
        name += f"-{'_'.join(args.variants)}-s{'_'.join(map(str, args.seeds))}"
    save(name, args.out_dir, results, lines)
    print(f"wall time {wall:.0f} s")
    return results


if __name__ == "__main__":
    main()
