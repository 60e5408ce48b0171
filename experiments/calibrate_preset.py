"""Calibration of the ``pose`` and ``bias`` presets: the ArcFace baseline's shape next to real data's.

    python -m experiments.calibrate_preset --preset pose     # frontal-frontal vs frontal-profile gap
    python -m experiments.calibrate_preset --preset bias     # per-group accuracy, STD and SER
    python -m experiments.calibrate_preset --preset pose --quick   # smoke run (tiny data, seconds)

Only the baseline is trained (``recipes/arcface.yaml``, data from the preset), on a seed that no
study reports (default 100), so calibrating never looks at a method's outcome. The ``lowres``
preset is calibrated by ``python -m experiments.lowres_preset --variants baseline --seeds 100``.
Prints its wall time; results in ``experiments/out/calibrate-<preset>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from experiments.preset_study import OUT, ROOT, data_args, fit, pairs_entry, save, trainer_args

#: Verification sets per preset: (name, kind, set_seed, extra SyntheticPairs arguments).
SETS: dict[str, list[tuple[str, str, int, dict[str, int]]]] = {
    "pose": [("synth-ff", "standard", 0, {}), ("synth-cfpfp", "cross_pose", 1, {})],
    "bias": [(f"synth-rfw-g{g}", "group", 10 + g, {"group": g}) for g in range(4)],
}


def summarise(preset: str, metrics: dict[str, float]) -> list[str]:
    """Markdown lines with the preset's calibration quantity."""
    acc = {name: 100.0 * metrics[f"val/{name}/acc"] for name, *_ in SETS[preset]}
    if preset == "pose":
        gap = acc["synth-ff"] - acc["synth-cfpfp"]
        return [
            "| frontal-frontal | frontal-profile | gap (points) |",
            "|---|---|---|",
            f"| {acc['synth-ff']:.2f} | {acc['synth-cfpfp']:.2f} | {gap:.2f} |",
        ]
    groups = np.array([acc[f"synth-rfw-g{g}"] for g in range(4)])
    ser = (100.0 - groups.min()) / max(100.0 - groups.max(), 1e-6)
    return [
        "| g0 | g1 | g2 | g3 | mean | STD | SER |",
        "|---|---|---|---|---|---|---|",
        "| " + " | ".join(f"{a:.2f}" for a in groups) + f" | {groups.mean():.2f} | {groups.std():.2f} | {ser:.3f} |",
    ]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(SETS), required=True)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 6 identities × 4, 40 pairs, 32 px")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.identities, args.per_identity, args.batch_size, args.pairs, args.image_size = 1, 6, 4, 12, 40, 32
    start = time.time()
    val = [pairs_entry(name, kind, args.pairs, set_seed, args.preset, **extra) for name, kind, set_seed, extra in SETS[args.preset]]
    run = [
        "--config",
        str(ROOT / "recipes" / "arcface.yaml"),
        *data_args(args.preset, args.identities, args.per_identity, val, args.batch_size, image_size=args.image_size),
        *trainer_args(args.epochs, []),
    ]
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-s{args.image_size}-p{args.pairs}"
    metrics = fit(f"calibrate-{args.preset}-{tag}", run, args.seed, args.out_dir)
    lines = [f"Preset `{args.preset}`, ArcFace baseline, budget {tag}, seed {args.seed}; accuracy in %:", "", *summarise(args.preset, metrics)]
    save(f"calibrate-{args.preset}{'-quick' if args.quick else ''}", args.out_dir, metrics, lines)
    print(f"wall time {time.time() - start:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
