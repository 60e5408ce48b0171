"""Exit codes of ``fr`` runs, and the callback that records why a run stopped."""

from __future__ import annotations

import lightning.pytorch as pl

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PREEMPTED", "EXIT_USAGE", "RunStatus", "exit_code_for"]

#: Training (or evaluation) finished.
EXIT_OK = 0
#: An exception stopped the run (including the NaN guard's ``NonFiniteTrainingError``).
EXIT_FAILED = 1
#: A usage or configuration mistake found before any data is read (unknown option or class, missing
#: or malformed config file, a GPU asked of a CPU-only torch, an image size the backbone cannot take).
EXIT_USAGE = 2
#: Ctrl-C (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130
#: SIGTERM (preemption): ``last.ckpt`` was saved; requeue and resume with ``--ckpt_path last``.
EXIT_PREEMPTED = 99


def exit_code_for(exception: BaseException) -> int:
    """The exit code a run stopped by ``exception`` reports."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(exception, SIGTERMException):
        return EXIT_PREEMPTED
    if isinstance(exception, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exception, SystemExit):
        return exception.code if isinstance(exception.code, int) else EXIT_FAILED
    return EXIT_FAILED


class RunStatus(pl.Callback):
    """Records the exit code of a failed run on the W&B logger before Lightning finalizes it.

    The ``fr`` command adds it to every trainer; ``last_exit_code`` is what ``fr`` exits with
    after Lightning turned a Ctrl-C into ``sys.exit(1)`` or a SIGTERM into ``SystemExit(None)``.
    """

    #: Exit code of the last run stopped by an exception in this process (None: none stopped).
    last_exit_code: int | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        code = exit_code_for(exception)
        RunStatus.last_exit_code = code
        for logger in trainer.loggers:
            if hasattr(logger, "exit_code"):
                logger.exit_code = code
