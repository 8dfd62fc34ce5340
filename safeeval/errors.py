"""One exception type for every failure a user can fix; the CLI prints it as one sentence."""


class SafeevalError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""
