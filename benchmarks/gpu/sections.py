"""The four measurements of ``benchmarks/gpu_train.py`` (each returns a JSON-able dict with ``status``)."""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fr_lightning import FaceBatch, FaceDataModule, FaceRecognitionModule, LRSchedule
from fr_lightning.backbones import iresnet18, iresnet50, iresnet100
from fr_lightning.classifiers import PartialFC
from fr_lightning.functional.reduce import reduce_loss
from fr_lightning.heads import ArcFace

VARIANTS = ["fp32", "bf16-mixed", "bf16-mixed+channels_last", "bf16-mixed+channels_last+compile"]


# ----------------------------------------------------------------------------- helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_module(cfg: Any, backbone: str, seed: int = 0) -> FaceRecognitionModule:
    """ArcFace (s=64, m=0.5) + Partial FC (r, C) + SGD on the named backbone (``tiny``: iResNet-18 at 1/8 width)."""
    torch.manual_seed(seed)
    if backbone == "tiny":
        net = iresnet18(width=0.125, input_size=cfg.image_size, embedding_dim=32)
    else:
        net = {"iresnet50": iresnet50, "iresnet100": iresnet100}[backbone](input_size=cfg.image_size, embedding_dim=512)
    rate = cfg.sample_rate
    return FaceRecognitionModule(
        backbone=net,
        head=ArcFace(s=64.0, m=0.5),
        num_classes=cfg.num_classes,
        classifier=lambda dim, classes: PartialFC(dim, classes, sample_rate=rate),
        optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4),
        lr_schedule=LRSchedule("poly"),
    )


def synthetic_batch(cfg: Any, device: torch.device, channels_last: bool = False) -> FaceBatch:
    """Random normalised images and labels, already on ``device``."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(cfg.batch, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    labels = torch.randint(0, cfg.num_classes, (cfg.batch,), generator=g)
    images = images.to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return FaceBatch(images=images, labels=labels.to(device))


def plain_loop(module: FaceRecognitionModule, batch: FaceBatch, device: torch.device, bf16: bool, warmup: int, steps: int) -> tuple[float, float]:
    """insightface ``train_v2.py``'s loop over the module's parts; (s/step over the timed steps, s of the warm-up)."""
    module.train()
    opt = torch.optim.SGD(module.parameter_groups(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    total = warmup + steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: module.lr_schedule.factor(s, total))
    params = [p for p in module.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    start = t0
    for i in range(total):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = module.forward_train(batch.images, batch.labels)
            loss = reduce_loss(out.per_sample_loss, valid=out.labels >= 0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        loss.item()  # insightface logs the loss value every step
    _sync(device)
    return (time.perf_counter() - start) / steps, start - t0


class _StepTimer(pl.Callback):
    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0
        self.steps = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx >= self.warmup:
            _sync(self.device)
            self.end = time.perf_counter()
            self.steps = batch_idx + 1 - self.warmup


def _trainer(device: torch.device, precision: str, steps: int, callbacks: list[pl.Callback], root: str, **kw: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision, max_steps=steps,
        gradient_clip_val=5.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=callbacks,
        default_root_dir=root, **kw,
    )


def lightning_loop(module: FaceRecognitionModule, batch: FaceBatch, device: torch.device, bf16: bool, warmup: int, steps: int) -> float:
    """Seconds per step of ``Trainer.fit`` over the same on-device batch."""
    timer = _StepTimer(warmup, device)
    loader = DataLoader([batch] * (warmup + steps), batch_size=None, shuffle=False)
    with tempfile.TemporaryDirectory() as root:
        trainer = _trainer(device, "bf16-mixed" if bf16 else "32-true", warmup + steps, [timer], root)
        trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / max(timer.steps, 1)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- sections
def model_speed(cfg: Any, device: torch.device, deadline: float) -> dict[str, Any]:
    """img/s and peak memory per backbone and precision variant (plain loop, on-device tensors)."""
    rows = []
    for name in cfg.backbones:
        for variant in VARIANTS:
            row: dict[str, Any] = {"backbone": name, "variant": variant}
            rows.append(row)
            bf16, cl, comp = "bf16" in variant, "channels_last" in variant, "compile" in variant
            if cl and device.type == "cpu":
                row["status"] = "skipped on CPU (channels_last is unsafe there with this torch; compile too slow for a smoke run)"
                continue
            if time.perf_counter() > deadline:
                row["status"] = "skipped: time budget"
                continue
            _reset(device)
            module = make_module(cfg, name).to(device)
            if cl:
                module.channels_last = True
                module.backbone.to(memory_format=torch.channels_last)
            if comp:
                module.backbone.compile(backend=cfg.compile_backend)
                row["compile_backend"] = cfg.compile_backend
            batch = synthetic_batch(cfg, device, cl)
            per_step, warm = plain_loop(module, batch, device, bf16, cfg.warmup, cfg.steps)
            row.update(status="ok", img_per_s=cfg.batch / per_step, ms_per_step=1000 * per_step,
                       peak_mem_gib=_peak_gib(device), warmup_s=warm, batch=cfg.batch)
            del module, batch
    return {"status": "ok" if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in rows) else "partial", "rows": rows}


def framework_overhead(cfg: Any, device: torch.device, deadline: float) -> dict[str, Any]:
    """Plain loop vs Lightning step, alternating repeats, same model/loss/optimizer/precision."""
    name = cfg.backbones[0]
    bf16 = cfg.bf16
    cl = device.type == "cuda"
    plain, light = [], []
    for _ in range(cfg.repeats):
        if plain and time.perf_counter() > deadline:
            break
        module = make_module(cfg, name).to(device)
        module.channels_last = cl
        if cl:
            module.backbone.to(memory_format=torch.channels_last)
        batch = synthetic_batch(cfg, device, cl)
        plain.append(plain_loop(module, batch, device, bf16, cfg.warmup, cfg.steps)[0])
        module = make_module(cfg, name)
        module.channels_last = cl  # the module converts the backbone and the inputs at setup
        light.append(lightning_loop(module, batch, device, bf16, cfg.warmup, cfg.steps))
    p, q = statistics.median(plain), statistics.median(light)
    return {
        "status": "ok", "backbone": name, "precision": "bf16-mixed" if bf16 else "32-true", "channels_last": cl, "repeats": len(plain),
        "plain_s": plain, "lightning_s": light, "plain_s_median": p, "lightning_s_median": q,
        "ratio": q / p, "target": 1.05, "within_target": q / p <= 1.05,
    }


def _write_recordio(cfg: Any, root: Path) -> None:
    from fr_lightning.data import write_recordio
    from fr_lightning.data.synthetic import FaceRenderer

    renderer = FaceRenderer(seed=0, image_size=112)
    per = cfg.images // cfg.identities

    def samples():  # type: ignore[no-untyped-def]
        for c0 in range(0, cfg.identities, 32):
            ids = np.repeat(np.arange(c0, min(cfg.identities, c0 + 32)), per)
            out = renderer.render(ids, np.tile(np.arange(per), len(ids) // per))
            yield from ((img, int(lab)) for img, lab in zip(out.images, out.labels))

    write_recordio(root, samples(), cfg.identities, quality=95, image_size=(112, 112))


def _loader_rate(dm: FaceDataModule, device: torch.device, batches: int) -> tuple[float, float]:
    """(img/s after the first batch, seconds to the first batch) over ``batches`` batches, epochs repeated."""
    t0 = time.perf_counter()
    first, seen, start = 0.0, 0, 0.0
    while seen < batches:
        for b in dm.train_dataloader():
            images = b.images if isinstance(b, FaceBatch) else b[0]
            images = images.to(device, non_blocking=True)
            if seen == 0:
                _sync(device)
                start = time.perf_counter()
                first = start - t0
                n = 0
            else:
                n += images.shape[0]
            seen += 1
            if seen >= batches:
                break
    _sync(device)
    return n / max(time.perf_counter() - start, 1e-9), first


def input_pipeline(cfg: Any, device: torch.device, deadline: float) -> dict[str, Any]:
    """Input-bound img/s of the RecordIO loader (CPU workers) and, if installed, DALI."""
    from fr_lightning.data import Augment, RecordIOSource

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "rec"
        t0 = time.perf_counter()
        _write_recordio(cfg, root)
        write_s = time.perf_counter() - t0
        pipelines: list[tuple[str, Any]] = [("recordio + flip (default)", lambda: RecordIOSource(str(root)))]
        try:
            if cfg.tiny:
                raise ImportError("not in --tiny")
            import albumentations  # noqa: F401

            pipelines.append((
                "recordio + crop/brightness/blur (albumentations)",
                lambda: RecordIOSource(str(root), augment=Augment(random_resized_crop=0.5, brightness_contrast=0.5, blur=0.2)),
            ))
        except ImportError as exc:
            rows.append({"pipeline": "recordio + albumentations", "status": f"skipped: {exc or 'albumentations not installed'}"})
        for label, make in pipelines:
            if time.perf_counter() > deadline:
                rows.append({"pipeline": label, "status": "skipped: time budget"})
                continue
            dm = FaceDataModule(train=make(), val_sets=[], image_size=cfg.image_size, batch_size=cfg.batch, num_workers=cfg.workers)
            dm.setup("fit")
            rate, first = _loader_rate(dm, device, cfg.loader_batches)
            rows.append({"pipeline": label, "workers": cfg.workers, "status": "ok", "img_per_s": rate, "first_batch_s": first})
        try:
            from fr_lightning.data import DaliSource

            if device.type != "cuda":
                raise ImportError("DALI needs a CUDA device")
            dm = FaceDataModule(train=DaliSource(str(root), num_threads=cfg.workers), val_sets=[], image_size=cfg.image_size, batch_size=cfg.batch)
            dm.setup("fit")
            rate, first = _loader_rate(dm, device, cfg.loader_batches)
            rows.append({"pipeline": "DALI (DaliSource)", "workers": cfg.workers, "status": "ok", "img_per_s": rate, "first_batch_s": first})
        except ImportError as exc:
            rows.append({"pipeline": "DALI (DaliSource)", "status": f"skipped: {exc}"})
    return {"status": "ok", "images": cfg.images, "write_s": write_s, "rows": rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def partial_fc_nccl(cfg: Any, device: torch.device, deadline: float) -> dict[str, Any]:
    """World size 1 on NCCL (gloo on CPU): Partial FC's collectives, a DDP fit and a checkpoint round trip."""
    from fr_lightning.classifiers.partial_fc import AllGatherRows, DistCrossEntropy

    backend = "nccl" if device.type == "cuda" else "gloo"
    keys = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group(backend, rank=0, world_size=1)
    out: dict[str, Any] = {"backend": dist.get_backend(), "world_size": dist.get_world_size()}
    try:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(cfg.batch, 64, generator=g).to(device).requires_grad_()
        gathered = AllGatherRows.apply(x, [cfg.batch])
        gathered.sum().backward()
        out["allgather_max_abs_err"] = float((gathered - x).detach().abs().max())
        logits = torch.randn(cfg.batch, 300, generator=g).to(device).requires_grad_()
        labels = torch.randint(0, 300, (cfg.batch,), generator=g).to(device)
        mine = DistCrossEntropy.apply(logits, labels)
        ref = F.cross_entropy(logits.detach().float(), labels, reduction="none")
        out["dist_ce_max_abs_err"] = float((mine.detach() - ref).abs().max())
        mine.mean().backward()
        ref_logits = logits.detach().clone().requires_grad_()
        F.cross_entropy(ref_logits, labels).backward()
        out["dist_ce_grad_max_abs_err"] = float((logits.grad - ref_logits.grad).abs().max())  # type: ignore[operator]

        module = make_module(cfg, cfg.backbones[0])
        steps = cfg.warmup + cfg.steps
        batch = synthetic_batch(cfg, device)
        timer = _StepTimer(cfg.warmup, device)
        loader = DataLoader([batch] * steps, batch_size=None, shuffle=False)
        with tempfile.TemporaryDirectory() as root:
            trainer = _trainer(device, "bf16-mixed" if cfg.bf16 else "32-true", steps, [timer], root, strategy="ddp")
            trainer.fit(module, train_dataloaders=loader)
            out["ddp_img_per_s"] = cfg.batch * max(timer.steps, 1) / max(timer.end - timer.start, 1e-9)
            out["sharded"] = bool(module.classifier.sharded)
            out["ddp_ignore"] = list(getattr(module, "_ddp_params_and_buffers_to_ignore", []))
            out["ddp_ignore_expected"] = module.classifier.ddp_ignore("classifier.")
            path = Path(root) / "pfc.ckpt"
            trainer.save_checkpoint(path)
            state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
            weight = state["classifier.weight"]
            out["checkpoint_weight_shape"] = list(weight.shape)
            full = module.classifier.gather_rows(module.classifier.weight.detach()).cpu()
            out["checkpoint_roundtrip_max_abs_err"] = float((weight.float() - full.float()).abs().max())
        ok = (
            out["allgather_max_abs_err"] == 0.0 and out["dist_ce_max_abs_err"] < 1e-4
            and out["checkpoint_weight_shape"][0] == cfg.num_classes and out["checkpoint_roundtrip_max_abs_err"] == 0.0
            and out["ddp_ignore"] == out["ddp_ignore_expected"]
        )
        out["status"] = "ok" if ok else "mismatch"
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out
