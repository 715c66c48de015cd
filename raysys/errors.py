"""Why a run was stopped on purpose, as the user sees it: each message names what happened and
the fix. (Config errors are raysys.config.ConfigError; manifest errors ManifestError.)"""


class BadDataError(RuntimeError):
    """Too many images of an epoch could not be decoded; the message names examples."""


class StallError(RuntimeError):
    """The run made no progress while Ray held work it could not place; the message says
    what is pending and on what resource."""


class Interrupted(KeyboardInterrupt):
    """The user stopped a run or a sweep (Ctrl+C); `folder` is where it resumes from (the
    run's --out, or the sweep's folder), or "" when nothing was started yet."""

    def __init__(self, folder: str = ""):
        super().__init__(folder)
        self.folder = folder
