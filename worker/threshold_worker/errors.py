"""Errors that carry a message meant for the person who wrote the job."""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """Bad input: the job cannot run as written.

    The message is one line that names the field or path, what is wrong and what is
    expected. The CLI prints it and exits with code 2, which the Kubernetes pod failure
    policy treats as "do not retry"; nothing has been written when it is raised.
    """

    exit_code = 2

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


def first_error(error: Any, prefix: str = "") -> str:
    """A pydantic ValidationError as one line: `prefix.field.path: message`."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    where = ".".join(p for p in (prefix, loc) if p)
    return f"{where}: {message}" if where else message
