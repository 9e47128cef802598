"""`python -m embedkit.cli` runs the same command line as `embedkit`."""

from embedkit.cli import main

main()
