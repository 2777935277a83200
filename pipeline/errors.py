"""One root exception, one subclass per area; the CLI prints ``Error: <message>`` and exits 1
(:class:`UsageError`: exit 64, like the CLI's own usage errors). ``--debug`` adds the traceback."""


class SoclakeError(Exception):
    """Root of every error soclake raises on purpose (as opposed to bugs)."""


class ConfigError(SoclakeError):
    """Bad flags, config file or environment."""


class UsageError(ConfigError):
    """Flags that do not go together (``--since`` after ``--until``): exit 64 (EX_USAGE), not 1."""


class SchemaError(SoclakeError):
    """A table contract under ``schemas/`` is malformed."""


class SourceError(SoclakeError):
    """A log source cannot be listed or read (bucket missing, access denied, wrong layout)."""


class LakeError(SoclakeError):
    """The Parquet lake or its state cannot be read or written."""


class ObjectError(SoclakeError):
    """One log object cannot be ingested; it is quarantined with this message as the reason."""


class RuleError(SoclakeError):
    """A detection rule file is invalid."""


class SinkError(SoclakeError):
    """An alert destination failed."""


class LeaseHeld(LakeError):
    """Another run holds the lake's writer lease (one writer per lake; readers never wait)."""


class LeaseLost(LakeError):
    """This run's writer lease expired or was taken over, so it must stop before committing."""
