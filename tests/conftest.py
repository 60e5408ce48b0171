"""Test defaults: offline W&B, quiet albumentations, small thread counts."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():  # noqa: ANN202
    """Keep a W&B service started by an in-process run out of later subprocesses.

    W&B stores its service address in ``WANDB_SERVICE`` of the process that started it, and
    every child process then joins that service. A child that is killed leaves its run
    registered there, so a second child resuming the same run id was refused with "run ID ...
    is in use". Real runs do not share a service with their parent; the tests must not either.
    """
    yield
    os.environ.pop("WANDB_SERVICE", None)
