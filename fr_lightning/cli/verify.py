"""``fr verify MODEL A B``: cosine similarity of two faces and a same/different decision.

The decision is "same" when the cosine of the two L2-normalised flip-test embeddings is at
least the threshold. The threshold is ``--threshold T``, or read from a validation run's
``verification.json`` (``--threshold-from FILE_OR_RUN_DIR``; with a ``.ckpt`` MODEL the run's
own file is used when present): each set's ``threshold`` is its best-accuracy cosine threshold;
``--set NAME`` picks the set (needed when the file has several).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from fr_lightning.cli.embed import add_model_arguments, embed_files, load_model_argument
from fr_lightning.eval.report import read_json

__all__ = ["main", "read_threshold", "verification_json_for"]


def verification_json_for(model: Path) -> Path | None:
    """``<run dir>/verification.json`` of a checkpoint under ``<run dir>/checkpoints/`` (or beside it)."""
    for candidate in (model.parent.parent / "verification.json", model.parent / "verification.json"):
        if candidate.is_file():
            return candidate
    return None


def read_threshold(source: str | Path, set_name: str | None = None) -> tuple[float, str]:
    """``(threshold, set name)`` from a ``verification.json`` or a run folder holding one.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not ``{"<set>": {"threshold": float, ...}}``, the set is unknown,
            several sets exist and ``set_name`` is None, or the threshold is not a finite number in [-1, 1].
    """
    path = Path(source)
    if path.is_dir():
        path = path / "verification.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (the verification callback writes it at each validation)")
    data = read_json(path)  # a DataFormatError (a ValueError) naming the file
    sets = {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}
    if not sets:
        raise ValueError(f'{path}: expected {{"<set>": {{"threshold": ..., "acc": ...}}}}, found no set entries')
    if set_name is None:
        if len(sets) > 1:
            raise ValueError(f"{path} has several sets {sorted(sets)}; choose one with --set")
        set_name = next(iter(sets))
    if set_name not in sets:
        raise ValueError(f"{path} has no set '{set_name}' (it has {sorted(sets)})")
    value = sets[set_name].get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ValueError(f"{path}: '{set_name}.threshold' must be a cosine in [-1, 1], got {value!r}")
    return float(value), set_name


def main(argv: list[str] | None = None) -> None:
    """Command-line entry of ``fr verify``."""
    parser = argparse.ArgumentParser(prog="fr verify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help=".ckpt, backbone .pth (with --backbone), .onnx or TorchScript (.pt/.ts) model")
    parser.add_argument("image_a", help="first face image")
    parser.add_argument("image_b", help="second face image")
    parser.add_argument("--threshold", type=float, default=None, help="cosine threshold: same if cos >= T")
    parser.add_argument("--threshold-from", default=None, metavar="JSON_OR_RUN_DIR", help="read the threshold from a verification.json")
    parser.add_argument("--set", default=None, help="which set's threshold to use from verification.json")
    parser.add_argument("--landmarks", default=None, help="'path x1 y1 ... x5 y5' lines for the two images: align them first")
    add_model_arguments(parser)
    args = parser.parse_args(argv)

    from fr_lightning.deploy.images import read_landmarks

    model = Path(args.model)
    try:
        if args.threshold is not None and args.threshold_from is not None:
            raise ValueError("pass either --threshold or --threshold-from, not both")
        threshold, origin = None, ""
        if args.threshold is not None:
            if not -1.0 <= args.threshold <= 1.0:
                raise ValueError(f"--threshold must be a cosine in [-1, 1], got {args.threshold}")
            threshold, origin = args.threshold, "--threshold"
        else:
            source = args.threshold_from or (verification_json_for(model) if model.suffix == ".ckpt" else None)
            if source is not None:
                threshold, name = read_threshold(source, args.set)
                origin = f"set '{name}' of {Path(source)}"
        names = [args.image_a, args.image_b]
        files = [Path(n) for n in names]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"image {f} does not exist")
        landmarks = None
        if args.landmarks:
            table = read_landmarks(args.landmarks)
            landmarks = {n: table.get(n, table.get(Path(n).name)) for n in names}
            lost = [n for n, v in landmarks.items() if v is None]
            if lost:
                raise ValueError(f"{args.landmarks} has no landmarks for {lost}")
        embedder = load_model_argument(args)
        emb, _ = embed_files(embedder, files, names, landmarks, batch_size=2, progress=False)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"fr verify: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    cosine = float(np.dot(emb[0].astype(np.float64), emb[1].astype(np.float64)))
    print(f"cosine similarity: {cosine:.6f}")
    if threshold is None:
        print("decision: none (no threshold: pass --threshold T or --threshold-from <run dir>/verification.json)")
    else:
        verdict = "same" if cosine >= threshold else "different"
        print(f"decision: {verdict} (threshold {threshold:.6f} from {origin})")


if __name__ == "__main__":
    main()
