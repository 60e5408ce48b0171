"""The project's W&B logger: a named, grouped, tagged run that always finishes with an exit code.

Why a subclass: Lightning's ``WandbLogger`` never calls ``wandb.finish()``; it leaves the run to
W&B's exit hooks. wandb >= 0.2x no longer finishes runs at interpreter exit: its only ``atexit``
hook tears down the service process. An unfinished run therefore loses its connection while a
request (the run-messages poll) is still waiting, which is the ``Closing mailbox, abandoning 1
handles`` / ``HandleAbandonedError`` at the end of ``debug.log``, and no exit record is
written, so a synced run shows as crashed. :meth:`FaceWandbLogger.finalize` finishes the run
itself, with exit code 0 after a successful stage and the code recorded by
:class:`fr_lightning.tracking.RunStatus` (or 1) after a failure.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from fr_lightning.tracking.exit_codes import EXIT_FAILED, EXIT_OK

__all__ = ["FaceWandbLogger", "new_run_id"]


def new_run_id() -> str:
    """A fresh 8-character run id of lower-case letters and digits (W&B's own format)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class FaceWandbLogger(WandbLogger):
    """``WandbLogger`` with explicit group / tags / notes and a clean finish.

    Name, group and tags left unset are filled by the ``fr`` command from the resolved config
    (:meth:`describe`): name ``<recipe>-<id>``, group ``<recipe>``, tags for the methods, head,
    backbone and data source. Anything set in YAML (``trainer.logger.init_args.*``) wins.

    Args:
        name: display name of the run (default ``<recipe>-<id>``).
        save_dir: folder of ``wandb/`` and of the run directory ``<save_dir>/<project>/<id>``.
        version: alias of ``id``.
        offline: log offline (the ``fr`` command already does so when no API key is set).
        dir: alias of ``save_dir``.
        id: W&B run id; a resumed run keeps its id (stored in the checkpoint).
        anonymous: W&B anonymous mode.
        project: W&B project.
        log_model: upload checkpoints as artifacts: False (default), True (at the end) or ``"all"``.
        prefix: prefix of every logged key.
        checkpoint_name: artifact name of uploaded checkpoints.
        group: run group (default: the recipe name).
        tags: run tags (default: methods, head, backbone, data source).
        notes: free-text notes.
        job_type: job type (default: the subcommand, ``fit``, ``validate`` ...).
        entity: W&B entity (user or team).
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = "runs",
        version: str | None = None,
        offline: bool = False,
        dir: str | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str = "fr-lightning",
        log_model: Literal["all"] | bool = False,
        prefix: str = "",
        checkpoint_name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        job_type: str | None = None,
        entity: str | None = None,
    ) -> None:
        extra = {k: v for k, v in dict(group=group, tags=tags, notes=notes, job_type=job_type, entity=entity).items() if v is not None}
        super().__init__(
            name=name, save_dir=save_dir, version=version, offline=offline, dir=dir, id=id, anonymous=anonymous,
            project=project, log_model=log_model, prefix=prefix, checkpoint_name=checkpoint_name, **extra,
        )  # fmt: skip
        if self._wandb_init.get("dir"):
            # Absolute: W&B's service process keeps the working directory of the first run of
            # the process, and would write a later run's files under it.
            self._wandb_init["dir"] = os.path.abspath(self._wandb_init["dir"])
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)  # wandb 0.2x warns that the setting has no effect
        #: Exit code recorded when the run finishes after a failure (set by ``RunStatus``).
        self.exit_code: int | None = None

    # ------------------------------------------------------------ description
    @property
    def run_id(self) -> str | None:
        """The W&B id this logger opens (or opened)."""
        return self._experiment.id if self._experiment is not None and hasattr(self._experiment, "id") else self._id

    def set_run_id(self, run_id: str) -> None:
        """Open (or resume, ``resume="allow"``) the run ``run_id``; only before the run is created."""
        if self._experiment is not None:
            raise RuntimeError("the W&B run already exists; its id cannot change")
        self._wandb_init["id"] = self._id = run_id

    def describe(self, config: dict[str, Any], recipe: str, tags: list[str], job_type: str) -> None:
        """Fill name, group, tags and job type (where not set by the user) and the run config.

        Must be called before the run is created (the ``fr`` command calls it right after
        instantiating the trainer); afterwards only the config is updated.
        """
        if self._id is None:
            # A W&B sweep agent names the run through WANDB_RUN_ID; DDP workers inherit FR_RUN_ID.
            if os.environ.get("WANDB_RUN_ID"):
                self.set_run_id(os.environ["WANDB_RUN_ID"])
            else:
                self.set_run_id(os.environ["FR_RUN_ID"] if _is_launched_child() else new_run_id())
        os.environ["FR_RUN_ID"] = self._id  # DDP workers started by Lightning's launcher inherit it
        init = self._wandb_init
        if init.get("name") is None:
            init["name"] = self._name = f"{recipe}-{self._id}"
        init.setdefault("group", recipe)
        init.setdefault("tags", tags)
        init.setdefault("job_type", job_type)
        init["config"] = config
        if self._experiment is not None and rank_zero_only.rank == 0:
            self._experiment.config.update(config, allow_val_change=True)

    @property
    def run_name(self) -> str | None:
        """Display name of the run."""
        return self._wandb_init.get("name")

    @property
    def run_group(self) -> str | None:
        """Group of the run (the recipe by default)."""
        return self._wandb_init.get("group")

    # ---------------------------------------------------------------- finish
    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Upload checkpoints (``log_model``, on success) and finish the run with its exit code."""
        super().finalize(status)
        run = self._experiment
        if run is None or not hasattr(run, "finish"):
            return
        code = EXIT_OK if status == "success" else (self.exit_code if self.exit_code else EXIT_FAILED)
        run.finish(exit_code=code)
        # A later stage on the same trainer (fit, then validate) resumes the same id.
        self._id = self._wandb_init["id"] = run.id
        self._experiment = None

    @property
    def offline_dir(self) -> Path | None:
        """The local W&B run folder (``<save_dir>/wandb/offline-run-...``), once the run exists."""
        run = self._experiment
        directory = getattr(run, "dir", None)
        return Path(directory).parent if isinstance(directory, str) and directory else None


def _is_launched_child() -> bool:
    """True in a DDP worker started by Lightning's launcher (it inherits the parent's ``FR_RUN_ID``)."""
    return os.environ.get("LOCAL_RANK", "0") != "0" and "FR_RUN_ID" in os.environ
