"""Knowledge distillation on the `lowres` preset (protocol v2): the same student with and without a teacher.

    python -m experiments.kd_study            # the reported study (claim `kd-preset` in experiments/claims.py)
    python -m experiments.kd_study --quick    # smoke run: tiny data, seconds, not reported

Per study seed ``s`` (which draws the training faces and the evaluation pairs, :mod:`experiments.seeds`):

1. **Teacher**: ``recipes/arcface.yaml``'s iResNet at twice the width (:data:`TEACHER_WIDTH`),
   trained for :data:`TEACHER_EPOCHS` epochs on the seed's training set, so its classifier knows
   the students' identities. Its run files go to ``experiments/out/v2/kd-preset-teachers/``.
2. **Students**, same data, images, steps and epochs: ``student`` (``recipes/arcface.yaml``'s
   network alone) and ``kd`` (the same with ``configs/methods/kd.yaml``'s ``KD``: feature
   1 − cos, ND towards the teacher's class centres and calibrated logit KD, T = 4, each weight 1)
   from that seed's teacher. The teacher's forward pass is extra compute, reported with the runs.

All on the `lowres` preset at 32 px (identity in shape and fine detail, colour varies per photo),
evaluated on its synth-lfw pairs at full resolution. ``python -m experiments.report`` computes
the verdict.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from experiments.claims import CLAIMS
from experiments.preset_study import flow, pairs_entry
from experiments.seeds import data_seed_args
from experiments.study import ROOT, run_study, work_dir
from experiments.study_cli import budget_overrides, study_parser, study_plan, synthetic_train

PRESET = "lowres"
TEACHER_WIDTH = 0.5
TEACHER_EPOCHS = 8
BUDGET = {"identities": 200, "per_identity": 20, "epochs": 4, "batch_size": 64, "image_size": 32, "pairs": 1000}
QUICK = {"identities": 8, "per_identity": 4, "epochs": 1, "batch_size": 16, "image_size": 32, "pairs": 40}


def teacher_backbone(size: int) -> dict[str, Any]:
    """The teacher's architecture: ``recipes/arcface.yaml``'s iResNet at :data:`TEACHER_WIDTH`."""
    return {"class_path": "fr_lightning.backbones.IResNet", "init_args": {"layers": [2, 2, 2, 2], "width": TEACHER_WIDTH, "embedding_dim": 128, "input_size": size}}


def data_section(budget: dict[str, int]) -> dict[str, Any]:
    """The data section the seeds draw from."""
    train = synthetic_train(budget["identities"], budget["per_identity"], PRESET)
    return {"init_args": {"train": train, "val_sets": [pairs_entry("synth-lfw", "standard", budget["pairs"], 0, PRESET)]}}


def shared_args(budget: dict[str, int], epochs: int, checkpoints: bool = False) -> list[str]:
    """``fr fit`` arguments every run shares (data, image size, epochs), without the seed's."""
    data = data_section(budget)["init_args"]
    overrides = budget_overrides(data["train"], data["val_sets"], budget["batch_size"], budget["image_size"], epochs, checkpoints=checkpoints)
    return ["--config", str(ROOT / "recipes" / "arcface.yaml"), *overrides]


def kd_callbacks(teacher: Path, size: int) -> list[dict[str, Any]]:
    """``configs/methods/kd.yaml``'s KD with this seed's teacher."""
    init = {"teacher": str(teacher), "teacher_backbone": teacher_backbone(size), "feature_weight": 1.0, "nd_weight": 1.0, "logit_weight": 1.0,
            "temperature": 4.0, "calibration": "translate", "logit_warmup_epochs": 1.0}
    return [{"class_path": "fr_lightning.methods.KD", "init_args": init}]


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    start = time.time()
    args = study_parser(__doc__).parse_args(argv)
    claim = CLAIMS["kd-preset"]
    plan = study_plan(claim, args)
    budget = QUICK if args.quick else BUDGET
    data = data_section(budget)
    size = budget["image_size"]

    def drawn(_args: list[str], seed: int) -> list[str]:
        return data_seed_args(data, seed)

    teacher_args = [
        *shared_args(budget, 1 if args.quick else TEACHER_EPOCHS, checkpoints=True),
        f"--model.init_args.backbone={flow(teacher_backbone(size))}",
        "--checkpoint.save_last=true", "--checkpoint.save_top_k=0", "--checkpoint.dirpath=teacher",
    ]
    teachers_tag = "teachers" + (f"-{plan.tag}" if plan.tag else "")
    run_study(claim, {"teacher": teacher_args}, plan.seeds, drawn, plan.command, args.out_dir, teachers_tag, jobs=plan.jobs)
    teacher_folder = args.out_dir / f"{claim.folder()}-{teachers_tag}"

    def teacher_of(seed: int) -> Path:
        ckpt = work_dir(claim, "teacher", [*teacher_args, *drawn(teacher_args, seed)], seed, teacher_folder) / "teacher" / "last.ckpt"
        if not ckpt.is_file():
            raise SystemExit(f"seed {seed}'s teacher left no checkpoint at {ckpt}; delete its run file under {teacher_folder / 'runs'} and rerun")
        return ckpt

    student = shared_args(budget, budget["epochs"])
    variants = {"student": student, "kd": list(student)}

    def seed_args(base: list[str], seed: int) -> list[str]:
        extra = [f"--trainer.callbacks={flow(kd_callbacks(teacher_of(seed), size))}"] if base is variants["kd"] else []
        return [*drawn(base, seed), *extra]

    results = run_study(claim, variants, plan.seeds, seed_args, plan.command, args.out_dir, plan.tag, jobs=plan.jobs)
    print(f"study wall time (teachers and students) {time.time() - start:.0f} s", flush=True)
    return results


if __name__ == "__main__":
    main()
