"""``fr data``: write, convert, inspect and align face datasets.

    fr data synth OUT [--identities N --per-identity K --image-size S --format png|jpg --pairs P]
    fr data convert SRC OUT [--to recordio|wds] [--list FILE] [--landmarks F --group F]
    fr data make-bin PAIRS OUT [--root DIR] [--image-size S]
    fr data inspect PATH [--grid PNG] [--samples N]
    fr data verify PATH [--no-progress]
    fr data align SRC LANDMARKS OUT [--size 112]
    fr data align RAW OUT --detector det_10g.onnx [--pick largest|central --min-face PX --score S --to rec|wds]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.wds import read_shard_index

_FMT = {"png": ".png", "jpg": ".jpg"}


def _say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- synth


def synth(
    out: Path,
    identities: int = 1500,
    per_identity: int = 20,
    image_size: int = 112,
    fmt: str = "jpg",
    quality: int = 95,
    pairs: int = 3000,
    seed: int = 0,
    nuisance_scale: float = 1.0,
) -> dict[str, int]:
    """Write the synthetic faces as ``train.rec/.idx/property`` + ``landmarks.npy``/``group.npy`` + ``.bin`` sets.

    Returns:
        ``{"images": ..., "classes": ..., <set name>: pairs, ...}``.
    """
    from fr_lightning.data import SyntheticSource, default_val_sets, group_val_sets, write_bin, write_recordio

    out.mkdir(parents=True, exist_ok=True)
    source = SyntheticSource(num_identities=identities, samples_per_identity=per_identity, seed=seed, nuisance_scale=nuisance_scale)
    renderer = source.renderer(image_size)
    landmarks: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    ids_per_batch = max(1, 512 // per_identity)

    def samples() -> Iterator[tuple[np.ndarray, int]]:
        # Identity c's k-th image is render(c, k), as in SyntheticFaceDataset; identity-major order.
        for c0 in range(0, identities, ids_per_batch):
            c1 = min(identities, c0 + ids_per_batch)
            batch = renderer.render(np.repeat(np.arange(c0, c1), per_identity), np.tile(np.arange(per_identity), c1 - c0))
            landmarks.append(batch.landmarks.astype(np.float32))
            groups.append(batch.group.astype(np.int64))
            yield from zip(batch.images, batch.labels.tolist())

    t0 = time.perf_counter()
    n = write_recordio(out, samples(), num_classes=identities, img_fmt=_FMT[fmt], quality=quality, image_size=(image_size, image_size))
    np.save(out / "landmarks.npy", np.concatenate(landmarks))
    np.save(out / "group.npy", np.concatenate(groups))
    _say(f"wrote {n} images of {identities} identities to {out}/train.rec ({time.perf_counter() - t0:.1f} s)")
    result = {"images": n, "classes": identities}
    if pairs > 0:
        for s in default_val_sets(pairs) + group_val_sets(pairs):
            s.seed, s.nuisance_scale = seed, nuisance_scale  # type: ignore[attr-defined]
            ps = s.build(image_size)
            images = np.concatenate([ps.load(np.arange(a, min(a + 512, ps.num_images))) for a in range(0, ps.num_images, 512)])
            write_bin(out / f"{ps.name}.bin", images, ps.issame, img_fmt=_FMT[fmt], quality=quality)
            result[ps.name] = len(ps.issame)
            _say(f"wrote {out / (ps.name + '.bin')} ({len(ps.issame)} pairs)")
    return result


# --------------------------------------------------------------------------- convert


def _kind(path: Path) -> str:
    if path.is_file() and path.suffix == ".bin":
        return "bin"
    if (path / "train.rec").is_file():
        return "recordio"
    if (path / "shards.json").is_file():
        return "wds"
    if path.is_dir():
        return "folder"
    raise FileNotFoundError(f"{path}: not found (expected a RecordIO folder, a WebDataset shard folder, an image folder or a .bin)")


def _warn_one_identity(src: Path, list_file: str | None) -> None:
    """Warn (on stderr) about a folder or list of one identity: it converts, but ``fr fit`` cannot train on it.

    An empty folder is refused by the scan itself (exit 2, naming the folder).
    """
    from fr_lightning.data.sources.folder import scan_folder

    index = scan_folder(src, list_file)
    if len(set(index.labels.tolist())) < 2:
        print(
            f"fr data convert: warning: {src} holds only one identity ({len(index)} images); training needs at least "
            "two identities, one sub-folder (or list label) each. Add sub-folders of other people's faces, or give "
            "the folder that holds all of them.",
            file=sys.stderr,
        )


def convert(
    src: Path,
    out: Path,
    to: str | None = None,
    list_file: str | None = None,
    max_count: int = 10_000,
    shuffle: bool = True,
    seed: int = 0,
    landmarks: str | None = None,
    group: str | None = None,
) -> str:
    """Folder -> RecordIO, folder -> WebDataset or RecordIO -> WebDataset; returns a one-line summary."""
    from fr_lightning.data.convert import folder_to_recordio, folder_to_wds, recordio_to_wds

    kind = "folder" if list_file is not None else _kind(src)
    to = to or ("recordio" if kind == "folder" else "wds")
    if kind == "folder":
        _warn_one_identity(src, list_file)
    if kind == "folder" and to == "recordio":
        if landmarks or group:
            raise ValueError("side files are not carried into RecordIO; pass them to the RecordIO source instead")
        n = folder_to_recordio(src, out, list_file)
        return f"wrote {n} images to {out}/train.rec"
    if kind == "folder" and to == "wds":
        index = folder_to_wds(src, out, list_file, max_count, shuffle, seed, landmarks, group)
    elif kind == "recordio" and to == "wds":
        index = recordio_to_wds(src, out, max_count, shuffle, seed, landmarks, group)
    else:
        raise ValueError(f"cannot convert {kind} ({src}) to {to}: supported are folder->recordio, folder->wds, recordio->wds")
    meta = index["fr_lightning"]
    return f"wrote {meta['num_samples']} images of {meta['num_classes']} classes in {len(index['shardlist'])} tar shards to {out}"


# --------------------------------------------------------------------------- make-bin


def make_bin(pairs_file: Path, out: Path, root: Path | None = None, image_size: int | None = None, fmt: str = "jpg") -> int:
    """Build a ``.bin`` from a text list of ``path1 path2 same`` lines (same: 1/0 or true/false).

    Image bytes are copied as they are unless ``image_size`` asks for a resize (then re-encoded
    with ``fmt``). Returns the number of pairs.
    """
    from fr_lightning.data import decode_image, encode_image, resize_face, write_bin
    from fr_lightning.data.transforms import SizeCheck

    root = root if root is not None else pairs_file.parent
    check = SizeCheck(image_size or 0, f"the images of {pairs_file}")  # one warning naming the first image resized
    images: list[bytes] = []
    issame: list[bool] = []
    with open(pairs_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            flags = {"1": True, "true": True, "0": False, "false": False}
            if len(fields) != 3 or fields[2].lower() not in flags:
                raise DataFormatError(f"{pairs_file}, line {lineno}: expected 'path1 path2 1|0', got {line.strip()[:80]!r}")
            for rel in fields[:2]:
                p = Path(rel) if Path(rel).is_absolute() else root / rel
                if not p.is_file():
                    raise FileNotFoundError(f"{pairs_file}, line {lineno}: image not found: {p}")
                buf = p.read_bytes()
                if image_size is not None or p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                    img = decode_image(buf, str(p))
                    if image_size is not None:
                        img = resize_face(img, None, image_size, check, str(p))[0]
                    buf = encode_image(img, img_fmt=_FMT[fmt])
                images.append(buf)
            issame.append(flags[fields[2].lower()])
    if not issame:
        raise DataFormatError(f"{pairs_file}: no pairs")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bin(out, images, issame)
    return len(issame)


# --------------------------------------------------------------------------- inspect


def _histogram_lines(counts: np.ndarray, bins: int = 10) -> list[str]:
    lo, hi = int(counts.min()), int(counts.max())
    edges = np.unique(np.linspace(lo, hi + 1, min(bins, hi - lo + 1) + 1).astype(np.int64))
    hist, _ = np.histogram(counts, bins=edges)
    width = max(1, int(hist.max()))
    lines = []
    for a, b, h in zip(edges[:-1], edges[1:], hist):
        rng = f"{a}" if b - a == 1 else f"{a}-{b - 1}"
        lines.append(f"    {rng:>12} images: {int(h):>8} classes  {'#' * max(1 if h else 0, int(40 * h / width))}")
    return lines


def _samples_for_grid(path: Path, kind: str, count: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    from fr_lightning.data import decode_image

    rng = np.random.default_rng(seed)
    if kind == "recordio":
        from fr_lightning.data import RecordIOSet

        rec = RecordIOSet(path)
        picks = np.sort(rng.choice(len(rec), min(count, len(rec)), replace=False)).tolist()
        items = [rec.read(i) for i in picks]
        return [decode_image(buf, rec.describe(i)) for i, (buf, _) in zip(picks, items)], [f"{int(lab)}" for _, lab in items]
    if kind == "folder":
        from fr_lightning.data import scan_folder

        idx = scan_folder(path)
        picks = np.sort(rng.choice(len(idx.paths), min(count, len(idx.paths)), replace=False))
        return [decode_image(idx.paths[i].read_bytes(), str(idx.paths[i])) for i in picks], [
            f"{idx.labels[i]} {idx.keys[i].split('/')[0]}"[:18] for i in picks
        ]
    if kind == "wds":
        from fr_lightning.data.formats.wds import iter_shard

        index = read_shard_index(str(path))
        n = int(index.sizes[0]) if len(index.sizes) else 0
        picks = set(rng.choice(n, min(count, n), replace=False).tolist())
        samples = [s for s in iter_shard(index, 0) if s.position in picks]  # type: ignore[union-attr]
        return [decode_image(s.image, f"{s.url}: sample {s.key!r}") for s in samples], [str(s.label) for s in samples]
    from fr_lightning.data import load_bin

    bins, issame = load_bin(path)
    n = min(count // 2, len(issame))
    imgs, labels = [], []
    for p in range(n):
        for side in (0, 1):
            imgs.append(decode_image(bins[2 * p + side], f"{path}: image {2 * p + side}"))
            labels.append(f"pair {p} {'same' if issame[p] else 'diff'}")
    return imgs, labels


def _save_grid(images: list[np.ndarray], labels: list[str], out: Path, title: str, columns: int = 8) -> None:
    """PNG grid via a bare matplotlib Figure (Agg canvas, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(1.6 * columns, 1.8 * rows + 0.4))
    FigureCanvasAgg(fig)
    for k, (img, lab) in enumerate(zip(images, labels)):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(img)
        ax.set_title(lab, fontsize=7)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


def inspect(path: Path, grid: Path | None = None, samples: int = 32, seed: int = 0) -> dict[str, object]:
    """Print a summary of a dataset (classes, images, images per class) and save a sample grid.

    Returns:
        The summary numbers (also printed).
    """
    kind = _kind(path)
    info: dict[str, object] = {"kind": kind, "path": str(path)}
    counts: np.ndarray | None = None
    if kind == "recordio":
        from fr_lightning.data import RecordIOSet

        rec = RecordIOSet(path)
        counts = np.bincount(rec.labels, minlength=rec.num_classes)
        info.update(classes=rec.num_classes, images=len(rec), layout=rec.layout, image_size=rec.image_size)
    elif kind == "folder":
        from fr_lightning.data import scan_folder

        idx = scan_folder(path)
        counts = np.bincount(idx.labels, minlength=idx.num_classes)
        info.update(classes=idx.num_classes, images=len(idx.paths))
    elif kind == "wds":
        from fr_lightning.data.formats.wds import iter_shard

        index = read_shard_index(str(path))
        labels = np.array([s.label for k in range(len(index.files)) for s in iter_shard(index, k)], dtype=np.int64)  # type: ignore[union-attr]
        counts = np.bincount(labels, minlength=index.num_classes)
        info.update(classes=index.num_classes, images=index.num_samples, shards=len(index.files), image_size=index.image_size)
    else:
        from fr_lightning.data import load_bin

        bins, issame = load_bin(path)
        info.update(pairs=len(issame), same=int(issame.sum()), different=int((~issame).sum()), images=len(bins))
    lines = [f"{path} ({kind})"]
    lines += [f"  {k}: {v}" for k, v in info.items() if k not in ("kind", "path")]
    if counts is not None and len(counts):
        info.update(per_class_min=int(counts.min()), per_class_median=float(np.median(counts)), per_class_max=int(counts.max()))
        lines.append(
            f"  images per class: min {counts.min()}  median {np.median(counts):g}  mean {counts.mean():.1f}  max {counts.max()}"
            f"  (empty classes: {int((counts == 0).sum())})"
        )
        lines.append("  histogram:")
        lines += _histogram_lines(counts)
    if grid is not None and samples > 0:
        imgs, labels = _samples_for_grid(path, kind, samples, seed)
        _save_grid(imgs, labels, grid, f"{path.name} ({kind}): samples with labels")
        lines.append(f"  sample grid: {grid}")
        info["grid"] = str(grid)
    _say("\n".join(lines))
    return info


# --------------------------------------------------------------------------- align


def align(src: Path, landmarks_file: Path, out: Path, size: int = 112) -> int:
    """Align every image listed in a landmarks file (``relative/path x1 y1 ... x5 y5``) into ``out``.

    Output keeps each image's relative path (and format: JPEG q95 / PNG; other formats become PNG).
    Returns the number of images written.
    """
    from fr_lightning.data import align_face

    if not src.is_dir():
        raise FileNotFoundError(f"image folder not found: {src}")
    if not landmarks_file.is_file():
        raise FileNotFoundError(f"landmarks file not found: {landmarks_file}")
    from fr_lightning.deploy.images import read_landmarks

    try:
        entries = read_landmarks(landmarks_file)  # the one parser of the format (also `fr embed --landmarks`)
    except ValueError as exc:
        raise DataFormatError(str(exc)) from None
    n = 0
    for name, lm in entries.items():
        rel = Path(name)
        img = cv2.imread(str(src / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise DataFormatError(f"{landmarks_file}: cannot read image {src / rel} (entry {name!r})")
        aligned, _ = align_face(img, lm, size)
        dst = out / rel
        if dst.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            dst = dst.with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if dst.suffix.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(str(dst), aligned, params):
            raise OSError(f"cannot write {dst}")
        n += 1
    return n


def detect_align(args: argparse.Namespace) -> str:
    """``fr data align RAW OUT --detector MODEL``: detect, pick, align, report; optionally pack (``--to``)."""
    from fr_lightning.detect import SCRFD, prepare_folder, summary_lines

    if args.out is not None:
        raise ValueError("with --detector give RAW OUT (the landmarks come from the detector, not from a file)")
    out = args.landmarks
    detector = SCRFD(args.detector, threads=args.threads)
    report = prepare_folder(args.src, out, detector, args.pick, args.min_face, args.score, args.size, args.progress)
    lines = summary_lines(report)
    if args.to is not None:
        packed = args.packed or out.with_name(f"{out.name}-{args.to}")
        lines.append(convert(out, packed, "recordio" if args.to == "rec" else "wds"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The ``fr data`` argument parser."""
    parser = argparse.ArgumentParser(prog="fr data", description="Write, convert, inspect and align face datasets.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the synthetic faces as RecordIO + .bin verification sets")
    p.add_argument("out", type=Path)
    p.add_argument("--identities", type=int, default=1500)
    p.add_argument("--per-identity", type=int, default=20)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--format", choices=sorted(_FMT), default="jpg")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--pairs", type=int, default=3000, help="pairs per verification set (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nuisance-scale", type=float, default=1.0)

    p = sub.add_parser("convert", help="folder -> RecordIO, folder -> WebDataset shards, RecordIO -> WebDataset shards")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--to", choices=["recordio", "wds"], default=None, help="default: recordio for a folder, wds for RecordIO")
    p.add_argument("--list", dest="list_file", default=None, help="'path label' list instead of identity sub-folders")
    p.add_argument("--max-count", type=int, default=10_000, help="samples per tar shard")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep source order in the shards")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--landmarks", default=None, help="landmarks side file to carry into the shards")
    p.add_argument("--group", default=None, help="group side file to carry into the shards")

    p = sub.add_parser("make-bin", help="pairs list ('path1 path2 1|0') + images -> .bin")
    p.add_argument("pairs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--root", type=Path, default=None, help="image root (default: the pairs file's folder)")
    p.add_argument("--image-size", type=int, default=None, help="resize (and re-encode) to this size")
    p.add_argument("--format", choices=sorted(_FMT), default="jpg")

    p = sub.add_parser("inspect", help="classes, images, images per class, PNG grid of samples")
    p.add_argument("path", type=Path)
    p.add_argument("--grid", type=Path, default=None, help="PNG to write (default: inspect-<name>.png)")
    p.add_argument("--samples", type=int, default=32, help="images in the grid (0: no grid)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("verify", help="decode every image, check labels against property and .idx against .rec (or shards)")
    p.add_argument("path", type=Path)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    p = sub.add_parser(
        "align",
        help="5-point similarity alignment to the 112x112 template, from a landmarks file or a face detector",
        description="fr data align SRC LANDMARKS OUT  |  fr data align RAW OUT --detector MODEL.onnx",
    )
    p.add_argument("src", type=Path, help="image folder (with --detector: photos in identity folders RAW/<identity>/)")
    p.add_argument("landmarks", type=Path, metavar="LANDMARKS|OUT", help="text file: 'relative/path x1 y1 ... x5 y5' per image; with --detector: OUT")
    p.add_argument("out", type=Path, nargs="?", default=None, help="output folder (not with --detector)")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--detector", default=None, metavar="MODEL", help="SCRFD/RetinaFace 5-point .onnx (e.g. insightface's det_10g.onnx)")
    p.add_argument("--pick", choices=["largest", "central"], default="largest", help="face kept when a photo has several")
    p.add_argument("--min-face", type=float, default=0.0, metavar="PX", help="faces smaller than this (box's shorter side) do not count")
    p.add_argument("--score", type=float, default=0.5, help="faces scoring below this do not count (default 0.5)")
    p.add_argument("--to", choices=["rec", "wds"], default=None, help="then pack OUT with fr data convert")
    p.add_argument("--packed", type=Path, default=None, help="where --to writes (default: OUT-rec or OUT-wds beside OUT)")
    p.add_argument("--threads", type=int, default=None, help="detector CPU threads")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    from fr_lightning.cli.data_synth import add_parsers as add_eval_set_parsers  # synth-ijb, synth-tinyface

    add_eval_set_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``fr data <command> ...``."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "synth":
            synth(args.out, args.identities, args.per_identity, args.image_size, args.format, args.quality, args.pairs, args.seed, args.nuisance_scale)
        elif args.command == "convert":
            _say(convert(args.src, args.out, args.to, args.list_file, args.max_count, args.shuffle, args.seed, args.landmarks, args.group))
        elif args.command == "make-bin":
            n = make_bin(args.pairs, args.out, args.root, args.image_size, args.format)
            _say(f"wrote {n} pairs to {args.out}")
        elif args.command == "inspect":
            grid = args.grid if args.grid is not None else Path(f"inspect-{args.path.stem or 'data'}.png")
            inspect(args.path, grid, args.samples, args.seed)
        elif args.command == "verify":
            from fr_lightning.data.verify import verify

            report = verify(args.path, progress=args.progress)
            _say(report.summary())
            if not report.ok:
                raise SystemExit(1)
        elif args.command == "align" and args.detector is not None:
            _say(detect_align(args))
        elif args.command == "align":
            if args.out is None:
                raise ValueError("give SRC LANDMARKS OUT, or RAW OUT --detector MODEL")
            if args.to is not None:
                raise ValueError("--to packs the output of RAW OUT --detector MODEL; for aligned crops run fr data convert")
            n = align(args.src, args.landmarks, args.out, args.size)
            _say(f"aligned {n} images into {args.out}")
        elif hasattr(args, "run"):  # sub-parsers added by other modules carry their own function
            _say(args.run(args))
    except (DataFormatError, FileNotFoundError, FileExistsError, ValueError, ImportError) as exc:
        print(f"fr data {args.command}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
