"""Rebuild a trained module's evaluation embedding network from a checkpoint and its run config.

``fr fit`` saves the resolved configuration as ``<run dir>/config.yaml`` and checkpoints under
``<run dir>/checkpoints/``. The module is rebuilt from that YAML (or from recipes given with
``--config``), the checkpoint is read with ``torch.load(weights_only=True)``, and only the tensors
of ``module.embedding_network()`` are loaded: the classifier (whose size depends on the training
data, which need not exist where the model is deployed) is never needed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from fr_lightning.deploy.weights import WeightsFile, is_lightning_checkpoint, peek_weights, read_weights

__all__ = ["LoadedModel", "build_module", "find_run_config", "load_model", "read_run_config"]


@dataclass
class LoadedModel:
    """A rebuilt module in eval mode and what deployment needs from it.

    Attributes:
        module: the LightningModule (eval mode, weights of the embedding network loaded).
        network: ``module.embedding_network()`` in eval mode (``images [B, 3, S, S] -> [B, D]``).
        image_size: side ``S`` of the square input images.
        embedding_dim: ``D``.
        config_files: the saved run config it was built from (empty when a config was given).
    """

    module: nn.Module
    network: nn.Module
    image_size: int
    embedding_dim: int
    config_files: list[Path]


def find_run_config(checkpoint: str | Path) -> Path | None:
    """``<run dir>/config.yaml`` of ``<run dir>/checkpoints/x.ckpt`` (or next to the checkpoint)."""
    ckpt = Path(checkpoint)
    for candidate in (ckpt.parent.parent / "config.yaml", ckpt.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def read_run_config(path: str | Path) -> dict[str, Any]:
    """A run's saved ``config.yaml`` (already resolved by ``fr fit``: plain YAML, no composition)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return data


def _method_class(class_path: str) -> type | None:
    """The class named by a callback's ``class_path`` (None when it cannot be imported)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name or "fr_lightning.methods"), name)
    except (ImportError, AttributeError):
        return None


def _embedding_methods(callbacks: object, source: str) -> list[object]:
    """Instantiate the trainer callbacks that are Methods defining their own evaluation embedding.

    Other methods only shape training (and may need files, e.g. a KD teacher, that a deployment
    machine lacks), so they are not built.
    """
    from fr_lightning.methods.base import Method

    if callbacks is None:
        return []
    entries = callbacks if isinstance(callbacks, list) else [callbacks]
    base_impl = getattr(Method, "embedding_network", None)
    wanted = []
    for entry in entries:
        if not isinstance(entry, dict) or "class_path" not in entry:
            continue
        cls = _method_class(str(entry["class_path"]))
        if cls is None or not (isinstance(cls, type) and issubclass(cls, Method)):
            continue
        if base_impl is not None and getattr(cls, "embedding_network", base_impl) is not base_impl:
            wanted.append(entry)
    if not wanted:
        return []
    from lightning.pytorch.cli import LightningArgumentParser

    methods = []
    for entry in wanted:
        parser = LightningArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(Method, "method", required=True)
        try:
            methods.append(parser.instantiate_classes(parser.parse_object({"method": entry})).method)
        except Exception as err:  # jsonargparse raises several types; name the entry
            raise ValueError(f"{source}: trainer.callbacks entry {entry.get('class_path')}: {err}") from err
    return methods


def _accepts(class_path: object, argument: str) -> bool:
    """Whether the class (or factory) named by ``class_path`` takes ``argument``."""
    if not isinstance(class_path, str) or "." not in class_path:
        return False
    target = _method_class(class_path)
    try:
        return target is not None and argument in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _linked_model_section(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """``config['model']`` with the CLI's parse-time link applied: ``data.image_size`` -> backbone ``input_size``.

    ``fr fit`` saves the linked value only on the data side, so a saved config.yaml needs this
    to rebuild the backbone at the size it was trained at.
    """
    model = config.get("model")
    if not isinstance(model, dict):
        return None
    data = config.get("data")
    data_args = data.get("init_args") if isinstance(data, dict) else None
    size = data_args.get("image_size") if isinstance(data_args, dict) else None
    args = model.get("init_args") if isinstance(model.get("init_args"), dict) else None
    backbone = args.get("backbone") if args else None
    if size is None or not isinstance(backbone, dict) or not _accepts(backbone.get("class_path"), "input_size"):
        return model
    linked_backbone = {**backbone, "init_args": {**(backbone.get("init_args") or {}), "input_size": int(size)}}
    return {**model, "init_args": {**args, "backbone": linked_backbone}}


def build_module(config: Mapping[str, Any], source: str) -> nn.Module:
    """Instantiate ``config['model']`` (class_path + init_args) with jsonargparse, as the CLI does.

    Methods among ``trainer.callbacks`` that define their own evaluation embedding are attached
    (their parts are part of the network); the rest only shape training and are not built.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningArgumentParser

    model_cfg = _linked_model_section(config)
    if model_cfg is None:
        raise ValueError(f"{source}: no 'model' section (class_path + init_args) to rebuild the network from")
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningModule, "model", required=True)
    try:
        module = parser.instantiate_classes(parser.parse_object({"model": model_cfg})).model
    except Exception as err:  # jsonargparse raises several types; name the file and section
        raise ValueError(f"{source}: cannot build 'model': {err}") from err
    if not callable(getattr(module, "embedding_network", None)):
        raise ValueError(f"{source}: model {type(module).__name__} has no embedding_network()")
    trainer_cfg = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    methods = _embedding_methods(trainer_cfg.get("callbacks"), source)
    if methods:
        module.attach_methods(methods)
    return module


def _load_embedding_weights(module: nn.Module, weights: WeightsFile, hint: str) -> None:
    """Copy the checkpoint tensors that ``module.embedding_network()`` uses; fail naming missing or misshapen keys."""
    checkpoint, state = weights.path, weights.state
    net = module.embedding_network()
    ids = {id(t) for t in [*net.parameters(), *net.buffers()]}
    own = {n: t for n, t in [*module.named_parameters(), *module.named_buffers()] if id(t) in ids}
    if len({id(t) for t in own.values()}) < len(ids):
        raise ValueError(f"{type(module).__name__}.embedding_network() holds tensors outside the module; cannot load them from {checkpoint}")
    missing = sorted(n for n in own if n not in state)
    if missing:
        raise ValueError(f"{checkpoint} lacks {len(missing)} tensors of the embedding network, e.g. {missing[:3]}; {hint}")
    for name, tensor in own.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ValueError(
                f"{checkpoint}: '{name}' has shape {tuple(state[name].shape)} but the configured network expects "
                f"{tuple(tensor.shape)}; {hint}"
            )
    module.load_state_dict({n: state[n] for n in own}, strict=False)


def load_model(checkpoint: str | Path, config: Mapping[str, Any] | None = None, source: str | None = None) -> LoadedModel:
    """Rebuild the module of ``checkpoint`` and return its evaluation embedding network in eval mode.

    This is the one way every command that takes a ``.ckpt`` (``fr embed``, ``verify``, ``eval``,
    ``export``) rebuilds the trained network.

    Args:
        checkpoint: a ``.ckpt`` written by ``fr fit``.
        config: the configuration describing the model (``model`` section, optionally ``data``
            and ``trainer.callbacks``), e.g. recipes composed by the command line; default: the
            run's saved ``config.yaml`` beside the checkpoint's ``checkpoints/`` folder.
        source: what ``config`` came from, for error messages.

    Raises:
        FileNotFoundError: the checkpoint does not exist, or no config was given or found.
        ValueError: the config cannot build a model, or the checkpoint does not fit it.
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
    files: list[Path] = []
    if config is None:
        found = find_run_config(ckpt)
        if found is None and not is_lightning_checkpoint(peek_weights(ckpt)) and read_weights(ckpt).kind == "backbone":
            raise ValueError(f"{ckpt} is a bare backbone state_dict, not a checkpoint of fr fit; name its architecture with --backbone")
        if found is None:
            raise FileNotFoundError(
                f"no config.yaml next to {ckpt.parent} (fr fit saves it in the run folder); pass the recipe with --config"
            )
        config, source, files = read_run_config(found), str(found), [found]
    source = source or "the given config"
    weights = read_weights(ckpt)
    if weights.kind != "checkpoint":
        raise ValueError(f"{ckpt} is a bare backbone state_dict, not a checkpoint of fr fit; name its architecture with --backbone")
    module = build_module(config, source)
    hint = f"does {source} describe the network this checkpoint was trained with?"
    _load_embedding_weights(module, weights, hint)
    module.eval()
    network = module.embedding_network().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    backbone = getattr(module, "backbone", network)
    size = getattr(backbone, "input_size", None)
    if size is None:
        size = config_image_size(config)
        if size is None:
            raise ValueError(f"{source}: cannot tell the input image size (no backbone input_size or data image_size)")
    dim = int(getattr(network, "embedding_dim", getattr(backbone, "embedding_dim", 0)))
    return LoadedModel(module, network, int(size), dim, files)


def config_image_size(config: Mapping[str, Any]) -> int | None:
    """``data.init_args.image_size`` of a config, if present."""
    data = config.get("data")
    args = data.get("init_args") if isinstance(data, dict) else None
    size = args.get("image_size") if isinstance(args, dict) else None
    return int(size) if size is not None else None
