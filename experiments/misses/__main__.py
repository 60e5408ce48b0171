"""``python -m experiments.misses [--only NAME ...] [--quick] [--out-dir DIR]``: run the miss experiments."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from experiments.misses import EXPERIMENTS
from experiments.misses.common import OUT, run_experiment


def main(argv: list[str] | None = None) -> dict[str, str]:
    """Run the chosen experiments; returns name -> outcome."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), default=None)
    parser.add_argument("--quick", action="store_true", help="tiny inputs, seconds; writes to a temporary folder unless --out-dir")
    parser.add_argument("--out-dir", type=Path, default=None, help=f"default: {OUT.relative_to(OUT.parents[3])} (full runs)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="misses-quick-")) if args.quick else OUT)
    outcomes = {}
    for name in args.only or list(EXPERIMENTS):
        record = run_experiment(EXPERIMENTS[name], args.quick, out_dir)
        outcomes[name] = record["outcome"]
        print(f"{name}: {record['outcome']} ({record['wall_s']:.0f} s) -> {out_dir / (name + '.json')}", flush=True)
    return outcomes


if __name__ == "__main__":
    main()
