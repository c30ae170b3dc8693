"""``python -m stowage`` is the same as the ``stowage`` command."""

from stowage.cli import main

main()
