"""The error type for a user's mistake in pvd's engine (bad path, bad value, bad dataset).

The CLI prints these — and :class:`architectures.ArchitectureError` — as one line without a
traceback and exits with status 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A problem with the user's input; the message says what is wrong and what to do."""
