"""Fine-tuning controls: ``backbone_lr_scale`` and ``freeze_backbone_steps`` (module arguments, so in the run config)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from fr_lightning.finetune import LR_SCALE_KEY, BackboneFreeze, split_backbone_groups
from tests.helpers import tiny_data, tiny_module, tiny_trainer


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Snapshot(pl.Callback):
    """Backbone state after each optimizer step, keyed by the step count."""

    def __init__(self) -> None:
        self.after: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.after[trainer.global_step] = _state(pl_module.backbone)


def test_split_groups_tags_only_backbone_parameters() -> None:
    module = tiny_module()
    groups = split_backbone_groups(module.parameter_groups(), module.backbone, 0.1)
    backbone = {id(p) for p in module.backbone.parameters()}
    for group in groups:
        inside = {id(p) in backbone for p in group["params"]}
        assert len(inside) == 1
        assert (LR_SCALE_KEY in group) == inside.pop()
    assert sum(len(g["params"]) for g in groups) == sum(len(g["params"]) for g in module.parameter_groups())
    assert split_backbone_groups(module.parameter_groups(), module.backbone, 1.0) == module.parameter_groups()
    with pytest.raises(ValueError, match="backbone_lr_scale must be >= 0"):
        split_backbone_groups(module.parameter_groups(), module.backbone, -1.0)


def test_backbone_lr_scale_scales_the_backbone_groups(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_module(backbone_lr_scale=0.0)
    before = _state(module.backbone)
    fc_before = module.classifier.weight.detach().clone()
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data())
    groups = trainer.optimizers[0].param_groups
    backbone = {id(p) for p in module.backbone.parameters()}
    assert {g["initial_lr"] for g in groups if id(g["params"][0]) in backbone} == {0.0}
    assert {g["initial_lr"] for g in groups if id(g["params"][0]) not in backbone} == {0.1}
    after = module.backbone.state_dict()
    assert all(torch.equal(after[n], before[n]) for n, _ in module.backbone.named_parameters())
    assert not torch.equal(module.classifier.weight.detach(), fc_before)


def test_freeze_backbone_steps_fixes_weights_and_batchnorm_statistics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_module(freeze_backbone_steps=2)
    before = _state(module.backbone)
    snap = Snapshot()
    trainer = tiny_trainer(tmp_path, callbacks=[snap], max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data())
    assert any(isinstance(cb, BackboneFreeze) for cb in trainer.callbacks)
    for step in (1, 2):  # frozen: every tensor, running statistics included, unchanged
        assert all(torch.equal(snap.after[step][k], v) for k, v in before.items()), f"backbone moved during frozen step {step}"
    moved = [k for k, v in before.items() if not torch.equal(snap.after[3][k], v)]
    assert any(k.endswith("running_mean") for k in moved) and any(k.endswith("conv1.weight") for k in moved)
    assert module.backbone.training, "the backbone is back in train mode after the frozen steps"
    state = trainer.optimizers[0].state
    assert all(p in state for p in module.backbone.parameters() if p.requires_grad), "the backbone steps after unfreezing"


def test_negative_freeze_is_refused() -> None:
    with pytest.raises(ValueError, match="freeze_backbone_steps must be >= 0"):
        BackboneFreeze(-1)
