"""The root of the errors xtui expects, one class per domain: callers tell a user's mistake from a bug by type."""


class XtuiError(Exception):
    """Something the user can mend (their input, files or environment); the message is one line for them."""


class UsageError(XtuiError):
    """Command-line arguments that do not fit together."""


class RunsError(XtuiError):
    """A run that cannot be launched, stopped, resumed or read as asked."""


class XtunerError(XtuiError):
    """An XTuner config, prompt template or converter that cannot do what was asked."""


class DataError(XtuiError):
    """A dataset file that cannot be read, made or used as asked."""


class ChatError(XtuiError):
    """A model, adapter, image or transcript that a chat cannot use."""


class DemoError(XtuiError):
    """A demo folder that cannot be used as asked."""
