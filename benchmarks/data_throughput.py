"""Training-data throughput on one CPU core: RecordIO vs an image folder read with PIL, at 112×112.

Command:

    python benchmarks/data_throughput.py                 # 2,048 JPEG faces, 5 timed passes per pipeline
    python benchmarks/data_throughput.py --images 8192 --quality 90

The same JPEG bytes (synthetic faces, OpenCV-encoded) are written once as ``train.rec`` and once
as a folder of files, both in a temporary directory (so reads hit the page cache: this measures
the CPU cost, not the disk). Pipelines, all ending in a normalised float ``[B, 3, 112, 112]`` batch:

* ``recordio``: the training path, ``RecordIOSource`` dataset ``__getitems__`` (pread + OpenCV
  decode + BGR->RGB + random flip + ``(x/255 - 0.5)/0.5``);
* ``folder-cv2``: the ``FolderSource`` dataset, same path but one file per image;
* ``folder-pil``: the usual PIL loop (``Image.open(...).convert('RGB')``, flip, same normalisation);
* ``recordio+augment``: the training path with a typical albumentations pipeline on top.

One thread everywhere (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``). Results are
printed as a table and written to ``benchmarks/results/data_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fr_lightning.data import (  # noqa: E402
    Augment,
    FolderSource,
    RecordIOSource,
    encode_image,
    normalize_images,
    write_recordio_encoded,
)
from fr_lightning.data.synthetic import FaceRenderer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "data_throughput.json"
SIZE = 112
TARGET = 2000.0


def write_data(root: Path, images: int, identities: int, quality: int) -> int:
    """Render faces, encode each once, write the same bytes as RecordIO and as a folder; return bytes/image."""
    renderer = FaceRenderer(seed=0, image_size=SIZE)
    per = images // identities
    encoded: list[tuple[bytes, int]] = []
    for c0 in range(0, identities, 64):
        ids = np.repeat(np.arange(c0, min(identities, c0 + 64)), per)
        out = renderer.render(ids, np.tile(np.arange(per), len(ids) // per))
        encoded += [(encode_image(img, quality=quality), int(lab)) for img, lab in zip(out.images, out.labels)]
    write_recordio_encoded(root / "rec", encoded, identities, (SIZE, SIZE))
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


def time_pipeline(n: int, fetch: Callable[[list[int]], object], batch: int, passes: int) -> dict[str, float]:
    """Images/s over ``passes`` shuffled passes (one warm-up pass first)."""
    rng = np.random.default_rng(0)
    rates = []
    for p in range(passes + 1):
        order = rng.permutation(n).tolist()
        start = time.perf_counter()
        for b in range(0, n - batch + 1, batch):
            fetch(order[b : b + batch])
        elapsed = time.perf_counter() - start
        if p:
            rates.append((n // batch) * batch / elapsed)
    return {"images_per_s_best": max(rates), "images_per_s_median": float(np.median(rates))}


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--identities", type=int, default=128)
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of the stored images")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mean_bytes = write_data(root, args.images, args.identities, args.quality)
        flip = Augment(hflip=True)
        heavy = Augment(hflip=True, random_resized_crop=0.2, brightness_contrast=0.2, downscale=0.2, jpeg=0.2)
        rec = RecordIOSource(str(root / "rec")).dataset(SIZE, hflip=True)
        rec.augment = flip
        folder = FolderSource(str(root / "folder")).dataset(SIZE, hflip=True)
        folder.augment = flip
        rec_aug = RecordIOSource(str(root / "rec"), augment=heavy).dataset(SIZE, hflip=True)
        n_pil, pil = pil_loader(root, args.batch)
        pipelines = [
            ("recordio", "read + decode (OpenCV) + flip + normalise", len(rec), rec.__getitems__),
            ("folder-cv2", "file read + decode (OpenCV) + flip + normalise", len(folder), folder.__getitems__),
            ("folder-pil", "file open + decode (PIL) + flip + normalise", n_pil, pil),
            ("recordio+augment", "recordio + crop/bright-contrast/downscale/JPEG (p=0.2 each)", len(rec_aug), rec_aug.__getitems__),
        ]
        for name, what, n, fetch in pipelines:
            res = time_pipeline(n, fetch, args.batch, args.passes)
            rows.append({"pipeline": name, "what": what, **res})

    base = next(r["images_per_s_median"] for r in rows if r["pipeline"] == "folder-pil")
    print(f"\nData throughput, one core, {SIZE}x{SIZE} JPEG q{args.quality} (~{mean_bytes} B/image), batch {args.batch}")
    print(f"{'pipeline':<18} {'img/s (median)':>15} {'img/s (best)':>13} {'vs PIL':>7}  what")
    for r in rows:
        print(
            f"{r['pipeline']:<18} {r['images_per_s_median']:>15,.0f} {r['images_per_s_best']:>13,.0f} "
            f"{r['images_per_s_median'] / base:>6.2f}x  {r['what']}"
        )
    main_rate = rows[0]["images_per_s_median"]
    print(f"target >= {TARGET:,.0f} img/s/core for recordio: {'met' if main_rate >= TARGET else 'NOT met'}")
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
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_after": os.getloadavg()[0],  # the machine may be shared
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
