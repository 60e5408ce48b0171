"""How hard is the synthetic task? Verification with raw pixels as the embedding.

    python -m experiments.pixels                   # 6,000 pairs per set, 56 px
    python -m experiments.pixels --quick           # smoke run: 100 pairs per set

Embeds every image of synth-lfw / synth-cfpfp / synth-lowres as its flattened, normalised
pixels (plus the mirrored image, as the flip test does) and runs the 10-fold protocol. A task
where this scores high would be too easy to show anything. Results:
`experiments/out/pixels.json` (`pixels-quick.json` for `--quick`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from experiments.common import OUT
from fr_lightning.data.sources import default_val_sets
from fr_lightning.data.transforms import normalize_images
from fr_lightning.eval.verification import evaluate_pairs


def pixel_embeddings(images: np.ndarray) -> np.ndarray:
    """Flattened normalised pixels plus those of the mirrored image."""
    x = normalize_images(images)
    return (x + x.flip(3)).flatten(1).numpy()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=6000, help="pairs per verification set")
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 pairs per set")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs = 100
    results = {}
    for source in default_val_sets(pairs=args.pairs):
        pairs = source.build(args.image_size)
        emb = np.concatenate(
            [pixel_embeddings(pairs.load(np.arange(i, min(i + 1000, pairs.num_images)))) for i in range(0, pairs.num_images, 1000)]
        )
        results[source.name] = evaluate_pairs(emb, pairs.issame)["acc"]
        print(f"{source.name}: raw-pixel cosine accuracy {100 * results[source.name]:.2f} %")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / ("pixels-quick.json" if args.quick else "pixels.json")).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
