"""Training speed on one GPU: model precisions, framework cost, input pipeline, Partial FC on NCCL.

    python benchmarks/gpu_train.py --out benchmarks/results/gpu_train.json      # a CUDA machine
    python benchmarks/gpu_train.py --tiny --out /tmp/gpu_train_tiny.json        # CPU smoke run (seconds)
    bash benchmarks/gpu/run.sh                                                  # the device machine

One run measures, each section recorded even when another fails:

* ``model_speed`` — iResNet-50 and iResNet-100 at 112 px, 128 images per GPU, ArcFace (s = 64,
  m = 0.5) + Partial FC (r = 0.1, C = 93,431, MS1MV3's class count), SGD (momentum 0.9, weight
  decay 5e-4), gradient clipping at norm 5, on synthetic tensors already on the GPU: ``fp32``,
  ``bf16-mixed``, ``+channels_last``, ``+compile`` (``nn.Module.compile``, inductor). img/s over
  the timed steps and peak GPU memory (``torch.cuda.max_memory_allocated``).
* ``framework_overhead`` — the same model, loss and optimizer in a plain PyTorch loop with
  insightface ``train_v2.py``'s structure (forward, loss, backward, clip, step, zero_grad, LR
  step, ``loss.item()``) and in Lightning's ``Trainer.fit`` over the same on-device batches,
  alternating repeats; the ratio of median step times (target <= 1.05).
* ``input_pipeline`` — the real loader path: a RecordIO file of synthetic JPEG faces read by
  ``FaceDataModule(RecordIOSource)`` (decode + augmentation in CPU workers, batches copied to
  the device), no model: input-bound img/s; with albumentations installed also a photometric
  augmentation; with NVIDIA DALI installed also ``DaliSource``.
* ``partial_fc_nccl`` — world size 1 on NCCL (gloo on CPU): Partial FC's collectives
  (``AllGatherRows``, ``DistCrossEntropy``) against a single-process cross-entropy, then a
  Lightning DDP fit with the Partial FC module (the module's sharding setup, the DDP ignore list)
  and a checkpoint written through the classifier's gather hook, reloaded and compared.

``--tiny`` swaps in iResNet-18 at 1/8 width, 56 px, 8 images, 200 classes and one timed step so
the whole script runs on a CPU in seconds: the framework comparison and the DDP fit then run in
fp32, the loader runs in the main process (no workers), albumentations is not timed, and the
channels-last and compile rows are skipped (channels-last is unsafe on CPU with
this torch, see docs/design.md; compiling costs too long for a smoke test). Output: JSON
(``--out``) and a Markdown table next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu.sections import (  # noqa: E402
    framework_overhead,
    input_pipeline,
    model_speed,
    partial_fc_nccl,
)

SECTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "model_speed": model_speed,
    "framework_overhead": framework_overhead,
    "input_pipeline": input_pipeline,
    "partial_fc_nccl": partial_fc_nccl,
}


@dataclass
class Setup:
    """Sizes of one run (``FULL`` on a GPU, ``TINY`` for the CPU smoke test)."""

    backbones: list[str]
    image_size: int
    batch: int
    num_classes: int
    sample_rate: float
    warmup: int
    steps: int
    repeats: int
    images: int
    identities: int
    workers: int
    loader_batches: int
    compile_backend: str
    bf16: bool = True
    tiny: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


FULL = Setup(
    backbones=["iresnet50", "iresnet100"], image_size=112, batch=128, num_classes=93431, sample_rate=0.1,
    warmup=5, steps=20, repeats=3, images=4096, identities=256, workers=min(16, os.cpu_count() or 1),
    loader_batches=60, compile_backend="inductor",
)
TINY = Setup(
    backbones=["tiny"], image_size=56, batch=8, num_classes=200, sample_rate=0.1,
    warmup=1, steps=1, repeats=1, images=32, identities=4, workers=0, loader_batches=3,
    compile_backend="eager", bf16=False, tiny=True,
)


def environment() -> dict[str, Any]:
    """Hardware and software versions of this run."""
    import lightning

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.machine()})",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
    try:
        import nvidia.dali as dali  # type: ignore[import-not-found]

        info["dali"] = dali.__version__
    except ImportError:
        info["dali"] = None
    return info


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables (one per section)."""
    env = result["environment"]
    lines = [f"Device: {env['device']}; torch {env['torch']}, Lightning {env['lightning']}, CUDA {env['cuda']}", ""]
    speed = result["sections"]["model_speed"]
    lines += ["| backbone | variant | img/s | ms/step | peak GPU memory (GiB) | first steps (s) | status |", "|---|---|---|---|---|---|---|"]
    for r in speed.get("rows", []):
        lines.append(
            f"| {r['backbone']} | {r['variant']} | {_num(r.get('img_per_s'), 0)} | {_num(r.get('ms_per_step'), 1)} | "
            f"{_num(r.get('peak_mem_gib'), 2)} | {_num(r.get('warmup_s'), 1)} | {r['status']} |"
        )
    over = result["sections"]["framework_overhead"]
    lines += ["", "| loop | ms/step (median) |", "|---|---|"]
    if over.get("status") == "ok":
        lines += [f"| plain PyTorch (insightface train_v2 structure) | {_num(1000 * over['plain_s_median'], 1)} |",
                  f"| Lightning Trainer.fit | {_num(1000 * over['lightning_s_median'], 1)} |",
                  f"| ratio (target <= 1.05) | {over['ratio']:.3f} |"]
    else:
        lines.append(f"| {over.get('status')} | |")
    data = result["sections"]["input_pipeline"]
    lines += ["", "| input pipeline | workers | img/s | status |", "|---|---|---|---|"]
    for r in data.get("rows", []):
        lines.append(f"| {r['pipeline']} | {r.get('workers', '')} | {_num(r.get('img_per_s'), 0)} | {r['status']} |")
    pfc = result["sections"]["partial_fc_nccl"]
    lines += ["", f"Partial FC on {pfc.get('backend', '?')} (world size 1): {pfc.get('status')}"]
    for key in ("allgather_max_abs_err", "dist_ce_max_abs_err", "ddp_ignore", "sharded", "checkpoint_weight_shape",
                "checkpoint_roundtrip_max_abs_err", "ddp_img_per_s"):
        if key in pfc:
            lines.append(f"- {key}: {pfc[key]}")
    return "\n".join(lines) + "\n"


def _num(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="small sizes for a CPU smoke run")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu_train.json")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--budget-s", type=float, default=420.0, help="rows started after this many seconds are skipped")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args(argv)
    cfg = TINY if args.tiny else FULL
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and not args.tiny:
        parser.error("the full benchmark needs a CUDA device; use --tiny on a CPU")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (insightface's default too)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    deadline = start + args.budget_s
    result: dict[str, Any] = {
        "benchmark": "gpu_train",
        "command": "python benchmarks/gpu_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": environment(),
        "setup": asdict(cfg),
        "sections": {},
    }
    for name in SECTIONS:
        if name not in args.sections:
            result["sections"][name] = {"status": "not requested"}
            continue
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            section = SECTIONS[name](cfg, device, deadline)
        except Exception as exc:  # one section failing must not lose the others' numbers
            section = {"status": f"error: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
            print(section["traceback"], flush=True)
        section["seconds"] = round(time.perf_counter() - t0, 1)
        result["sections"][name] = section
        print(json.dumps({k: v for k, v in section.items() if k != "traceback"}, default=str)[:2000], flush=True)
    result["total_s"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return result


if __name__ == "__main__":
    main()
