"""One error tree for every part of embedq.

It lives in the bottom layer (config) so that the producer, the contract and the worker all
raise and catch the same classes without importing each other. Messages name the item and the
problem and, where there is one, the fix. The classes must stay importable without torch: Celery
re-creates a worker's exception on the producer by module and class name. The few errors only
the HTTP gateway raises (a bad field, a missing key, back-pressure) are branches of this tree
kept beside their HTTP statuses, in `embedq.gateway.errors`.
"""

from __future__ import annotations


class EmbedqError(Exception):
    """Base class of every error embedq raises on purpose."""


class ConfigError(EmbedqError):
    """A settings value or a JSON config file is invalid; the message names the file and key."""


class UnknownUseCaseError(ConfigError):
    """A producer asked for a use case that no route defines."""

    def __init__(self, use_case: object, known: list[str]) -> None:
        self.use_case = use_case
        self.known = known
        super().__init__(f"unknown use case {use_case!r}; known: {', '.join(known)}")


class UnknownModelError(ConfigError):
    """A model name or precision that the registry does not define."""


class InvalidInputError(EmbedqError, ValueError):
    """The texts handed to embed() cannot be embedded; nothing was enqueued."""


class InvalidTextError(InvalidInputError):
    """One item of the input is not embeddable; the message names its position."""

    def __init__(self, index: int, problem: str) -> None:
        self.index = index
        self.problem = problem
        super().__init__(f"text #{index}: {problem}")


class PayloadError(EmbedqError):
    """A task message or a result is malformed or of another schema version."""


class ModelUnavailableError(EmbedqError):
    """A model cannot be loaded here (missing package, corrupt files, no hub access)."""


class EmbeddingFailedError(EmbedqError):
    """Some items of a request could not be embedded; the others' vectors are kept.

    ``partial`` holds the vectors of the items that succeeded (rows of failed items are NaN) and
    ``errors`` maps each failed input position to its problem.
    """

    def __init__(self, errors: dict[int, str], partial: object) -> None:
        self.errors = errors
        self.partial = partial
        first = ", ".join(f"#{i}: {msg}" for i, msg in list(errors.items())[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"{len(errors)} item(s) could not be embedded: {first}{more}")


class EmbedTimeoutError(EmbedqError, TimeoutError):
    """The result did not arrive in time; the job may still finish on a worker."""


class NoLiveWorkerError(EmbedTimeoutError):
    """No worker consumes the queue a request went to; the message names the command to start one.

    A subclass of the timeout: the request is still queued and a worker started later serves it.
    """


class DeadLetteredError(EmbedqError):
    """A message was moved to its queue's dead letters (delivered too often, or unreadable).

    ``embedq dead-letters list`` shows it with the reason; ``replay`` sends it again.
    """


class BrokerUnavailableError(EmbedqError, ConnectionError):
    """The broker Redis cannot be reached; the message names the broker (never its password)."""


class DataFileError(InvalidInputError):
    """A file handed to ``embedq eval`` is missing, empty or malformed; names the file and line."""

    def __init__(self, path: object, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path} " if line is None else f"{path} line {line}: "
        super().__init__(f"{where}{problem}")


class MissingExtraError(ConfigError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class CorpusError(EmbedqError):
    """A corpus job (`embed_file`, ``embedq embed --input``) cannot start or go on; the message
    names the file and the fix. Rows already made durable are kept."""


class InputFileError(CorpusError):
    """The input is missing, unreadable, of an unknown format, or lacks the named fields."""


class OutputFileError(CorpusError):
    """The output cannot be written, or is there and was not made by this job."""


class CheckpointMismatchError(CorpusError):
    """A checkpoint of another input, route, model revision or options, or a damaged one."""


class OverloadedError(EmbedqError):
    """Refused at once, nothing enqueued: the work already queued for the route would take longer
    than the request's deadline allows. Retrying after ``retry_after_s`` (or elsewhere) can
    succeed; waiting in a line that cannot be served in time cannot."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)
