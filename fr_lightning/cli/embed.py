"""``fr embed MODEL IMAGES OUT.npy``: L2-normalised flip-test embeddings of a folder or list of faces.

MODEL is a training ``.ckpt`` (rebuilt from its run's ``config.yaml`` or ``--config``), a bare
``backbone.pth`` (insightface's published weights or ``fr export``'s; ``--backbone NAME`` gives
its architecture), an ``.onnx`` graph (``fr export``'s or insightface's recognition models such as
``w600k_r50.onnx``) or a TorchScript file (``--image-size`` needed). IMAGES is a
folder (all images below it, sorted by relative path) or a list file (one path per line). Faces
are aligned crops already, or ``--landmarks FILE`` (``path x1 y1 ... x5 y5`` per image, as for
``fr data align``) aligns each one to the 5-point template at the model's input size, or
``--detector det_10g.onnx`` finds the face in each photo (one per photo, ``--pick``) and aligns it;
photos without a face are left out and listed in ``OUT.skipped.txt``.

Writes ``OUT.npy`` (float32 ``[N, D]``, row i = i-th file) and ``OUT.files.txt`` (the file order,
one name per line as listed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["add_model_arguments", "embed_files", "load_model_argument", "main", "order_file"]


def order_file(out: Path) -> Path:
    """Where the file order of ``out`` (an ``.npy``) is written: ``<stem>.files.txt`` beside it."""
    return out.with_name(out.stem + ".files.txt")


def embed_files(
    embedder: object,
    files: Sequence[Path],
    names: Sequence[str],
    landmarks: dict[str, np.ndarray] | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """Flip-test embeddings ``[N, D]`` of ``files`` in order, and how many images were resized.

    Args:
        embedder: a :class:`~fr_lightning.deploy.runtime.Embedder`.
        files: image paths.
        names: their names as listed (keys of ``landmarks``).
        landmarks: optional ``{name: [5, 2]}``; every image then needs an entry.
        batch_size: images per model call (each call runs ``2 x batch_size`` with the mirrors).
        progress: show a progress bar on stderr.
    """
    from tqdm import tqdm

    from fr_lightning.deploy.images import load_face, normalize

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if landmarks is not None:
        missing = [n for n in names if n not in landmarks]
        if missing:
            raise ValueError(f"the landmarks file has no entry for {len(missing)} images, e.g. {missing[:3]}")
    from fr_lightning.data.transforms import SizeCheck

    size = embedder.image_size  # type: ignore[attr-defined]
    chunks: list[np.ndarray] = []
    resized = 0
    check = SizeCheck(size, f"these {len(files)} images")  # one warning for the set (FR_IMAGE_SIZE=refuse stops)

    def load(i: int) -> tuple[np.ndarray, bool]:
        return load_face(files[i], size, None if landmarks is None else landmarks[names[i]], check)

    bar = tqdm(total=len(files), unit="img", desc="fr embed", disable=not progress, file=sys.stderr)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(files), batch_size):
            faces = list(pool.map(load, range(start, min(start + batch_size, len(files)))))
            resized += sum(r for _, r in faces)
            chunks.append(embedder.flip_test(normalize(np.stack([f for f, _ in faces]))))  # type: ignore[attr-defined]
            bar.update(len(faces))
    bar.close()
    return np.concatenate(chunks).astype(np.float32), resized


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command taking a MODEL file shares (``fr embed``, ``fr verify``)."""
    parser.add_argument("--config", action="append", default=None, metavar="YAML", help=".ckpt only: model config (default: the run's config.yaml)")
    parser.add_argument("--backbone", default=None, metavar="NAME", help=".pth only: its architecture (iresnet18/34/50/100/200, mobilefacenet, ...)")
    parser.add_argument("--image-size", type=int, default=None, help="TorchScript: input side in px; .pth: when not 112")


def load_model_argument(args: argparse.Namespace, threads: int | None = None) -> object:
    """The embedder of ``args.model`` with the shared options (``--config`` files composed as ``fr fit`` does)."""
    from fr_lightning.cli.compose import read_config
    from fr_lightning.deploy.runtime import load_embedder

    config = read_config(args.config) if args.config else None
    source = " + ".join(args.config) if args.config else None
    return load_embedder(args.model, config, source, threads, args.image_size, args.backbone)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry of ``fr embed``."""
    parser = argparse.ArgumentParser(prog="fr embed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help=".ckpt, backbone .pth (with --backbone), .onnx or TorchScript (.pt/.ts) model")
    parser.add_argument("images", help="folder of face images, or a text file listing them")
    parser.add_argument("output", help="output .npy of L2-normalised flip-test embeddings")
    parser.add_argument("--landmarks", default=None, help="'path x1 y1 ... x5 y5' per image: align before embedding")
    parser.add_argument("--detector", default=None, metavar="MODEL", help="SCRFD/RetinaFace 5-point .onnx: detect and align unaligned photos")
    parser.add_argument("--pick", choices=["largest", "central"], default="largest", help="with --detector: face kept when there are several")
    parser.add_argument("--min-face", type=float, default=0.0, metavar="PX", help="with --detector: smallest face counted (box's shorter side)")
    parser.add_argument("--score", type=float, default=0.5, help="with --detector: lowest detection score counted")
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: the runtime's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from fr_lightning.deploy.images import list_images, read_landmarks

    out = Path(args.output)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    try:
        names, files = list_images(args.images)
        landmarks = read_landmarks(args.landmarks) if args.landmarks else None
        skipped: dict[str, str] = {}
        if args.detector:
            from fr_lightning.detect import SCRFD, detect_landmarks

            if landmarks is not None:
                raise ValueError("give --landmarks or --detector, not both")
            detector = SCRFD(args.detector, threads=args.threads)
            landmarks, skipped = detect_landmarks(files, names, detector, args.pick, args.min_face, args.score, not args.no_progress)
            files, names = [f for f, n in zip(files, names) if n in landmarks], [n for n in names if n in landmarks]
            if not names:
                raise ValueError(f"{args.images}: no face found in any of the {len(skipped)} photos")
        embedder = load_model_argument(args, args.threads)
        emb, resized = embed_files(embedder, files, names, landmarks, args.batch_size, not args.no_progress)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"fr embed: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    from fr_lightning.utils.atomic import AtomicFiles

    skip_file = out.with_name(out.stem + ".skipped.txt")
    try:  # temporary names, renamed together once all are written: never a half-written output
        with AtomicFiles(out.parent) as outputs:
            with open(outputs.path(out.name), "wb") as fh:
                np.save(fh, emb)
            outputs.path(order_file(out).name).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
            if args.detector:
                outputs.path(skip_file.name).write_text("".join(f"{n}\t{why}\n" for n, why in skipped.items()), encoding="utf-8")
    except OSError as err:
        print(f"fr embed: cannot write {out}: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    if args.detector:
        if skipped:
            print(f"fr embed: {len(skipped)} photos gave no face and are not embedded, e.g. {next(iter(skipped))} ({next(iter(skipped.values()))}); all in {skip_file}", file=sys.stderr)
    note = f"; {resized} images were not {embedder.image_size}x{embedder.image_size} and were resized" if resized else ""
    print(f"wrote {emb.shape[0]} x {emb.shape[1]} L2-normalised flip-test embeddings to {out} (order: {order_file(out)}){note}")


if __name__ == "__main__":
    main()
