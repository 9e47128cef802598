"""The `embedkit` console script: start-up that a Ctrl-C cannot turn into a traceback.

Importing the command line takes a moment; a Ctrl-C then would print a KeyboardInterrupt
traceback from deep in an import. Here it is the same `Aborted!` click prints later.
"""

from __future__ import annotations

import importlib
import sys


def main() -> None:
    try:
        cli = importlib.import_module("embedkit.cli")
    except KeyboardInterrupt:
        sys.stderr.write("Aborted!\n")
        sys.exit(130)
    cli.main()
