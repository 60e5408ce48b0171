"""Deployment: rebuild a model from any weight file, export it (ONNX / TorchScript), embed faces.

One loader serves every command that takes a model: :func:`load_model` rebuilds a checkpoint's
network (``fr export``, and ``fr embed|verify|eval`` through :func:`load_embedder`), and
:mod:`.weights` reads checkpoints and ``backbone.pth`` files for those commands and for
fine-tuning (``init_from``). The commands themselves live in
:mod:`fr_lightning.cli`; docs/deploy.md has the contract.
"""

from fr_lightning.deploy.checkpoint import LoadedModel, build_module, find_run_config, load_model, read_run_config
from fr_lightning.deploy.formats import INPUT_NAME, OUTPUT_NAME, ParityReport, compare, export_onnx, export_torchscript
from fr_lightning.deploy.insightface import InsightfaceView, check_insightface_contract, insightface_blob, insightface_view
from fr_lightning.deploy.runtime import (
    BackboneEmbedder,
    CheckpointEmbedder,
    Embedder,
    OnnxEmbedder,
    TorchScriptEmbedder,
    load_embedder,
)
from fr_lightning.deploy.weights import (
    BackboneGuess,
    WeightsFile,
    build_named_backbone,
    guess_backbone,
    load_backbone_state,
    read_weights,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "BackboneEmbedder",
    "BackboneGuess",
    "CheckpointEmbedder",
    "Embedder",
    "InsightfaceView",
    "LoadedModel",
    "OnnxEmbedder",
    "ParityReport",
    "TorchScriptEmbedder",
    "WeightsFile",
    "build_module",
    "build_named_backbone",
    "check_insightface_contract",
    "compare",
    "export_onnx",
    "export_torchscript",
    "find_run_config",
    "guess_backbone",
    "insightface_blob",
    "insightface_view",
    "load_backbone_state",
    "load_embedder",
    "load_model",
    "read_run_config",
    "read_weights",
]
