"""Why a run was stopped on purpose, as the user sees it: each message names what happened and
the fix. (Config errors are raysys.config.ConfigError; manifest errors ManifestError.)"""


class BadDataError(RuntimeError):
    """Too many images of an epoch could not be decoded; the message names examples."""


class StallError(RuntimeError):
    """The run made no progress while Ray held work it could not place; the message says
    what is pending and on what resource."""
