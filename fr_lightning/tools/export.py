"""``fr export``: write the backbone of a training checkpoint as an insightface-style ``backbone.pth``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def backbone_state_from_checkpoint(path: str | Path, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    """Load a Lightning checkpoint safely (``weights_only=True``) and keep the backbone's tensors.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no ``state_dict`` or no key starting with ``prefix``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict' entry)")
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"{path}: no parameters under '{prefix}' in its state_dict")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``fr export CKPT OUT``."""
    parser = argparse.ArgumentParser(prog="fr export", description=__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by fr fit")
    parser.add_argument("output", help="where to write the backbone state_dict (.pth)")
    args = parser.parse_args(argv)
    state = backbone_state_from_checkpoint(args.checkpoint)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    print(f"wrote {len(state)} tensors of the backbone to {out}")
