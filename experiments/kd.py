"""Knowledge distillation compared on the synthetic faces: the same student, budget and data, with and without a teacher.

    python experiments/kd.py                                        # teacher + 4 student variants x 3 seeds
    python experiments/kd.py --epochs 1 --identities 20 --per-identity 8 --batch-size 32 --pairs 100 --seeds 0   # smoke check

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
teacher's own accuracy is given for reference. Results: `experiments/out/kd.{json,md}`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import OUT, ROOT, budget_args, run_fit, save, table  # noqa: E402

VARIANTS: dict[str, str] = {
    "student": "",
    "+feature": "feature_weight: 1.0, nd_weight: 0.0, logit_weight: 0.0",
    "+feature+nd": "feature_weight: 1.0, nd_weight: 1.0, logit_weight: 0.0",
    "+feature+nd+logit": "feature_weight: 1.0, nd_weight: 1.0, logit_weight: 1.0, calibration: translate",
}


def teacher_backbone(width: float) -> str:
    """The teacher's architecture in YAML flow style (recipes/arcface.yaml's backbone at ``width``)."""
    return (
        "{class_path: fr_lightning.backbones.IResNet, init_args: "
        f"{{layers: [2, 2, 2, 2], width: {width}, input_size: 56, embedding_dim: 128}}}}"
    )


def callbacks_arg(variant: str, teacher: Path, width: float) -> str:
    if not VARIANTS[variant]:
        return "--trainer.callbacks=[]"
    args = f"teacher: '{teacher}', teacher_backbone: {teacher_backbone(width)}, {VARIANTS[variant]}"
    return f"--trainer.callbacks=[{{class_path: fr_lightning.methods.KD, init_args: {{{args}}}}}]"


def main() -> None:
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
    args = parser.parse_args()
    teacher_epochs = args.teacher_epochs or args.epochs
    data = f"i{args.identities}x{args.per_identity}-b{args.batch_size}-p{args.pairs}"

    # The teacher: trained once, its last checkpoint in its own work directory.
    t_name = f"kd-teacher-w{args.teacher_width}-e{teacher_epochs}-{data}"
    t_work = OUT / "work" / f"{t_name}-s0"
    teacher_args = [
        "--config", str(ROOT / "recipes" / "arcface.yaml"),
        *budget_args(teacher_epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size, keep_checkpoints=True),
        f"--model.init_args.backbone={teacher_backbone(args.teacher_width)}",
        "--checkpoint.save_last=true",
        "--checkpoint.save_top_k=0",
        "--checkpoint.dirpath=teacher",
    ]
    teacher_metrics = run_fit(t_name, teacher_args, 0, workdir=t_work)
    ckpt = t_work / "teacher" / "last.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"the teacher run left no checkpoint at {ckpt}; delete experiments/out/runs/{t_name}-s0.json and rerun")

    budget = budget_args(args.epochs, args.identities, args.per_identity, args.pairs, batch_size=args.batch_size, keep_checkpoints=True)
    student = ["--config", str(ROOT / "recipes" / "kd.yaml"), *budget, "--checkpoint.save_last=false", "--checkpoint.save_top_k=0"]
    tag = f"e{args.epochs}-tw{args.teacher_width}-{data}"
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for seed in args.seeds:
        for variant in args.variants:
            # Students taught by a teacher trained for other epochs get their own cache entries.
            taught = "" if not VARIANTS[variant] or teacher_epochs == args.epochs else f"-te{teacher_epochs}"
            name = f"kd-{variant.strip('+').replace('+', '-')}-{tag}{taught}"
            results[variant].append(run_fit(name, [*student, callbacks_arg(variant, ckpt, args.teacher_width)], seed))

    cmd = "python experiments/kd.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items() if v is not None
    )
    lines = [
        f"Command: `{cmd}`",
        "",
        f"synth-lfw verification accuracy (%), MobileFaceNet-0.5 student, mean ± std over seeds {args.seeds}; "
        f"teacher (iResNet width {args.teacher_width}, seed 0): {100 * teacher_metrics.get('val/synth-lfw/acc', float('nan')):.2f}.",
        "",
        table(results, {"synth-lfw acc": "val/synth-lfw/acc"}),
    ]
    save("kd", {"teacher": [teacher_metrics], **results}, "\n".join(lines))


if __name__ == "__main__":
    main()
