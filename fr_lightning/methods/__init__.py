"""Training methods, each a `Method` callback over a functional core; one name per method.

============  ==========================  =====================  ==============================
name          class                       recipe / fragment      log keys
============  ==========================  =====================  ==============================
lowres        :class:`LowRes`             ``lowres.yaml``        ``train/loss/lowres/*``, ``train/lowres/*``
poseface      :class:`PoseFace`           ``poseface.yaml``      ``train/loss/poseface/*``, ``train/poseface/*``
coteaching    :class:`CoTeaching`         ``coteaching.yaml``    ``train/loss/coteaching/*``, ``train/coteaching/*``
kd            :class:`KD`                 ``kd.yaml``            ``train/loss/kd/*``
gabn          :class:`GABN`               ``gabn.yaml``          ``train/loss/gabn/*``, ``train/gabn/*``
pair          :class:`PairLoss`           ``pair.yaml``          ``train/loss/pair/*``
============  ==========================  =====================  ==============================
"""

from fr_lightning.methods.base import METHODS, NEEDS, Method, check_methods, check_needs, register
from fr_lightning.methods.coteaching import CoTeaching
from fr_lightning.methods.gabn import GABN
from fr_lightning.methods.kd import KD
from fr_lightning.methods.lowres import LowRes
from fr_lightning.methods.pair import PairLoss
from fr_lightning.methods.poseface import PoseFace

__all__ = [
    "METHODS",
    "NEEDS",
    "GABN",
    "KD",
    "CoTeaching",
    "LowRes",
    "Method",
    "PairLoss",
    "PoseFace",
    "check_methods",
    "check_needs",
    "register",
]
