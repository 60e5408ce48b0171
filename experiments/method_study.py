"""v1's method studies re-run under protocol v2: declared claim, seeds that draw the data, computed verdict.

    python -m experiments.method_study --study poseface-preset   # PoseFace on `pose`
    python -m experiments.method_study --study gabn-preset       # GABN on `bias`
    python -m experiments.method_study --study adasin-heads      # AdaSin vs CurricularFace, default faces
    python -m experiments.method_study --study gabn-preset --quick   # smoke run: tiny data, seconds

Each study keeps v1's design (``experiments.method_preset.STUDIES``: preset, verification sets,
variants, head swap, budget) and changes what v1 got wrong: every study seed (1-5) draws the
training faces and the evaluation pairs as well as the initialisation, the claim and its rule
are declared in ``experiments/claims.py`` before the first run, run files carry their
provenance, and ``python -m experiments.report`` computes the verdict. Evaluation pairs: 1,000
per set (v1: 600).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.claims import CLAIMS
from experiments.method_preset import STUDIES
from experiments.preset_study import flow, pairs_entry
from experiments.seeds import CALIBRATION_SEEDS, data_seed_args
from experiments.study import OUT_V2, ROOT, run_study

#: v2 study (= claim) -> v1 study whose design it keeps
DESIGNS = {"poseface-preset": "poseface", "gabn-preset": "gabn", "adasin-heads": "adasin"}
PAIRS = 1000
QUICK = {"epochs": 1, "identities": 8, "per_identity": 4, "batch_size": 16, "image_size": 32}


def variants(study: str, quick: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Variant -> ``fr fit`` arguments (without the seed's), and the data section the seeds draw from."""
    design = STUDIES[DESIGNS[study]]
    budget = {**design.budget, **(QUICK if quick else {})}
    pairs = 40 if quick else PAIRS
    val = [pairs_entry(name, kind, pairs, set_seed, design.preset, **extra) for name, kind, set_seed, extra in design.sets]
    train = {"class_path": "fr_lightning.data.SyntheticSource",
             "init_args": {"num_identities": budget["identities"], "samples_per_identity": budget["per_identity"], "preset": design.preset}}
    size = budget["image_size"]
    shared = [
        "--config", str(ROOT / "recipes" / "arcface.yaml"),
        f"--data.init_args.train={flow(train)}",
        f"--data.init_args.val_sets={flow(val)}",
        f"--data.init_args.batch_size={budget['batch_size']}",
        f"--data.init_args.image_size={size}",
        f"--model.init_args.backbone.init_args.input_size={size}",
        "--data.init_args.num_workers=0",
        f"--trainer.max_epochs={budget['epochs']}",
        f"--trainer.check_val_every_n_epoch={budget['epochs']}",
        "--trainer.enable_checkpointing=false",
    ]
    runs = {}
    for variant, callbacks in design.variants.items():
        head = [f"--model.init_args.head={flow(design.heads[variant])}"] if variant in design.heads else []
        runs[variant] = [*shared, *head, f"--trainer.callbacks={flow(list(callbacks))}"]
    return runs, {"init_args": {"train": train, "val_sets": val}}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, choices=sorted(DESIGNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the claim's reported seeds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 8 identities × 4, 40 pairs, one calibration seed")
    parser.add_argument("--out-dir", type=Path, default=OUT_V2)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (2: both cores of the 2-core machine)")
    args = parser.parse_args(argv)
    claim = CLAIMS[args.study]
    seeds = args.seeds or ([CALIBRATION_SEEDS[0]] if args.quick else list(claim.seeds))
    runs, data = variants(args.study, args.quick)
    tag = "quick" if args.quick else ("" if set(seeds) <= set(claim.seeds) else "unreported")
    command = claim.command + (" --quick" if args.quick else "") + (f" --seeds {' '.join(map(str, seeds))}" if args.seeds else "")
    return run_study(claim, runs, seeds, lambda _a, seed: data_seed_args(data, seed), command, args.out_dir, tag, jobs=1 if args.quick else args.jobs)


if __name__ == "__main__":
    main()
