"""`python -m threshold_worker`: the `threshold-worker` command, where no script is on PATH."""

from .commands import console

console()
