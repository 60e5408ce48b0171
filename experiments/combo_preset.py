"""Two method combinations against their single-method parts.

    python -m experiments.combo_preset --study lowres-kd       # teacher, then baseline / lowres / kd / lowres+kd
    python -m experiments.combo_preset --study noisy-lowres    # 40 % label noise: baseline / coteaching / lowres / both
    python -m experiments.combo_preset --study lowres-kd --quick   # smoke run: tiny data, one seed

Both use ``experiments.lowres_preset``'s network and low-resolution evaluation. ``lowres-kd``
runs on the ``lowres`` preset with that study's budget (its runs ``baseline`` and ``lowres`` are
the same runs as that study's ``baseline`` and ``hrce+logexp`` and share its cache).
``noisy-lowres`` runs on the ``noise`` preset with the co-teaching study's budget and schedule
(150 identities × 20, 10 epochs, forget rate 0.4 ramped over 5 epochs): on ``lowres`` with
40 % noise the baseline stays at chance (``--preset lowres`` runs it there all the same).
The ``lowres`` part is ``LowRes(ce_lr_weight=0)`` (LR view trained by LogExp only): with the
paper's ½·(CE(HR) + CE(LR)) the model stays at chance on the ``lowres`` preset, so a
combination with it would compare against a part that learns nothing:

* ``lowres-kd`` (``recipes/lowres-kd.yaml``'s composition): a teacher (the same iResNet at
  width 0.5, trained once on HR images, seed 100, which no table reports), then the student
  with ``KD`` (feature + ND + calibrated logit terms) alone, ``LowRes`` alone, and both stacked
  (``LowRes`` first, so the KD terms apply to both views against the teacher's HR embedding).
* ``noisy-lowres`` (``recipes/noisy-lowres.yaml``'s composition): 40 % symmetric label noise;
  ``CoTeaching`` alone, ``LowRes`` alone, and both stacked.

Results: ``experiments/out/combo-<study>.{json,md}``; prints its wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from experiments import lowres_preset
from experiments.method_preset import STUDIES
from experiments.preset_study import OUT, fit, flow, gain_table, run_grid, save, table, wall_line

LOWRES: dict[str, Any] = lowres_preset.VARIANTS["hrce+logexp"][0]
#: Co-teaching as the co-teaching study runs it (forget rate 0.4, ramped over 5 epochs).
COTEACHING: dict[str, Any] = STUDIES["coteaching"].variants["coteaching"][0]
#: Default data preset of each study.
PRESETS = {"lowres-kd": "lowres", "noisy-lowres": "noise"}
TEACHER_SEED = 100


def teacher_backbone(image_size: int, width: float = 0.5) -> dict[str, Any]:
    """The teacher: the study network at ``width``."""
    return {
        "class_path": "fr_lightning.backbones.IResNet",
        "init_args": {"layers": [2, 2, 2, 2], "width": width, "input_size": image_size, "embedding_dim": 128},
    }


def kd(teacher: Path, image_size: int) -> dict[str, Any]:
    """``KD`` with the recipe's terms (feature, ND, calibrated logit) from ``teacher``."""
    init = {"teacher": str(teacher), "teacher_backbone": teacher_backbone(image_size), "logit_warmup_epochs": 1.0}
    return {"class_path": "fr_lightning.methods.KD", "init_args": init}


def train_teacher(args: argparse.Namespace, tag: str) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) the HR teacher; its ``last.ckpt`` path and metrics."""
    name = f"combo-teacher-{tag}"
    run = [
        *lowres_preset.run_args("baseline", args, preset=args.preset),
        f"--model.init_args.backbone={flow(teacher_backbone(args.image_size))}",
        "--trainer.enable_checkpointing=true",
        "--checkpoint.save_last=true",
        "--checkpoint.save_top_k=0",
        "--checkpoint.dirpath=teacher",
    ]
    metrics = fit(name, run, TEACHER_SEED, args.out_dir)
    ckpt = args.out_dir / "work" / f"{name}-s{TEACHER_SEED}" / "teacher" / "last.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"the teacher run left no checkpoint at {ckpt}; delete {args.out_dir / 'runs' / (name + f'-s{TEACHER_SEED}.json')} and rerun")
    return ckpt, metrics


def variants(args: argparse.Namespace, tag: str) -> tuple[dict[str, tuple[str, list[dict[str, Any]]]], list[str]]:
    """Variant -> (run name, method callbacks), and extra report lines (the teacher's accuracy)."""
    lines: list[str] = []
    if args.study == "lowres-kd":
        ckpt, teacher = train_teacher(args, tag)
        lines.append(f"Teacher (iResNet width 0.5, seed {TEACHER_SEED}): full {100 * teacher['val/synth-lowres@full/acc']:.2f} %, 8 px {100 * teacher['val/synth-lowres@8/acc']:.2f} %.")
        out = {
            "baseline": (f"lowres_preset-baseline-{tag}", []),
            "lowres": (f"lowres_preset-hrce-logexp-{tag}", [LOWRES]),
            "kd": (f"combo-kd-{tag}", [kd(ckpt, args.image_size)]),
            "lowres+kd": (f"combo-lowres-kd-{tag}", [LOWRES, kd(ckpt, args.image_size)]),
        }
        return out, lines
    out = {
        "baseline": (f"combo-noisy-baseline-{tag}", []),
        "coteaching": (f"combo-noisy-coteaching-{tag}", [COTEACHING]),
        "lowres": (f"combo-noisy-lowres-{tag}", [LOWRES]),
        "coteaching+lowres": (f"combo-noisy-coteaching-lowres-{tag}", [LOWRES, COTEACHING]),
    }
    return out, lines


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=["lowres-kd", "noisy-lowres"], required=True)
    parser.add_argument("--noise", type=float, default=0.4, help="symmetric label-noise rate (noisy-lowres)")
    parser.add_argument("--preset", choices=["lowres", "noise"], default=None, help="data preset (default: lowres-kd on lowres, noisy-lowres on noise)")
    argv = sys.argv[1:] if argv is None else argv
    known, _ = parser.parse_known_args(argv)
    preset = known.preset or PRESETS[known.study]
    quick = "--quick" in argv
    base = lowres_preset.parse(["--quick"] if quick else [])
    if preset == "noise" and not quick:
        vars(base).update(STUDIES["coteaching"].budget)
    for key in ("epochs", "identities", "per_identity", "batch_size", "image_size", "pairs", "jobs"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=getattr(base, key))
    parser.add_argument("--seeds", nargs="+", type=int, default=base.seeds)
    parser.add_argument("--sizes", nargs="+", type=int, default=base.sizes)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke run (lowres_preset's --quick budget)")
    args = parser.parse_args(argv)
    args.preset = preset
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    args = parse(argv)
    start = time.time()
    tag = f"e{args.epochs}-i{args.identities}x{args.per_identity}-b{args.batch_size}-s{args.image_size}-p{args.pairs}"
    noise = args.noise if args.study == "noisy-lowres" else None
    if noise is not None:
        tag += f"-n{args.noise}"
    if args.preset != lowres_preset.PRESET:
        tag += f"-{args.preset}"
    named, lines = variants(args, tag)
    runs = {
        v: (name, lowres_preset.run_args(v, args, callbacks=callbacks, label_noise=noise, preset=args.preset))
        for v, (name, callbacks) in named.items()
    }
    results = run_grid(runs, args.seeds, args.out_dir, args.jobs, show={"full": "val/synth-lowres@full/acc"})
    cols = {lowres_preset.label(s): f"val/synth-lowres@{'full' if s == 0 else s}/acc" for s in args.sizes}
    head = f"Combination `{args.study}` on preset `{args.preset}`" + (f" with {100 * args.noise:.0f} % symmetric label noise" if noise else "")
    lines = [
        f"{head}, budget {tag}, seeds {args.seeds}. Verification accuracy (%), one image of each pair degraded to r px (112-px scale):",
        "",
        *table(results, cols),
        "",
        "Gain over the baseline (points, paired by seed; mean ± std, worst seed):",
        "",
        *gain_table(results, cols),
        "",
        *lines,
    ]
    both = next(v for v in named if "+" in v)
    for part in (v for v in named if v != "baseline" and "+" not in v):
        lines += ["", f"`{both}` over `{part}` alone (points, paired by seed):", ""]
        lines += gain_table({part: results[part], both: results[both]}, cols, baseline=part)
    wall = time.time() - start
    lines += ["", wall_line(results), f"Study wall time: {wall:.0f} s"]
    save(f"combo-{args.study}" + ("-quick" if args.quick else ""), args.out_dir, results, lines)
    print(f"wall time {wall:.0f} s")
    return results


if __name__ == "__main__":
    main()
