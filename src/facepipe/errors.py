"""The one exception type that reaches the user as a one-line message."""


class FacepipeError(Exception):
    """A problem with the user's input: the message names the item and says what to do."""
