"""`python -m threshold_operator`: the `threshold-operator` command."""

from .cli import main

main()
