"""Margin heads: turn cosines ``[B, C]`` into scaled logits (or a per-sample loss for SFace).

Every head follows :class:`MarginHead`'s contract. Adding a head is one file in this package
whose class carries ``@register_head``: that lists it in ``HEADS`` under the file's name (also
the ``configs/heads/<name>.yaml`` name, underscores written as hyphens; the tests are generated
from ``HEADS``) and this package re-exports it by class name, so YAML can say
``class_path: fr_lightning.heads.<Class>``. Every module here except ``base`` is imported below.
"""

from __future__ import annotations

import importlib
import pkgutil

from fr_lightning.heads.base import HEADS, MarginHead, register_head

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
del _info

globals().update({cls.__name__: cls for cls in HEADS.values()})

__all__ = ["HEADS", "MarginHead", "register_head", *sorted(cls.__name__ for cls in HEADS.values())]
