"""`python -m gameframe.loadtest`: the gameframe-loadtest command."""

from gameframe.loadtest.cli import main

main()
