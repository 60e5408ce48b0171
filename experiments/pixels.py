"""How hard is the synthetic task? Verification with raw pixels as the embedding.

    python experiments/pixels.py

Embeds every image of synth-lfw / synth-cfpfp / synth-lowres as its flattened, normalised
pixels (plus the mirrored image, as the flip test does) and runs the 10-fold protocol. A task
where this scores high would be too easy to show anything.
"""

from __future__ import annotations

import json

import numpy as np

from fr_lightning.data.sources import default_val_sets
from fr_lightning.data.transforms import normalize_images
from fr_lightning.eval.verification import evaluate_pairs
from experiments.common import OUT


def pixel_embeddings(images: np.ndarray) -> np.ndarray:
    """Flattened normalised pixels plus those of the mirrored image."""
    x = normalize_images(images)
    return (x + x.flip(3)).flatten(1).numpy()


def main(image_size: int = 56) -> dict[str, float]:
    results = {}
    for source in default_val_sets():
        pairs = source.build(image_size)
        emb = np.concatenate(
            [pixel_embeddings(pairs.load(np.arange(i, min(i + 1000, pairs.num_images)))) for i in range(0, pairs.num_images, 1000)]
        )
        results[source.name] = evaluate_pairs(emb, pairs.issame)["acc"]
        print(f"{source.name}: raw-pixel cosine accuracy {100 * results[source.name]:.2f} %")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pixels.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
