"""Backbone tests, generated from ``fr_lightning.backbones.BACKBONES``.

Small widths and 56x56 inputs keep them fast on CPU; the insightface compatibility tests
build full-size models (width 1, 112x112) without running them.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import fr_lightning.backbones as backbones_pkg
from fr_lightning.backbones import (
    BACKBONES,
    FaceBackbone,
    FeatureInfo,
    IResNet,
    MobileFaceNet,
    iresnet18,
    mobilefacenet,
    register_backbone,
)
from fr_lightning.backbones.iresnet import DEPTHS

KEYS_DIR = Path(__file__).parent / "data" / "insightface_keys"
# Reference name -> shape lists, written from insightface arcface_torch's backbone definitions.
REFERENCE = {
    "r18": ("iresnet18", {}),
    "r50": ("iresnet50", {}),
    "mbf": ("mobilefacenet", {}),
    "mbf_large": ("mobilefacenet_large", {}),
}
SMALL = {"width": 0.125, "input_size": 56}
# The deeper variants take most of this file's CPU time: their generated cases run in the slow
# step (``-m slow``); iresnet18 and mobilefacenet cover both families in the default suite.
DEFAULT_SUITE = {"iresnet18", "mobilefacenet"}
ALL = [n if n in DEFAULT_SUITE else pytest.param(n, marks=pytest.mark.slow) for n in sorted(BACKBONES)]


def _small(name: str, **overrides: object) -> nn.Module:
    torch.manual_seed(0)
    return BACKBONES[name](**{**SMALL, **overrides})


def _images(batch: int = 2, size: int = 56, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_factory_signature_is_a_config_schema(name: str) -> None:
    fn = BACKBONES[name]
    doc = inspect.getdoc(fn) or ""
    for param in inspect.signature(fn).parameters.values():
        assert param.kind is param.POSITIONAL_OR_KEYWORD, f"{name}: no *args/**kwargs ({param.name})"
        assert param.annotation is not param.empty, f"{name}.{param.name} has no type"
        assert param.default is not param.empty, f"{name}.{param.name} has no default"
        assert f"{param.name}:" in doc, f"{name}.{param.name} missing from the Args docstring"


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_and_gradients(name: str) -> None:
    model = _small(name, embedding_dim=64).train()
    assert model.embedding_dim == 64
    out = model(_images())
    assert out.shape == (2, 64)
    assert torch.isfinite(out).all()
    out.sum().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", ALL)
def test_forward_features_matches_feature_info_and_forward(name: str) -> None:
    model = _small(name).eval()
    assert isinstance(model, FaceBackbone)
    x = _images(batch=3)
    seen: list[torch.Tensor] = []
    # feature_info.module names the stage whose output forward_features returns.
    handle = model.get_submodule(model.feature_info.module).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        feats = model.forward_features(x)
        emb, feats2 = model.forward_with_features(x)
        whole = model(x)
    handle.remove()
    assert feats.shape == (3, *model.feature_shape()) == (3, model.feature_info.channels, 4, 4)  # 56 -> 28 -> 14 -> 7 -> 4
    assert torch.equal(seen[0], feats)
    torch.testing.assert_close(model.forward_head(feats), whole, rtol=0, atol=0)
    torch.testing.assert_close(emb, whole, rtol=0, atol=0)
    assert torch.equal(feats2, feats)


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
@pytest.mark.parametrize("size", [48, 56, 112])
def test_feature_info_predicts_the_map_side_without_a_forward_pass(name: str, size: int) -> None:
    model = _small(name, input_size=size, width=0.0625).eval()
    with torch.no_grad():
        feats = model.forward_features(_images(batch=1, size=size))
    assert tuple(feats.shape[1:]) == model.feature_shape()


def test_feature_map_stays_in_the_graph() -> None:
    model = _small("iresnet18").train()
    emb, feats = model.forward_with_features(_images())
    (grad,) = torch.autograd.grad(emb.sum(), feats)
    assert grad.shape == feats.shape and grad.abs().sum() > 0


def test_feature_info_side_is_the_ceiling() -> None:
    info = FeatureInfo(channels=8, reduction=16, module="x")
    assert [info.side(s) for s in (16, 17, 56, 112, 113)] == [1, 2, 4, 7, 8]


def test_registry_holds_every_exported_factory_and_refuses_duplicates() -> None:
    exported = {n for n in backbones_pkg.__all__ if callable(getattr(backbones_pkg, n)) and n.islower()}
    assert exported - {"register_backbone"} == set(BACKBONES)
    assert sorted(f"iresnet{d}" for d in DEPTHS) == sorted(n for n in BACKBONES if n.startswith("iresnet"))
    for depth, layers in DEPTHS.items():
        assert BACKBONES[f"iresnet{depth}"].__doc__.startswith(f"iResNet-{depth}, stage depths {list(layers)}")
    assert register_backbone(iresnet18) is iresnet18  # registering the same factory again is a no-op

    def impostor() -> IResNet:
        return IResNet()

    impostor.__name__ = "iresnet18"
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone(impostor)
    assert BACKBONES["iresnet18"] is iresnet18


@pytest.mark.parametrize("ref", sorted(REFERENCE))
def test_insightface_names_and_shapes(ref: str) -> None:
    factory, kwargs = REFERENCE[ref]
    expected = json.loads((KEYS_DIR / f"{ref}.json").read_text())
    model = BACKBONES[factory](**kwargs)
    assert _shapes(model) == expected
    # A published backbone.pth is such a dict of tensors: it must load strictly.
    fake = {
        k: torch.zeros(s, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.randn(s)
        for k, s in expected.items()
    }
    model.load_state_dict(fake, strict=True)


def test_iresnet_final_bn_scale_is_frozen_like_insightface() -> None:
    model = iresnet18(**SMALL)
    assert not model.features.weight.requires_grad
    assert torch.equal(model.features.weight, torch.ones_like(model.features.weight))
    assert sum(not p.requires_grad for p in model.parameters()) == 1


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name: str) -> None:
    model = _small(name).train()
    model(_images())  # move the running statistics away from their initial values
    fresh = _small(name)
    fresh.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(_images()), model(_images()), rtol=0, atol=0)


def test_input_size_sets_head_and_is_checked() -> None:
    r = iresnet18(width=0.25, input_size=56)
    assert r.fc.in_features == 128 * 4 * 4
    m = mobilefacenet(width=0.25, input_size=56)
    assert m.features.layers[0].layers[0].kernel_size == (4, 4)
    with pytest.raises(ValueError, match="input_size"):
        r(_images(size=112))


def test_width_scales_channels() -> None:
    r = iresnet18(width=0.25, input_size=56)
    assert [r.get_submodule(f"layer{i}")[-1].conv2.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert r.conv1.out_channels == 16 and r.bn2.num_features == 128
    m = mobilefacenet(width=0.25, input_size=56)
    assert m.conv_sep.layers[0].out_channels == 128
    assert m.layers[0].layers[0].out_channels == 16 * 2  # ch(64) * scale


@pytest.mark.parametrize("name", ["iresnet18", *(pytest.param(n, marks=pytest.mark.slow) for n in ("mobilefacenet", "mobilefacenet_large"))])
def test_gradient_checkpointing_matches_plain(name: str) -> None:
    plain = _small(name, width=0.0625).double().train()
    ckpt = copy.deepcopy(plain)
    ckpt.gradient_checkpointing = True
    assert ckpt.gradient_checkpointing and not plain.gradient_checkpointing
    calls = []
    ckpt.get_submodule(ckpt.feature_info.module).register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x = _images(dtype=torch.float64)
    out_plain, out_ckpt = plain(x), ckpt(x)
    torch.testing.assert_close(out_ckpt, out_plain)
    out_plain.square().sum().backward()
    out_ckpt.square().sum().backward()
    assert len(calls) == 1, "the feature-layer hook must fire once, not again on recomputation"
    grads_plain = dict(plain.named_parameters())
    for pname, p in ckpt.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads_plain[pname].grad, msg=pname)
    # Recomputation must not update BatchNorm running statistics a second time.
    buffers_plain = dict(plain.named_buffers())
    for bname, b in ckpt.named_buffers():
        torch.testing.assert_close(b, buffers_plain[bname], msg=bname)


def test_gradient_checkpointing_flag_from_factory() -> None:
    assert iresnet18(**SMALL, gradient_checkpointing=True).layer4.gradient_checkpointing
    assert mobilefacenet(**SMALL, gradient_checkpointing=True).layers.gradient_checkpointing


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_fp16_false_keeps_an_outer_autocast(name: str) -> None:
    # insightface's autocast(self.fp16) would switch an outer (Lightning) autocast off.
    model = _small(name).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = model.forward_features(_images())
    assert feats.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_fp16_flag_is_a_no_op_on_cpu(name: str) -> None:
    model = _small(name).eval()
    half = copy.deepcopy(model)
    half.fp16 = True
    with torch.no_grad():
        torch.testing.assert_close(half(_images()), model(_images()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast needs CUDA")
@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_fp16_runs_trunk_in_half_and_head_in_float(name: str) -> None:
    model = _small(name, fp16=True).cuda().train()
    out, feats = model.forward_with_features(_images().cuda())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # iResNet's last stage runs under autocast; MobileFaceNet's conv_sep runs in float32 (as in insightface).
    assert feats.dtype == (torch.float16 if name.startswith("iresnet") else torch.float32)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("class_path", "init_args", "expected"),
    [
        ("fr_lightning.backbones.IResNet", {"layers": [2, 2, 2, 2], "width": 0.125, "input_size": 56}, IResNet),
        ("fr_lightning.backbones.MobileFaceNet", {"blocks": [1, 2, 2, 1], "width": 0.125, "input_size": 56}, MobileFaceNet),
        ("fr_lightning.backbones.iresnet18", {"width": 0.125, "input_size": 56}, IResNet),
        ("fr_lightning.backbones.mobilefacenet", {"width": 0.125, "input_size": 56}, MobileFaceNet),
    ],
)
def test_classes_build_from_yaml(class_path: str, init_args: dict, expected: type) -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--backbone", type=nn.Module)
    cfg = parser.parse_args(["--backbone", json.dumps({"class_path": class_path, "init_args": init_args})])
    # ``instantiate`` replaced ``instantiate_classes`` in jsonargparse 4.49.
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    model = instantiate(cfg).backbone
    assert isinstance(model, expected)
    assert model(_images()).shape == (2, 512)


# Recorded with the backbones as they were before forward() was split into forward_features +
# forward_head (commit a418efb): the split must not change what a seeded network computes.
BEFORE_SPLIT = {
    "iresnet18": ([1.22641, 0.30006, -0.30914, -0.64023], 108.2842),
    "mobilefacenet": ([-0.96087, 0.68436, -1.64752, -0.71864], 110.7449),
}


@pytest.mark.parametrize("name", sorted(BEFORE_SPLIT))
def test_outputs_match_those_recorded_before_the_forward_split(name: str) -> None:
    torch.manual_seed(0)
    model = BACKBONES[name](width=0.125, input_size=56, embedding_dim=32).train()
    with torch.no_grad():
        out = model(_images(batch=4))
    first, abs_sum = BEFORE_SPLIT[name]
    torch.testing.assert_close(out[0, :4], torch.tensor(first), rtol=1e-4, atol=1e-4)
    assert abs(float(out.abs().sum()) - abs_sum) < 1e-2


def test_compile_covers_both_halves_and_keeps_parameter_names() -> None:
    model = _small("iresnet18").eval()
    keys = list(model.state_dict())
    x = _images()
    with torch.no_grad():
        expected = model(x)
    model.compile(backend="eager")  # the wiring, not inductor's code generation
    assert list(model.state_dict()) == keys
    assert "forward_features" in vars(model) and "forward_head" in vars(model)
    with torch.no_grad():
        emb, feats = model.forward_with_features(x)
        torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(emb, expected)
    assert feats.shape == (2, *model.feature_shape())
