"""Deployment: rebuild a checkpoint's embedding network, export it (ONNX / TorchScript), embed and verify faces.

``fr export`` (:mod:`fr_lightning.tools.export`), ``fr embed`` (:mod:`.embed_cli`) and
``fr verify`` (:mod:`.verify_cli`) are built from these pieces; docs/deploy.md has the contract.
"""

from fr_lightning.deploy.checkpoint import LoadedModel, find_run_config, load_model, read_config
from fr_lightning.deploy.formats import INPUT_NAME, OUTPUT_NAME, ParityReport, compare, export_onnx, export_torchscript
from fr_lightning.deploy.insightface import InsightfaceView, check_insightface_contract, insightface_blob, insightface_view
from fr_lightning.deploy.runtime import CheckpointEmbedder, Embedder, OnnxEmbedder, TorchScriptEmbedder, load_embedder

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "CheckpointEmbedder",
    "Embedder",
    "InsightfaceView",
    "LoadedModel",
    "OnnxEmbedder",
    "ParityReport",
    "TorchScriptEmbedder",
    "check_insightface_contract",
    "compare",
    "export_onnx",
    "export_torchscript",
    "find_run_config",
    "insightface_blob",
    "insightface_view",
    "load_embedder",
    "load_model",
    "read_config",
]
