"""``python -m fr_lightning.cli ...`` is ``fr ...`` (DDP launchers start the workers this way)."""

from fr_lightning.cli import main

if __name__ == "__main__":
    main()
