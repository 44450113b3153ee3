"""`python -m accessd` runs the daemon CLI."""

from .cli.daemon import main

main()
