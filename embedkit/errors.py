"""Exceptions a user can act on: each message says what went wrong and what to do."""


class EmbedkitError(Exception):
    """Base class: the CLI prints these as one line and exits with code 2."""


class InputError(EmbedkitError, ValueError):
    """The user's input (a file, a column, a setting) cannot be used.

    Also a ValueError, so Python callers that catch ValueError for bad arguments keep working.
    """


class ModelNotFoundError(EmbedkitError):
    """A model name, revision or file cannot be resolved."""


class ChecksumError(EmbedkitError):
    """A file's sha256 differs from the one its model card pins."""


class UntrustedFormatError(EmbedkitError):
    """A checkpoint is in a format we refuse to load (pickle outside an explicit convert)."""


class IndexMismatchError(EmbedkitError):
    """An index used with a model (or embedkit format) other than the one that built it."""


class ConfigError(EmbedkitError):
    """A model's config.json (or weights file) is malformed, hostile or inconsistent."""


class WrongTaskError(EmbedkitError):
    """A model of one task (images, molecules…) given to a command of another."""


class NothingEmbeddedError(EmbedkitError):
    """Every input row failed: the output was written (each row with its reason), but a run
    that embedded nothing must not exit 0."""
