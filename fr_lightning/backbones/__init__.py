"""Backbones: :class:`FaceBackbone` subclasses, ``images[B, 3, H, W] -> embeddings[B, D]``.

Every backbone exposes ``embedding_dim``, ``input_size``, ``feature_info`` and the two halves
of its forward pass, ``forward_features`` / ``forward_head`` (see :mod:`.base`). YAML names a
class (or, from Python, a factory)::

    backbone:
      class_path: fr_lightning.backbones.IResNet
      init_args: {layers: [2, 2, 2, 2], width: 0.25, input_size: 56}

Adding a backbone is one file in this package: its factories carry ``@register_backbone``
(which lists them in ``BACKBONES``, the registry the tests are generated from) and its
``__all__`` names what this package re-exports. Every module here not starting with ``_`` is
imported below.
"""

from __future__ import annotations

import importlib
import pkgutil

from fr_lightning.backbones.base import BACKBONES, FaceBackbone, FeatureInfo, register_backbone

__all__ = ["BACKBONES", "FaceBackbone", "FeatureInfo", "register_backbone"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name.startswith("_") or _info.name == "base":
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)
del _info, _module, _name
