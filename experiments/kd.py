"""Knowledge distillation compared on the synthetic faces: the same student, budget and data, with and without a teacher.

    python -m experiments.kd                  # teacher + 4 student variants x 3 seeds
    python -m experiments.kd --quick          # smoke run: teacher, student and +feature+nd+logit, tiny data, seed 0

The teacher is `recipes/arcface.yaml` (iResNet, ArcFace) at a wider width (`--teacher-width`,
0.5 by default, about 4x the student's parameters), trained once (seed 0) on the same identities as
the students, so its classifier can teach logits. Students are `recipes/kd.yaml` (MobileFaceNet
width 0.5 at 56 px) with only `trainer.callbacks` changed:

* `student` — the student trained alone;
* `+feature` — `KD(feature_weight=1)`: 1 − cos(P·x_s, x_t);
* `+feature+nd` — plus ND (weight 1) towards the teacher classifier's normalised centres;
* `+feature+nd+logit` — plus T²·KL logit KD (T = 4, weight 1 ramped over the first epoch) with
  `translate` calibration of wrong teacher predictions.

Same budget = same images, steps and epochs for every student (the teacher's forward pass is extra
compute). Reported: synth-lfw verification accuracy, mean ± population std over seeds; the
teacher's own accuracy is given for reference. Results: `experiments/out/kd.{json,md}`
(`kd-quick.*` for `--quick`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.common import OUT, ROOT, budget_args, callbacks_arg, command, quick_budget, run_fit, run_work_dir, save
from experiments.preset_study import table
from experiments.preset_study import flow

#: variant -> KD init args (None: the student alone).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "student": None,
    "+feature": {"feature_weight": 1.0, "nd_weight": 0.0, "logit_weight": 0.0},
    "+feature+nd": {"feature_weight": 1.0, "nd_weight": 1.0, "logit_weight": 0.0},
    "+feature+nd+logit": {"feature_weight": 1.0, "nd_weight": 1.0, "logit_weight": 1.0, "calibration": "translate"},
}
QUICK_VARIANTS = ["student", "+feature+nd+logit"]


def teacher_backbone(width: float) -> dict[str, Any]:
    """The teacher's architecture (recipes/arcface.yaml's backbone at ``width``)."""
    init = {"layers": [2, 2, 2, 2], "width": width, "input_size": 56, "embedding_dim": 128}
    return {"class_path": "fr_lightning.backbones.IResNet", "init_args": init}


def callbacks(variant: str, teacher: Path, width: float) -> list[dict[str, Any]]:
    """The `trainer.callbacks` of one student variant."""
    init = VARIANTS[variant]
    if init is None:
        return []
    return [{"class_path": "fr_lightning.methods.KD", "init_args": {"teacher": str(teacher), "teacher_backbone": teacher_backbone(width), **init}}]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--teacher-width", type=float, default=0.5)
    parser.add_argument("--identities", type=int, default=1500)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: student and +feature+nd+logit, 1 epoch of 6 identities × 4, 40 pairs, seed 0"
    )
    args = parser.parse_args(argv)
    if args.quick:
        quick_budget(args, **({"variants": QUICK_VARIANTS} if args.variants == list(VARIANTS) else {}))
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    teacher_epochs = args.teacher_epochs or args.epochs
    data = f"i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}"

    # The teacher: trained once (seed 0), its last checkpoint in its own work directory.
    t_name = f"kd-teacher-w{args.teacher_width}-e{teacher_epochs}-{data}"
    teacher_args = [
        "--config", str(ROOT / "recipes" / "arcface.yaml"),
        *budget_args(teacher_epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size, keep_checkpoints=True),
        f"--model.init_args.backbone={flow(teacher_backbone(args.teacher_width))}",
        "--checkpoint.save_last=true",
        "--checkpoint.save_top_k=0",
        "--checkpoint.dirpath=teacher",
    ]
    teacher_metrics = run_fit(t_name, teacher_args, 0, args.out_dir)
    ckpt = run_work_dir(args.out_dir, t_name, 0, teacher_args) / "teacher" / "last.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"the teacher run left no checkpoint at {ckpt}; delete its cached metrics under {args.out_dir / 'runs'} and rerun")

    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size, keep_checkpoints=True)
    student = ["--config", str(ROOT / "recipes" / "kd.yaml"), *budget, "--checkpoint.save_last=false", "--checkpoint.save_top_k=0"]
    tag = f"e{args.epochs}-tw{args.teacher_width}-{data}"
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for seed in args.seeds:
        for variant in args.variants:
            # Students taught by a teacher trained for other epochs get their own names.
            taught = "" if VARIANTS[variant] is None or teacher_epochs == args.epochs else f"-te{teacher_epochs}"
            name = f"kd-{variant.strip('+').replace('+', '-')}-{tag}{taught}"
            run = [*student, callbacks_arg(callbacks(variant, ckpt, args.teacher_width))]
            results[variant].append(run_fit(name, run, seed, args.out_dir))

    lines = [
        f"Command: `{command('kd', args)}`",
        "",
        f"synth-lfw verification accuracy (%), MobileFaceNet-0.5 student, mean ± std over seeds {args.seeds}; "
        f"teacher (iResNet width {args.teacher_width}, seed 0): {100 * teacher_metrics.get('val/synth-lfw/acc', float('nan')):.2f}.",
        "",
        *table(results, {"synth-lfw acc": "val/synth-lfw/acc"}),
    ]
    save("kd-quick" if args.quick else "kd", {"teacher": [teacher_metrics], **results}, "\n".join(lines), args.out_dir)
    return {"teacher": [teacher_metrics], **results}


if __name__ == "__main__":
    main()
