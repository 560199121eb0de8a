"""`python -m bench ...` runs the `bench` command."""

from bench.cli import main

main()
