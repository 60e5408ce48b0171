"""Study seeds that draw the data: one integer sets the faces, the label noise, the evaluation pairs and the initialisation.

For seed ``s`` a run gets

- ``--seed_everything=s`` (initialisation, data order, augmentation keys);
- the training renderer seed ``s``: other faces for every identity;
- the label-noise draw ``s`` (where the recipe has label noise);
- every synthetic verification set rendered with seed ``s`` and ``set_seed + 1000·s``: other
  held-out identities and other pairs.

Reported studies use :data:`REPORTED_SEEDS`; presets and budgets are calibrated on
:data:`CALIBRATION_SEEDS` only, which no table reports.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from experiments.preset_study import flow

REPORTED_SEEDS: tuple[int, ...] = (1, 2, 3, 4, 5)
CALIBRATION_SEEDS: tuple[int, ...] = (101, 102, 103, 104, 105)
#: a verification set's ``set_seed`` moves by this much per study seed
SET_SEED_STRIDE = 1000


def drawn_val_sets(val_sets: list[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    """``val_sets`` with every ``SyntheticPairs`` entry re-drawn for study seed ``seed``; others unchanged."""
    drawn = []
    for entry in val_sets:
        entry = copy.deepcopy(dict(entry))
        if str(entry.get("class_path", "")).endswith("SyntheticPairs"):
            init = dict(entry.get("init_args") or {})
            init["seed"] = seed
            init["set_seed"] = int(init.get("set_seed", 0)) + SET_SEED_STRIDE * seed
            entry["init_args"] = init
        drawn.append(entry)
    return drawn


def data_seed_args(data: Mapping[str, Any], seed: int) -> list[str]:
    """`fr fit` overrides that make study seed ``seed`` draw the data of a resolved ``data`` section.

    ``data`` is the ``data`` section of a resolved config (``fr fit --print_config``): its
    synthetic training source gets renderer seed ``seed``, its label noise (if any) the draw
    ``seed``, its synthetic verification sets :func:`drawn_val_sets`. ``--seed_everything``
    is not among them: the runner (:func:`experiments.preset_study.fit`) adds it.
    """
    init = data.get("init_args", data)
    args: list[str] = []
    train = init.get("train") or {}
    if str(train.get("class_path", "")).endswith("SyntheticSource"):
        args.append(f"--data.init_args.train.init_args.seed={seed}")
    noise = init.get("label_noise")
    if noise:
        args.append(f"--data.init_args.label_noise={flow({**noise, 'seed': seed})}")
    if init.get("val_sets"):
        args.append(f"--data.init_args.val_sets={flow(drawn_val_sets(init['val_sets'], seed))}")
    return args
