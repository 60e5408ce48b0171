"""``fr eval``: benchmark evaluations of a model from the benchmarks' own folder layouts.

    fr eval ijb --root DIR --ckpt MODEL [--config RECIPE] [--target IJBC|IJBB] [--out DIR]
                [--no-norm-score] [--no-detector-score] [--no-flip] [--no-wandb]
    fr eval tinyface --root DIR --ckpt MODEL [--config RECIPE] [--out DIR] [--no-wandb]

MODEL is what ``fr embed`` takes: a ``.ckpt`` of ``fr fit``, a bare ``backbone.pth`` with
``--backbone NAME`` (insightface's published weights), an ``.onnx`` graph (``fr export``'s or
insightface's) or TorchScript with ``--image-size``.

Features go through a resumable cache (``--cache``, default ``OUT/features``): an interrupted
run picks up where it stopped. Results are printed, written to ``OUT/<set>.json`` and, unless
``--no-wandb``, logged to a W&B ``eval`` run (offline when no API key is configured).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fr_lightning.data import DataFormatError

__all__ = ["build_parser", "main", "run_ijb", "run_tinyface"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_ijb(
    root: Path,
    embedder: Any,
    ckpt: Path,
    out: Path,
    target: str | None = None,
    cache: Path | None = None,
    batch_size: int = 128,
    workers: int = 2,
    use_norm_score: bool = True,
    use_detector_score: bool = True,
    use_flip: bool = True,
    one_to_n: bool = True,
    one_to_n_protocol: str = "per-gallery",
    wandb: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Extract (or resume) features of an IJB folder with ``embedder`` and evaluate them.

    Args:
        root: IJB folder (``meta/``, ``loose_crop/``).
        embedder: ``uint8 [B, S, S, 3] -> [B, 2, D]`` with an ``image_size`` attribute.
        ckpt: the checkpoint file (keys the feature cache).
        out: result folder (``<target>.json``, ``<target>_scores.npy``, ``features/``).
        target, cache, batch_size, workers: see ``fr eval ijb --help``.
        use_norm_score, use_detector_score, use_flip: insightface's N / D / F switches.
        one_to_n: also run the 1:N protocol when the set has its lists.
        one_to_n_protocol: ``per-gallery`` (open set, NIST definitions) or ``insightface`` (``ijb_1n.py``'s merged, closed-set scoring).
        wandb: log to a W&B eval run.
        progress: show a progress bar.

    Returns:
        The results dict (also written as JSON).
    """
    from fr_lightning.eval.ijb import load_ijb
    from fr_lightning.eval.ijb.evaluate import evaluate_ijb, format_table, log_wandb, write_json
    from fr_lightning.eval.ijb.features import AlignedImages, FeatureCache, extract_features

    ijb = load_ijb(root, target, one_to_n=one_to_n)
    list_file = root / "meta" / f"{ijb.target}_name_5pts_score.txt"
    paths = [ijb.image_path(i) for i in range(len(ijb.names))]
    dataset = AlignedImages(paths, ijb.landmarks, embedder.image_size, where=f"{list_file}, line")
    key = FeatureCache.key_for(ckpt, list_file.read_bytes(), embedder.image_size)
    store = FeatureCache(cache if cache is not None else out / "features", key, len(paths))
    if store.done:
        _say(f"resuming from {store.dir}: {len(store.done)}/{store.num_chunks} chunks already extracted")
    feats = extract_features(dataset, embedder, store, batch_size, workers, progress, desc=f"{ijb.target} features")
    results, scores = evaluate_ijb(ijb, feats, use_norm_score, use_detector_score, use_flip, one_to_n_protocol)
    results.update(root=str(root), ckpt=str(ckpt), feature_cache=str(store.dir))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{ijb.target}_scores.npy", scores)
    write_json(results, out / f"{ijb.target}.json")
    _say(format_table(results))
    _say(f"wrote {out / (ijb.target + '.json')} and {out / (ijb.target + '_scores.npy')}")
    if wandb:
        naming = eval_run_naming(ckpt, f"{ijb.target}-{ckpt.stem}")
        where = log_wandb(results, naming["name"], out, {"root": str(root), "ckpt": str(ckpt), **results["switches"]}, naming.get("group"))
        _say(f"logged to W&B ({where})")
    return results


def run_tinyface(
    root: Path,
    embedder: Any,
    ckpt: Path,
    out: Path,
    cache: Path | None = None,
    batch_size: int = 256,
    workers: int = 2,
    use_flip: bool = True,
    wandb: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """TinyFace-style rank-1/5/20 of a checkpoint on a ``Probe``/``Gallery_Match``/``Gallery_Distractor`` folder."""
    from fr_lightning.eval.ijb.evaluate import write_json
    from fr_lightning.eval.ijb.features import AlignedImages, FeatureCache, extract_features
    from fr_lightning.eval.tinyface import load_tinyface, rank_accuracy
    from fr_lightning.eval.verification import l2_normalize

    tf = load_tinyface(root)
    paths = tf.paths
    listing = "\n".join(str(p.relative_to(root)) for p in paths).encode()
    key = FeatureCache.key_for(ckpt, listing, embedder.image_size)
    store = FeatureCache(cache if cache is not None else out / "features", key, len(paths))
    dataset = AlignedImages(paths, None, embedder.image_size, where=f"{root}: image")
    feats = extract_features(dataset, embedder, store, batch_size, workers, progress, desc="tinyface features")
    emb = l2_normalize(feats[:, 0] + feats[:, 1] if use_flip else feats[:, 0])
    n_probe = len(tf.probes)
    results: dict[str, Any] = {"set": "tinyface", "root": str(root), "ckpt": str(ckpt), "flip": use_flip}
    results.update(rank_accuracy(emb[:n_probe], tf.probe_ids, emb[n_probe:], tf.gallery_ids))
    write_json(results, out / "tinyface.json")
    ranks = "  ".join(f"{k} {100 * v:.2f}" for k, v in results.items() if k.startswith("rank-"))
    _say(f"TinyFace identification ({int(results['probes'])} probes, {int(results['gallery'])} gallery images): {ranks}")
    _say(f"wrote {out / 'tinyface.json'}")
    if wandb:
        import wandb as wb

        naming = eval_run_naming(ckpt, f"tinyface-{ckpt.stem}")
        run = wb.init(
            project="fr-lightning", job_type="eval", name=naming["name"], group=naming.get("group"), tags=["eval:tinyface"],
            dir=str(out), config={"root": str(root), "ckpt": str(ckpt)}, reinit=True,
        )  # fmt: skip
        run.log({f"tinyface/{k}": v for k, v in results.items() if k.startswith("rank-")})
        run.finish()
    return results


def eval_run_naming(ckpt: Path, fallback: str) -> dict[str, str]:
    """W&B name and group of an evaluation run: those of the fit run that wrote ``ckpt``
    (``<recipe>-<id>``, group ``<recipe>``, as ``fr fit|validate|test`` name theirs), or
    ``fallback`` for a checkpoint that does not record them (older or foreign checkpoints)."""
    from fr_lightning.tracking.resume import checkpoint_run_naming

    return {"name": fallback, **checkpoint_run_naming(ckpt)}


def build_parser() -> argparse.ArgumentParser:
    """The ``fr eval`` argument parser."""
    parser = argparse.ArgumentParser(prog="fr eval", description="Evaluate a model on IJB-B/C or a TinyFace-style set.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("ijb", "IJB-B / IJB-C 1:1 TAR@FAR and 1:N (official insightface layout)"), ("tinyface", "TinyFace-style low-resolution rank-1/5/20")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--root", type=Path, required=True, help="the data set folder")
        p.add_argument("--ckpt", "--model", dest="ckpt", type=Path, required=True, help="the model: .ckpt, backbone .pth (with --backbone), .onnx or TorchScript")
        p.add_argument("--config", action="append", default=None, help=".ckpt only: recipe that builds the model (default: the run's saved config.yaml)")
        p.add_argument("--backbone", default=None, metavar="NAME", help=".pth only: its architecture (iresnet18/34/50/100/200, mobilefacenet, ...)")
        p.add_argument("--image-size", type=int, default=None, help="TorchScript: input side in px; .pth: when not 112")
        p.add_argument("--out", type=Path, default=Path("runs/eval"), help="result folder (default: runs/eval)")
        p.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: OUT/features)")
        p.add_argument("--batch-size", type=int, default=128)
        p.add_argument("--workers", type=int, default=2, help="image loading processes")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
        p.add_argument("--no-flip", dest="flip", action="store_false", help="F0: no flip test")
        p.add_argument("--no-wandb", dest="wandb", action="store_false", help="do not log to W&B")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        if name == "ijb":
            p.add_argument("--target", default=None, choices=["IJBC", "IJBB", "ijbc", "ijbb"], help="default: detected from meta/")
            p.add_argument("--no-norm-score", dest="norm_score", action="store_false", help="N0: normalise image features before pooling")
            p.add_argument("--no-detector-score", dest="detector_score", action="store_false", help="D0: no faceness weighting")
            p.add_argument("--no-1n", dest="one_to_n", action="store_false", help="skip the 1:N protocol")
            p.add_argument(
                "--1n-protocol", dest="one_to_n_protocol", default="per-gallery", choices=["per-gallery", "insightface"],
                help="1:N scoring: per gallery, open set (default) or insightface's ijb_1n.py (galleries merged, closed set; docs/ijb.md)",
            )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``fr eval <ijb|tinyface> ...``."""
    args = build_parser().parse_args(argv)
    try:
        from fr_lightning.cli.compose import read_config
        from fr_lightning.deploy.runtime import load_embedder

        configs = [str(c) for c in args.config or []]
        config = read_config(configs) if configs else None
        embedder = load_embedder(args.ckpt, config, " + ".join(configs) or None, None, args.image_size, args.backbone, args.device)
        common = dict(cache=args.cache, batch_size=args.batch_size, workers=args.workers, use_flip=args.flip, wandb=args.wandb, progress=args.progress)
        if args.command == "ijb":
            run_ijb(args.root, embedder, args.ckpt, args.out, target=args.target, use_norm_score=args.norm_score, use_detector_score=args.detector_score, one_to_n=args.one_to_n, one_to_n_protocol=args.one_to_n_protocol, **common)
        else:
            run_tinyface(args.root, embedder, args.ckpt, args.out, **common)
    except (DataFormatError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"fr eval {args.command}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
