"""Exceptions a user or a plugin author can act on."""


class KdbenchError(Exception):
    """Base of every error kdbench reports to the user without a traceback."""


class ConfigError(KdbenchError):
    """A preset or override is wrong; the message names the key and what is allowed."""


class AudioError(KdbenchError):
    """An audio file cannot be used; the message names the file."""


class NotApplicable(KdbenchError):
    """A KD method cannot be used on an architecture pair; the message says why.

    Raised by `KDMethod.build`; the trial is recorded as not applicable instead of failing.
    """


class MetricUndefined(Exception):
    """A metric has no value for one utterance (silent reference, too short, ...).

    Raised by `Metric.compute`; the score is stored as NaN with this message as its reason.
    """


class TrialDiverged(KdbenchError):
    """Training produced a non-finite loss; the trial is recorded as failed."""


class CorruptFile(KdbenchError):
    """A file kdbench wrote fails its check when read back (truncated, altered, or not
    what its name says); the message names the file. A cache entry in this state is set
    aside and rebuilt (`kdbench.api.load_or_build`); any other such file is reported."""
