"""``init_from``: start ``fr fit`` from an insightface ``backbone.pth``, ``fr export``'s, or a ``.ckpt``.

The ``backbone.pth`` files here are written by :class:`RefIResNet`, a transcription of
insightface's ``arcface_torch/backbones/iresnet.py`` (same module names and layer order, written
independently of the project's backbone), at a small width so the tests run on a CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from fr_lightning.backbones import IResNet, iresnet18
from fr_lightning.classifiers import PartialFC
from fr_lightning.cli import cli_main, main
from fr_lightning.finetune import initialise_from
from fr_lightning.heads import ArcFace
from fr_lightning.module import FaceRecognitionModule
from tests.helpers import tiny_data, tiny_trainer

ROOT = Path(__file__).resolve().parents[1]


class RefBlock(nn.Module):
    """insightface's ``IBasicBlock``: BN-conv-BN-PReLU-conv(stride)-BN plus the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class RefIResNet(nn.Module):
    """insightface's ``IResNet`` with its channel counts divided by ``64 // base`` and any input side."""

    def __init__(self, layers: list[int], base: int = 8, num_features: int = 32, input_size: int = 56) -> None:
        super().__init__()
        side = input_size
        for _ in range(4):
            side = (side + 1) // 2
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base, eps=1e-05)
        self.prelu = nn.PReLU(base)
        self.layer1 = self._make_layer(base, layers[0])
        self.layer2 = self._make_layer(base * 2, layers[1])
        self.layer3 = self._make_layer(base * 4, layers[2])
        self.layer4 = self._make_layer(base * 8, layers[3])
        self.bn2 = nn.BatchNorm2d(base * 8, eps=1e-05)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(base * 8 * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-05))
        layers = [RefBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [RefBlock(planes, planes, 1, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


def reference_backbone(layers: list[int] = [2, 2, 2, 2], seed: int = 0) -> RefIResNet:  # noqa: B006
    """A reference network with non-trivial weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = RefIResNet(layers)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            if m.affine and m.weight.requires_grad:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.normal_(0.0, 0.1)
        elif isinstance(m, nn.Conv2d):
            m.weight.data.normal_(0.0, (2.0 / (m.in_channels * 9)) ** 0.5)
    return net.eval()


def write_backbone_pth(path: Path, layers: list[int] = [2, 2, 2, 2], seed: int = 0) -> dict[str, torch.Tensor]:  # noqa: B006
    """Save a reference network's ``state_dict`` as insightface does (``torch.save(backbone.state_dict())``)."""
    state = reference_backbone(layers, seed).state_dict()
    torch.save(state, path)
    return state


def tiny_module(num_classes: int = 5, layers: tuple[int, ...] = (2, 2, 2, 2), **kwargs: object) -> FaceRecognitionModule:
    backbone = IResNet(layers=layers, width=0.125, input_size=56, embedding_dim=32)
    return FaceRecognitionModule(backbone=backbone, head=ArcFace(s=16.0, m=0.3), num_classes=num_classes, **kwargs)


def write_checkpoint(path: Path, num_classes: int, seed: int = 1) -> FaceRecognitionModule:
    """A checkpoint as ``fr fit`` writes it (Lightning's version key and the module's state_dict)."""
    torch.manual_seed(seed)
    module = tiny_module(num_classes)
    torch.save({"pytorch-lightning_version": "2.6.6", "state_dict": module.state_dict(), "global_step": 7}, path)
    return module


def test_reference_keys_are_the_project_backbones_keys(tmp_path: Path) -> None:
    ref = reference_backbone().state_dict()
    ours = iresnet18(width=0.125, input_size=56, embedding_dim=32).state_dict()
    assert list(ref) == list(ours)
    assert all(ref[k].shape == ours[k].shape for k in ref)


def test_backbone_pth_loads_strictly(tmp_path: Path) -> None:
    state = write_backbone_pth(tmp_path / "backbone.pth")
    module = tiny_module()
    lines = initialise_from(module, tmp_path / "backbone.pth")
    assert "backbone loaded from a backbone state_dict" in lines[0]
    got = module.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())


def test_wrong_backbone_names_keys_shapes_and_the_backbone_the_file_fits(tmp_path: Path) -> None:
    write_backbone_pth(tmp_path / "r18.pth", [2, 2, 2, 2])
    with pytest.raises(ValueError) as err:
        initialise_from(tiny_module(layers=(1, 1, 1, 1)), tmp_path / "r18.pth")
    text = str(err.value)
    assert "r18.pth" in text and "unexpected keys: layer1.1." in text
    assert "these weights are iresnet18" in text and "layers=[2, 2, 2, 2]" in text
    assert "IResNet(layers=[1, 1, 1, 1]" in text
    # Same depth, other width: shape differences.
    module = FaceRecognitionModule(IResNet(layers=(2, 2, 2, 2), width=0.25, input_size=56, embedding_dim=32), ArcFace(), 5)
    with pytest.raises(ValueError, match=r"shape differences: conv1.weight \[8, 3, 3, 3\] in the file vs \[16, 3, 3, 3\].*iresnet18"):
        initialise_from(module, tmp_path / "r18.pth")
    # An iResNet-50 layout is named as such.
    write_backbone_pth(tmp_path / "r50.pth", [3, 4, 14, 3])
    with pytest.raises(ValueError, match=r"these weights are iresnet50 \(layers=\[3, 4, 14, 3\]"):
        initialise_from(tiny_module(), tmp_path / "r50.pth")


def test_checkpoint_with_the_same_classes_keeps_classifier_and_head(tmp_path: Path) -> None:
    source = write_checkpoint(tmp_path / "five.ckpt", 5)
    module = tiny_module(5)
    lines = initialise_from(module, tmp_path / "five.ckpt")
    assert "classifier (5 classes) and head kept" in lines[-1]
    assert torch.equal(module.classifier.weight, source.classifier.weight)
    assert torch.equal(module.backbone.fc.weight, source.backbone.fc.weight)


def test_checkpoint_into_partial_fc_keeps_the_centres(tmp_path: Path) -> None:
    source = write_checkpoint(tmp_path / "five.ckpt", 5)
    module = tiny_module(5, classifier=lambda d, c: PartialFC(d, c, sample_rate=0.5))
    initialise_from(module, tmp_path / "five.ckpt")
    assert torch.equal(module.classifier.weight, source.classifier.weight)


def test_three_class_checkpoint_on_five_class_data_trains_and_logs_the_reinitialisation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_checkpoint(tmp_path / "three.ckpt", 3)
    torch.manual_seed(5)
    module = tiny_module(5, init_from=str(tmp_path / "three.ckpt"))
    fresh = module.classifier.weight.detach().clone()
    with caplog.at_level(logging.INFO):
        tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(module, datamodule=tiny_data(num_identities=5))
    assert module.trainer.global_step == 2
    assert module.classifier.weight.shape == (5, 32)
    assert "classifier and head re-initialised (the checkpoint's classifier has 3 classes, this run's data 5" in caplog.text
    # The backbone came from the checkpoint and then trained; the classifier started fresh.
    assert not torch.equal(module.classifier.weight.detach(), fresh)
    assert not torch.equal(module.backbone.conv1.weight.detach(), source.backbone.conv1.weight)


def _fit_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config", str(ROOT / "recipes" / "arcface.yaml"),
        "--model.init_args.backbone.init_args.width=0.125",
        "--model.init_args.backbone.init_args.embedding_dim=32",
        "--data.init_args.train.init_args.num_identities=5",
        "--data.init_args.train.init_args.samples_per_identity=4",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
        "--data.init_args.val_sets=[]",
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path / 'runs'}",
        *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_lr_zero_leaves_the_backbone_bit_identical_and_export_writes_it_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    state = write_backbone_pth(tmp_path / "backbone.pth")
    cli = cli_main(_fit_args(tmp_path, f"--model.init_args.init_from={tmp_path / 'backbone.pth'}", "--model.init_args.optimizer.init_args.lr=0.0"))
    assert cli.trainer.global_step == 1
    params = {n for n, _ in cli.model.backbone.named_parameters()}
    trained = cli.model.backbone.state_dict()
    assert all(torch.equal(trained[n], state[n]) for n in params), "a backbone parameter moved at lr 0"
    assert any(not torch.equal(trained[n], state[n]) for n in state if n.endswith("running_mean")), "BatchNorm statistics should have moved"
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    main(["export", str(last), str(tmp_path / "out.pth")])
    out = torch.load(tmp_path / "out.pth", weights_only=True)
    assert set(out) == set(state)
    assert all(torch.equal(out[n], state[n]) for n in params)


def test_backbone_pth_as_ckpt_path_points_to_init_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_backbone_pth(tmp_path / "backbone.pth")
    with pytest.raises(SystemExit) as stop:
        main(_fit_args(tmp_path, f"--ckpt_path={tmp_path / 'backbone.pth'}"))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fr fit:")]
    assert len(lines) == 1, err  # one paragraph
    assert "is not a checkpoint of fr fit" in lines[0] and "--model.init_args.init_from=" in lines[0]
    assert "iresnet18" in lines[0] and "Traceback" not in err


def test_resume_onto_other_class_count_names_both_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_checkpoint(tmp_path / "three.ckpt", 3)
    with pytest.raises(SystemExit) as stop:
        main(_fit_args(tmp_path, f"--ckpt_path={tmp_path / 'three.ckpt'}"))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "was trained on 3 classes, but this run's data has 5" in err and "--model.init_args.init_from=" in err
    assert "Traceback" not in err


def test_validate_evaluates_a_backbone_pth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fr validate --model.init_args.init_from=backbone.pth`` scores the published network on the run's sets."""
    monkeypatch.chdir(tmp_path)
    state = write_backbone_pth(tmp_path / "backbone.pth")
    args = [a for a in _fit_args(tmp_path, f"--model.init_args.init_from={tmp_path / 'backbone.pth'}")[1:] if not a.startswith("--data.init_args.val_sets")]
    args += ["--data.init_args.val_sets=[{class_path: fr_lightning.data.SyntheticPairs, init_args: {name: synth-lfw, pairs: 40}}]", "--trainer.limit_val_batches=null"]
    cli = cli_main(["validate", *args])
    assert "val/synth-lfw/acc" in cli.trainer.callback_metrics
    got = cli.model.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
