"""The ``fr`` command line: one module per subcommand; library packages never import this one.

==========================  ================================================================
module                      subcommand
==========================  ================================================================
:mod:`.train`               ``fr fit|validate|test|predict`` (the LightningCLI subclass)
:mod:`.export`              ``fr export``
:mod:`.embed`               ``fr embed``
:mod:`.verify`              ``fr verify``
:mod:`.eval`                ``fr eval ijb|tinyface``
:mod:`.data`                ``fr data ...`` (with :mod:`.data_synth` for ``synth-ijb``/``synth-tinyface``)
:mod:`.compose`             ``--config`` composition (``extends``, stacked callbacks)
:mod:`.config_errors`       naming the YAML file and key of a configuration error
:mod:`.mistakes`            common mistakes as one paragraph and an exit code (``--debug``: traceback)
==========================  ================================================================
"""

from __future__ import annotations

import importlib
import sys

from fr_lightning.cli.mistakes import debug_requested, report, strip_debug
from fr_lightning.cli.train import FaceCLI, cli_main
from fr_lightning.tracking import RunStatus

__all__ = ["SUBCOMMANDS", "FaceCLI", "cli_main", "main"]

#: ``fr <name> ...`` subcommands besides LightningCLI's: name -> ("module:function", one-line help).
#: Each function takes the remaining argv. Add a row (and a module here) to add a subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "export": ("fr_lightning.cli.export:main", "write a checkpoint's embedding network as ONNX, TorchScript or backbone.pth"),
    "embed": ("fr_lightning.cli.embed:main", "L2-normalised flip-test embeddings of a folder or list of faces"),
    "verify": ("fr_lightning.cli.verify:main", "cosine similarity of two faces and a same/different decision"),
    "data": ("fr_lightning.cli.data:main", "write, convert, inspect and align data sets"),
    "eval": ("fr_lightning.cli.eval:main", "evaluate a model on IJB-B/C (1:1, 1:N) or a TinyFace-style set"),
}


def _print_subcommands() -> None:
    """Lists the subcommands that LightningCLI's own ``--help`` does not know about."""
    print("\nfr also has these subcommands (each takes --help):")
    for name, (_, text) in SUBCOMMANDS.items():
        print(f"  {name:<10} {text}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fr`` console script.

    A known mistake (:func:`fr_lightning.cli.mistakes.explain`) ends in one paragraph on stderr and
    exit code 2 (command line or config) or 1 (data); ``--debug`` or ``FR_DEBUG=1`` keeps the traceback.
    """
    from_shell = argv is None
    argv, debug = strip_debug(list(sys.argv[1:] if argv is None else argv))
    if from_shell and debug:
        sys.argv = [sys.argv[0], *argv]  # LightningCLI reads sys.argv; it does not know --debug
    try:
        _run(argv, from_shell)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if debug_requested(debug):
            raise
        code = report(exc)
        if code is None:
            raise
        raise SystemExit(code) from None


def _run(argv: list[str], from_shell: bool) -> None:
    """Dispatch ``argv`` to a subcommand or to LightningCLI (``from_shell``: LightningCLI reads ``sys.argv``)."""
    if argv and argv[0] in SUBCOMMANDS:
        target, _ = SUBCOMMANDS[argv[0]]
        module_name, function = target.split(":")
        getattr(importlib.import_module(module_name), function)(argv[1:])
        return
    try:
        cli_main(None if from_shell else argv)
    except SystemExit as stop:
        if argv and argv[0] in ("-h", "--help") and stop.code in (0, None):
            _print_subcommands()
        # Lightning turns Ctrl-C into sys.exit(1) and SIGTERM into SystemExit(None).
        if stop.code in (None, 1) and RunStatus.last_exit_code:
            raise SystemExit(RunStatus.last_exit_code) from None
        raise
