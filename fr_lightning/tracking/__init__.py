"""Run tracking: the W&B logger, run config and tags, native charts, exit codes, resume helpers."""

from fr_lightning.tracking.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PREEMPTED, RunStatus, exit_code_for
from fr_lightning.tracking.logger import FaceWandbLogger, new_run_id
from fr_lightning.tracking.offline import OfflineRun, read_offline_run
from fr_lightning.tracking.run_info import recipe_name, run_config, run_tags

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "FaceWandbLogger",
    "OfflineRun",
    "RunStatus",
    "exit_code_for",
    "new_run_id",
    "read_offline_run",
    "recipe_name",
    "run_config",
    "run_tags",
]
