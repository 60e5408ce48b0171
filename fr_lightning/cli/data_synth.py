"""``fr data synth-ijb`` and ``fr data synth-tinyface``: the synthetic evaluation sets' sub-parsers.

``fr data`` adds these with :func:`add_parsers`; each sets ``args.run`` to a function of the parsed
arguments that writes the set and returns a one-line summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parsers"]


def _synth_ijb(args: argparse.Namespace) -> str:
    from fr_lightning.eval.synth_ijb import write_synthetic_ijb

    n = write_synthetic_ijb(args.out, args.subjects, args.target, args.impostor_ratio, args.seed, args.nuisance_scale)
    return (
        f"wrote a synthetic {args.target.upper()} set to {args.out}: {n['images']} images, {n['templates']} templates, "
        f"{n['pairs']} pairs ({n['genuine_pairs']} genuine), 1:N {n['gallery_templates']} gallery / {n['probe_templates']} probe templates"
    )


def _synth_tinyface(args: argparse.Namespace) -> str:
    from fr_lightning.eval.synth_tinyface import write_synthetic_tinyface

    n = write_synthetic_tinyface(args.out, args.identities, args.probes_per_identity, args.matches_per_identity, args.distractors, args.seed)
    return f"wrote a TinyFace-layout set to {args.out}: {n['probes']} probes, {n['gallery_match']} gallery matches, {n['distractors']} distractors"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``synth-ijb`` and ``synth-tinyface`` to an ``argparse`` sub-parser set."""
    p = sub.add_parser("synth-ijb", help="write a synthetic IJB-C/IJB-B set in the official layout (meta/, loose_crop/)")
    p.add_argument("out", type=Path)
    p.add_argument("--subjects", type=int, default=40)
    p.add_argument("--target", choices=["ijbc", "ijbb"], default="ijbc")
    p.add_argument("--impostor-ratio", type=int, default=20, help="impostor pairs per genuine pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nuisance-scale", type=float, default=1.0)
    p.set_defaults(run=_synth_ijb)

    p = sub.add_parser("synth-tinyface", help="write a synthetic TinyFace-layout set (Probe/, Gallery_Match/, Gallery_Distractor/)")
    p.add_argument("out", type=Path)
    p.add_argument("--identities", type=int, default=100)
    p.add_argument("--probes-per-identity", type=int, default=2)
    p.add_argument("--matches-per-identity", type=int, default=1)
    p.add_argument("--distractors", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_synth_tinyface)
