"""Training-data throughput on one CPU core: RecordIO, WebDataset shards, the retired ``.frs`` shards, folders, at 112×112.

Command:

    python benchmarks/data_throughput.py                 # 2,048 JPEG faces, 5 timed passes per pipeline
    python benchmarks/data_throughput.py --images 8192 --quality 90
    python benchmarks/data_throughput.py --frs-rev none  # skip the retired .frs reader
    python benchmarks/data_throughput.py --quick         # wds vs .frs only, small

The same JPEG bytes (synthetic faces, OpenCV-encoded) are written once as ``train.rec`` and once
as a folder of files, both in a temporary directory (so reads hit the page cache: this measures
the CPU cost, not the disk). Pipelines, all ending in a normalised float ``[B, 3, 112, 112]`` batch:

* ``recordio``: the training path, ``RecordIOSource`` dataset ``__getitems__`` (pread + OpenCV
  decode + BGR->RGB + random flip + ``(x/255 - 0.5)/0.5``);
* ``folder-cv2``: the ``FolderSource`` dataset, same path but one file per image;
* ``folder-pil``: the usual PIL loop (``Image.open(...).convert('RGB')``, flip, same normalisation);
* ``recordio+augment``: the training path with a typical albumentations pipeline on top;
* ``wds``: the streaming path, ``WdsSource`` dataset iterated in one process (tar members read in
  1 MiB blocks and grouped into samples, webdataset's seeded shuffle buffer of 2,000, decode, flip
  and normalisation folded into one table lookup, ``collate_faces``), shards of 256 samples;
* ``frs (retired)``: the ``.frs`` chunk reader that WebDataset shards replaced, loaded for this run
  only from git history (``git show <rev>:fr_lightning/data/streaming.py`` into a temporary module;
  ``--frs-rev``, default: the commit before the file was deleted), same bytes in chunks of about
  256 samples, same iteration and collate. Both streams run in the same invocation, interleaved
  pass by pass with the other pipelines' passes, so they see the same machine load;

``--quick`` (768 images, 3 passes, only ``recordio``, ``wds`` and ``frs``) takes about a minute
on an idle core.

Rates are images per wall second and per CPU second of the process (``time.process_time``); on a
shared machine the CPU-second rate is the per-core throughput, the wall rate also counts waiting.

One thread everywhere (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``). Results are
printed as a table and written to ``benchmarks/results/data_throughput.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fr_lightning.batch import collate_faces  # noqa: E402
from fr_lightning.data import (  # noqa: E402
    Augment,
    FolderSource,
    RecordIOSource,
    WdsSource,
    WdsWriter,
    encode_image,
    normalize_images,
    write_recordio_encoded,
)
from fr_lightning.data.synthetic import FaceRenderer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "data_throughput.json"
SIZE = 112
TARGET = 2000.0


ROOT = Path(__file__).resolve().parents[1]
OLD_STREAMING = "fr_lightning/data/streaming.py"
SHARD_SAMPLES = 256


def load_frs_module(rev: str) -> ModuleType:
    """The retired ``.frs`` reader/writer, from git history into a temporary module (this process only)."""
    if rev == "auto":
        deleted = subprocess.run(
            ["git", "-C", str(ROOT), "rev-list", "-n", "1", "HEAD", "--", OLD_STREAMING], capture_output=True, text=True, check=True
        ).stdout.strip()
        rev = f"{deleted}^"
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{OLD_STREAMING}"], capture_output=True, text=True, check=True).stdout
    # Its one import of a module that moved since: the image decoder.
    src = src.replace("from fr_lightning.data.recordio import decode_image", "from fr_lightning.data.formats.images import decode_image")
    path = Path(tempfile.mkdtemp()) / "frs_streaming_retired.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("frs_streaming_retired", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    module.GIT_REV = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True).stdout.strip()
    return module


def write_data(root: Path, images: int, identities: int, quality: int, frs: ModuleType | None) -> int:
    """Render faces, encode each once, write the same bytes as RecordIO, a folder, WebDataset (and .frs) shards."""
    renderer = FaceRenderer(seed=0, image_size=SIZE)
    per = images // identities
    encoded: list[tuple[bytes, int]] = []
    for c0 in range(0, identities, 64):
        ids = np.repeat(np.arange(c0, min(identities, c0 + 64)), per)
        out = renderer.render(ids, np.tile(np.arange(per), len(ids) // per))
        encoded += [(encode_image(img, quality=quality), int(lab)) for img, lab in zip(out.images, out.labels)]
    write_recordio_encoded(root / "rec", encoded, identities, (SIZE, SIZE))
    order = np.random.default_rng(0).permutation(len(encoded)).tolist()  # as `fr data convert` mixes identities
    with WdsWriter(root / "wds", identities, (SIZE, SIZE), max_count=SHARD_SAMPLES) as w:
        for k in order:
            w.add(*encoded[k])
    if frs is not None:
        chunk = SHARD_SAMPLES * int(np.mean([len(b) for b, _ in encoded]))
        with frs.ShardWriter(root / "frs", identities, (SIZE, SIZE), chunk_bytes=chunk) as fw:
            for k in order:
                fw.add(*encoded[k])
    for k, (buf, label) in enumerate(encoded):
        d = root / "folder" / f"{label:05d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{k:07d}.jpg").write_bytes(buf)
    return int(np.mean([len(b) for b, _ in encoded]))


def pil_loader(root: Path, batch: int) -> tuple[int, Callable[[list[int]], torch.Tensor]]:
    """A PIL-based folder loader: decode, random flip, normalise (what a hand-written Dataset usually does)."""
    from PIL import Image

    files = sorted((root / "folder").rglob("*.jpg"))
    rng = np.random.default_rng(0)

    def load(indices: list[int]) -> torch.Tensor:
        imgs = []
        for i in indices:
            with Image.open(files[i]) as im:
                arr = np.asarray(im.convert("RGB"))
            imgs.append(arr[:, ::-1] if rng.random() < 0.5 else arr)
        return normalize_images(np.stack(imgs))

    return len(files), load


def map_pass(n: int, fetch: Callable[[list[int]], object], batch: int, seed: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) of one shuffled map-style pass."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    start, cpu = time.perf_counter(), time.process_time()
    for b in range(0, n - batch + 1, batch):
        fetch(order[b : b + batch])
    count = (n // batch) * batch
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def stream_pass(dataset: Iterable[dict], batch: int) -> tuple[float, float]:
    """Like :func:`map_pass` for one pass over an iterable dataset, collated into batches as the DataLoader does."""
    start, cpu = time.perf_counter(), time.process_time()
    pending: list[dict] = []
    count = 0
    for sample in dataset:
        pending.append(sample)
        if len(pending) == batch:
            collate_faces(pending)
            count += batch
            pending = []
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--identities", type=int, default=128)
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of the stored images")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--frs-rev", default="auto", help="git revision holding the retired .frs reader ('none': skip it)")
    ap.add_argument("--quick", action="store_true", help="768 images, 3 passes, recordio / wds / frs only")
    args = ap.parse_args()
    if args.quick:
        args.images, args.passes = min(args.images, 768), min(args.passes, 3)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frs = None if args.frs_rev == "none" else load_frs_module(args.frs_rev)
        mean_bytes = write_data(root, args.images, args.identities, args.quality, frs)
        flip = Augment(hflip=True)
        heavy = Augment(hflip=True, random_resized_crop=0.2, brightness_contrast=0.2, downscale=0.2, jpeg=0.2)
        rec = RecordIOSource(str(root / "rec")).dataset(SIZE, hflip=True)
        rec.augment = flip
        folder = FolderSource(str(root / "folder")).dataset(SIZE, hflip=True)
        folder.augment = flip
        rec_aug = RecordIOSource(str(root / "rec"), augment=heavy).dataset(SIZE, hflip=True)
        n_pil, pil = pil_loader(root, args.batch)
        wds = WdsSource(str(root / "wds"), shuffle_buffer=2000, augment=flip).dataset(SIZE, hflip=True)
        pipelines: list[tuple[str, str, Callable[[int], tuple[float, float]]]] = [
            ("recordio", "read + decode (OpenCV) + flip + normalise", lambda p: map_pass(len(rec), rec.__getitems__, args.batch, p)),
            ("wds", "tar stream (block reads, webdataset shuffle buffer) + decode + flip + normalise + collate", lambda p: stream_pass(wds, args.batch)),
        ]
        if frs is not None:
            old = frs.ShardDataset(str(root / "frs"), SIZE, flip, seed=0, shuffle=True)
            pipelines.append(
                (f"frs (retired, git {frs.GIT_REV})", "whole-chunk read + decode + flip + normalise + collate", lambda p: stream_pass(old, args.batch))
            )

        pipelines += [] if args.quick else [
            ("folder-cv2", "file read + decode (OpenCV) + flip + normalise", lambda p: map_pass(len(folder), folder.__getitems__, args.batch, p)),
            ("folder-pil", "file open + decode (PIL) + flip + normalise", lambda p: map_pass(n_pil, pil, args.batch, p)),
            ("recordio+augment", "recordio + crop/bright-contrast/downscale/JPEG (p=0.2 each)", lambda p: map_pass(len(rec_aug), rec_aug.__getitems__, args.batch, p)),
        ]
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in pipelines}
        for p in range(args.passes + 1):  # pass 0 warms up; pipelines interleaved pass by pass
            for name, _, run in pipelines:
                rate = run(p)
                if p:
                    rates[name].append(rate)
        for name, what, _ in pipelines:
            wall, cpu = np.array(rates[name]).T
            rows.append(
                {
                    "pipeline": name,
                    "what": what,
                    "images_per_s_best": float(wall.max()),
                    "images_per_s_median": float(np.median(wall)),
                    "images_per_cpu_s_median": float(np.median(cpu)),
                    "images_per_cpu_s_best": float(cpu.max()),
                }
            )

    base = next((r["images_per_s_median"] for r in rows if r["pipeline"] == "folder-pil"), rows[0]["images_per_s_median"])
    print(f"\nData throughput, one core, {SIZE}x{SIZE} JPEG q{args.quality} (~{mean_bytes} B/image), batch {args.batch}")
    print(f"{'pipeline':<26} {'img/s (median)':>15} {'img/s (best)':>13} {'img/CPU-s':>10} {'vs PIL':>7}  what")
    for r in rows:
        print(
            f"{r['pipeline']:<26} {r['images_per_s_median']:>15,.0f} {r['images_per_s_best']:>13,.0f} {r['images_per_cpu_s_median']:>10,.0f} "
            f"{r['images_per_s_median'] / base:>6.2f}x  {r['what']}"
        )
    by_name = {r["pipeline"].split(" ")[0]: r for r in rows}
    wds_vs_frs = wds_vs_frs_cpu = best_cpu = None
    if "frs" in by_name:
        wds_vs_frs = by_name["wds"]["images_per_s_median"] / by_name["frs"]["images_per_s_median"]
        wds_vs_frs_cpu = by_name["wds"]["images_per_cpu_s_median"] / by_name["frs"]["images_per_cpu_s_median"]
        best_cpu = by_name["wds"]["images_per_cpu_s_best"] / by_name["frs"]["images_per_cpu_s_best"]
        print(
            f"wds vs the retired .frs path, same run: {wds_vs_frs:.2f}x per wall second, {wds_vs_frs_cpu:.2f}x per CPU "
            f"second (medians); {best_cpu:.2f}x per CPU second (best passes)"
        )
    main_rate = rows[0]["images_per_s_median"]
    main_cpu = rows[0]["images_per_cpu_s_median"]
    print(
        f"target >= {TARGET:,.0f} img/s/core for recordio: per wall second {'met' if main_rate >= TARGET else 'NOT met'}, "
        f"per CPU second {'met' if main_cpu >= TARGET else 'NOT met'}"
    )
    result = {
        "benchmark": "data_throughput",
        "command": " ".join(["python benchmarks/data_throughput.py", *sys.argv[1:]]),
        "image_size": SIZE,
        "images": args.images,
        "jpeg_quality": args.quality,
        "mean_bytes_per_image": mean_bytes,
        "batch": args.batch,
        "threads": 1,
        "target_images_per_s": TARGET,
        "wds_vs_frs_median": wds_vs_frs,
        "wds_vs_frs_cpu_median": wds_vs_frs_cpu,
        "wds_vs_frs_cpu_best": best_cpu if wds_vs_frs is not None else None,
        "shard_samples": SHARD_SAMPLES,
        "webdataset": __import__("webdataset").__version__,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": load_before,
        "load_average_1min_after": os.getloadavg()[0],  # the machine may be shared
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
