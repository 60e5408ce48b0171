"""F²C vs Partial FC vs full FC at the same budget on the synthetic faces (≥ 3 seeds).

    python -m experiments.f2c_study                  # 3 classifiers × 3 seeds (the reported study)
    python -m experiments.f2c_study --quick          # smoke run: tiny data, one seed

Classifiers (`recipes/arcface.yaml`'s network and head: iResNet at width 1/4, ArcFace s = 32,
m = 0.5, SGD; same data, image size and seeds):

* ``full-fc`` — every class centre scored each step;
* ``partial-fc`` — ``PartialFC(sample_rate=f)``: a fraction ``f`` of the centres per step (all
  positives kept);
* ``f2c`` — ``F2C(pool_fraction=f)`` + ``F2CGallery`` + the dual loaders: a pool of ``f·C``
  identity features from the EMA gallery network, no class centres.

Same budget: the same number of optimizer steps with the same number of images per step. An F²C
item is 6 images (one instance pair, two identity pairs), so its batch is ``batch_size / 6``
items and, as one of its epochs (one pass over the instance pairs) takes 3× the steps, it runs
``epochs / 3`` epochs (``--epochs`` must be a multiple of 3). F²C's extra no-grad gallery forward
is not budgeted (its wall time is reported).

Results: ``experiments/out/f2c_study.{json,md}`` (mean ± std over seeds, gain paired by seed over
full FC and over Partial FC). Prints its wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from experiments.preset_study import OUT, ROOT, data_args, flow, gain_lines, pairs_entry, run_grid, save, table, trainer_args, wall_line

VARIANTS = ("full-fc", "partial-fc", "f2c")
#: Images of one dual-loader item (one instance pair + two identity pairs) and epochs ratio.
ITEM_IMAGES, IDENTITY_PAIRS = 6, 2


def run_args(variant: str, args: argparse.Namespace) -> list[str]:
    """`fr fit` arguments of one classifier at the study's budget."""
    val = [pairs_entry("synth-lfw", "standard", args.pairs, 0, args.preset), pairs_entry("synth-cfpfp", "cross_pose", args.pairs, 1, args.preset)]
    out = ["--config", str(ROOT / "recipes" / "arcface.yaml")]
    out += data_args(args.preset, args.identities, args.per_identity, val, args.batch_size, image_size=args.image_size)
    callbacks: list[dict[str, object]] = []
    epochs = args.epochs
    if variant == "partial-fc":
        classifier = {"class_path": "fr_lightning.classifiers.PartialFC", "init_args": {"sample_rate": args.fraction}}
        out.append(f"--model.init_args.classifier={flow(classifier)}")
    elif variant == "f2c":
        classifier = {"class_path": "fr_lightning.classifiers.F2C", "init_args": {"pool_fraction": args.fraction}}
        dual = {"class_path": "fr_lightning.data.dual_loaders.DualLoaders", "init_args": {"identity_pairs": IDENTITY_PAIRS}}
        out += [
            f"--model.init_args.classifier={flow(classifier)}",
            f"--data.init_args.dual_loaders={flow(dual)}",
            f"--data.init_args.batch_size={args.batch_size // ITEM_IMAGES}",
        ]
        epochs = args.epochs // (ITEM_IMAGES // 2)
    return out + trainer_args(epochs, callbacks)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of full FC / Partial FC (a multiple of 3)")
    parser.add_argument("--fraction", type=float, default=0.25, help="Partial FC sample rate = F2C pool fraction")
    parser.add_argument("--preset", default=None, help="synthetic difficulty preset (default: the plain renderer)")
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=60, help="images per step (a multiple of 6)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 epochs of 6 identities × 4, 40 pairs, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.identities, args.per_identity = [0], 3, 6, 4
        args.batch_size, args.pairs, args.jobs = 12, 40, 1
    if args.epochs % (ITEM_IMAGES // 2) or args.batch_size % ITEM_IMAGES:
        parser.error("--epochs must be a multiple of 3 and --batch-size a multiple of 6 (F2C's budget must match)")
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    args = parse(argv)
    start = time.time()
    tag = f"e{args.epochs}-f{args.fraction}-i{args.identities}x{args.per_identity}-b{args.batch_size}-s{args.image_size}-p{args.pairs}-{args.preset}"
    cols = {"synth-lfw": "val/synth-lfw/acc", "synth-cfpfp": "val/synth-cfpfp/acc"}
    runs = {v: (f"f2c_study-{v}-{tag}", run_args(v, args)) for v in args.variants}
    results = run_grid(runs, args.seeds, args.out_dir, args.jobs, show=cols)
    lines = [
        f"Budget {tag} (same steps and images per step), seeds {args.seeds}. Verification accuracy (%), "
        "mean ± std over seeds:",
        "",
        *table(results, cols),
    ]
    for base in ("full-fc", "partial-fc"):
        lines += gain_lines(results, cols, baseline=base)
    wall = time.time() - start
    lines += ["", wall_line(results)]
    lines += ["", f"Study wall time {wall:.0f} s."]
    study = "f2c_study" if not args.quick else "f2c_study-quick"
    save(study if list(args.variants) == list(VARIANTS) else f"{study}-{'_'.join(args.variants)}", args.out_dir, results, lines)
    print(f"wall time {wall:.0f} s")
    return results


if __name__ == "__main__":
    main()
