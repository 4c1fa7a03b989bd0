"""The one error type of configuration problems (its own module: every config module raises it)."""


class ConfigError(ValueError):
    """A user-caused configuration problem; the message is one line naming file, key and what is allowed."""
