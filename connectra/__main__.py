"""`python -m connectra` runs the command line."""

from connectra.cli import main

main()
