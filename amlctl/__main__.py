"""`python -m amlctl` entry point."""

from amlctl.cli import main

main()
