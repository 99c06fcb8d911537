"""Errors users can act on.

`UserError` marks a mistake in what the user passed (a path, a file, an argument). The CLI prints it as one
line instead of a traceback; the Python API raises it like any exception. It subclasses ValueError so code
that already catches ValueError for bad input keeps working.
"""


class UserError(ValueError):
    """A problem with the user's input, explained in the message."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, of another architecture or of an unsupported format version."""
