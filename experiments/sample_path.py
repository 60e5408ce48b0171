"""Which named functions one training sample passes through, from its RecordIO record to the loss.

    python -m experiments.sample_path            # this tree

It writes a tiny RecordIO set (8 random 56-px images, 4 classes), then traces (``sys.setprofile``)
``RecordIOSource(...).dataset(56, hflip=True).__getitems__([0, 1])``, ``collate_faces`` and
``FaceRecognitionModule.training_step`` (iResNet-18 at width 1/8, ArcFace, full FC, no method).

A *hop* is a named function of the ``fr_lightning`` package (comprehensions and lambdas are not
named) that takes the sample's data as an argument other than ``self`` or returns it; data = bytes,
a NumPy array, a tensor, or a tuple / list / dict / dataclass holding one (so helpers that only
handle offsets, lengths, labels as numbers, sizes or error text are not hops). Every hop is
listed once, in the order it is first entered; functions entered more than once (a residual
block per layer) count once. The files those hops live in are counted too.

The script only imports names that exist at the old revisions too, so the same rule can be
applied to an old tree: ``git archive <rev> | tar -x -C /tmp/old && cd /tmp &&
PYTHONPATH=/tmp/old python <this tree>/experiments/sample_path.py`` (run from outside this tree,
so that ``fr_lightning`` is the old one).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

import fr_lightning

PACKAGE = Path(fr_lightning.__file__).resolve().parent
DATA = (bytes, bytearray, memoryview, np.ndarray, torch.Tensor)


def holds_data(value: Any, depth: int = 2) -> bool:
    """True if ``value`` is sample data or (up to ``depth`` levels) a container of it."""
    if isinstance(value, DATA):
        return True
    if depth == 0 or isinstance(value, (str, torch.nn.Module)):
        return False
    if isinstance(value, dict):
        return any(holds_data(v, depth - 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_data(v, depth - 1) for v in value[:4])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(holds_data(getattr(value, f.name), depth - 1) for f in dataclasses.fields(value))
    return False


class PathTracer:
    """Records the package's functions entered while active, and which of them handled sample data."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.hops: set[str] = set()

    def _name(self, frame: FrameType) -> str | None:
        code = frame.f_code
        path = Path(code.co_filename)
        if PACKAGE not in path.parents:
            return None
        qual = getattr(code, "co_qualname", code.co_name)
        if "<" in qual:  # comprehensions, lambdas, generator expressions
            return None
        return f"{path.relative_to(PACKAGE).as_posix()}:{qual}"

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        name = self._name(frame)
        if name is None:
            return
        if event == "call":
            if name not in self.entered:
                self.entered.append(name)
            args = {k: v for k, v in frame.f_locals.items() if k not in ("self", "cls")}
            if any(holds_data(v) for v in args.values()):
                self.hops.add(name)
        elif holds_data(arg):
            self.hops.add(name)

    def path(self) -> list[str]:
        return [name for name in self.entered if name in self.hops]


def write_set(root: Path) -> None:
    """8 random 56-px RGB images of 4 classes as ``train.rec`` / ``.idx`` / ``property``."""
    try:
        from fr_lightning.data import write_recordio
    except ImportError:  # before the data layout change
        from fr_lightning.data.recordio import write_recordio  # type: ignore[no-redef]
    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), i // 2) for i in range(8)]
    write_recordio(root, samples, num_classes=4)


def trace() -> PathTracer:
    """Trace two samples from their records through one training step."""
    from fr_lightning.backbones import iresnet18
    from fr_lightning.batch import collate_faces
    from fr_lightning.data import RecordIOSource
    from fr_lightning.heads import ArcFace
    from fr_lightning.module import FaceRecognitionModule

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        write_set(Path(tmp))
        dataset = RecordIOSource(root=tmp).dataset(56, hflip=True)
        module = FaceRecognitionModule(
            backbone=iresnet18(width=0.125, input_size=56, embedding_dim=32), head=ArcFace(), num_classes=4
        )
        module.train()
        tracer = PathTracer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log without a trainer
            sys.setprofile(tracer)
            try:
                batch = collate_faces(dataset.__getitems__([0, 1]))
                loss = module.training_step(batch, 0)
            finally:
                sys.setprofile(None)
    if not torch.isfinite(loss):
        raise RuntimeError(f"the traced step gave a non-finite loss {loss}")
    return tracer


def main() -> list[str]:
    tracer = trace()
    hops = tracer.path()
    print(f"fr_lightning at {PACKAGE}")
    files = sorted({name.split(":")[0] for name in hops})
    print(f"{len(hops)} hops (of {len(tracer.entered)} package functions entered) in {len(files)} files:")
    for k, name in enumerate(hops, 1):
        print(f"  {k:2d}. {name}")
    return hops


if __name__ == "__main__":
    main()
