"""Scale switches: config fragments compose with a recipe; PartialFC + bf16 + channels-last in a fit.

(That schedules count optimizer steps under ``accumulate_grad_batches`` is tested in test_module.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fr_lightning.classifiers import PartialFC
from fr_lightning.cli import cli_main
from fr_lightning.heads import CurricularFace
from tests.helpers import tiny_data, tiny_module, tiny_trainer

ROOT = Path(__file__).resolve().parents[1]
FRAGMENTS = sorted((ROOT / "configs" / "scale").glob("*.yaml"))
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=1", "--trainer.strategy=auto"]


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda p: p.stem)
def test_scale_fragment_composes_with_a_recipe(fragment: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    precision = ["--trainer.precision=32"] if fragment.stem == "fp16" else []  # 16-mixed needs a GPU
    cli = cli_main(["--config", str(ROOT / "recipes" / "arcface.yaml"), "--config", str(fragment), *CPU, *precision, "--trainer.logger=false"], run=False)
    assert cli.model is not None and cli.trainer is not None


def test_partial_fc_fit_one_device_bf16_channels_last_stateful_head_accumulation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_module(num_classes=8, classifier=lambda d, c: PartialFC(d, c, sample_rate=0.5), channels_last=True)
    module.head = CurricularFace(s=16.0, m=0.3)
    trainer = tiny_trainer(tmp_path, max_steps=2, accumulate_grad_batches=2, limit_val_batches=0, precision="bf16-mixed")
    trainer.fit(module, datamodule=tiny_data())
    assert trainer.global_step == 2 and torch.isfinite(module.classifier.weight).all()
    assert module.head.t != 0  # the stateful head saw the sampled cosines
