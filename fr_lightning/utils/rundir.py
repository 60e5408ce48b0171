"""Where a run writes its side files (config, plots, caches)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's directory: ``<save_dir>/<name>/<version>`` of the first logger, as ModelCheckpoint
    resolves it (checkpoints land in ``run_dir/checkpoints``), else ``default_root_dir``."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
    version = logger.version
    version = version if isinstance(version, str) else f"version_{version}"
    return Path(save_dir) / str(logger.name) / version
