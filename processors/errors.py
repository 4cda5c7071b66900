"""The root of darkroom's exception tree, and the errors of image work.

Every error a user can see carries a ``code`` (stable, machine-readable, part of the
failure-event contract) and ``retryable`` (whether trying the same thing again later
could help). Foreign errors (Pillow, numpy, torch) are translated into this tree where
they enter darkroom, never passed through. ``streams.errors`` grows the same tree with the
errors of events, storage, the broker, webhooks and the CLI, and draws all of it.

    DarkroomError                           internal_error
    ├── PermanentError                      retryable=False: same input, same failure
    │   ├── InvalidInputError               invalid_input
    │   │   ├── EmptyInput                  empty_input
    │   │   ├── NotAnImage                  not_an_image
    │   │   ├── TruncatedImage              truncated_image
    │   │   ├── UnsupportedImage            unsupported_image
    │   │   ├── BackgroundNotPlain          background_not_plain
    │   │   └── LimitExceeded               limit_exceeded
    │   │       ├── FileTooLarge            file_too_large
    │   │       ├── TooManyPixels           too_many_pixels
    │   │       └── TooManyFrames           too_many_frames
    │   ├── InvalidPipeline                 invalid_pipeline
    │   │   ├── UnknownOperation            unknown_operation
    │   │   ├── OperationUnavailable        operation_unavailable
    │   │   └── InvalidParameters           invalid_parameters
    │   └── ConfigurationError              configuration_error
    │       └── ModelUnavailable            model_unavailable
    └── RetryableError                      retryable=True: may pass later
        └── ProcessingFailed                processing_failed
"""

from __future__ import annotations


class DarkroomError(Exception):
    """Base of every darkroom error; ``str(err)`` is the one-line user message."""

    code = "internal_error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PermanentError(DarkroomError):
    retryable = False


class RetryableError(DarkroomError):
    retryable = True


class InvalidInputError(PermanentError):
    code = "invalid_input"


class EmptyInput(InvalidInputError):
    code = "empty_input"


class NotAnImage(InvalidInputError):
    code = "not_an_image"


class TruncatedImage(InvalidInputError):
    code = "truncated_image"


class UnsupportedImage(InvalidInputError):
    code = "unsupported_image"


class BackgroundNotPlain(InvalidInputError):
    """``cutout`` with ``strict=true`` on a photo whose background it cannot trust itself
    to remove (busy, several colours, or too like the subject): permanent, the same photo
    fails the same way; ``strict=false`` completes with the confidence in the details."""

    code = "background_not_plain"


class LimitExceeded(InvalidInputError):
    code = "limit_exceeded"


class FileTooLarge(LimitExceeded):
    code = "file_too_large"


class TooManyPixels(LimitExceeded):
    code = "too_many_pixels"


class TooManyFrames(LimitExceeded):
    code = "too_many_frames"


class InvalidPipeline(PermanentError):
    """A pipeline darkroom will not start; ``step_index``/``step`` name the culprit when known."""

    code = "invalid_pipeline"
    step_index: int | None = None
    step: str | None = None


class UnknownOperation(InvalidPipeline):
    code = "unknown_operation"


class OperationUnavailable(InvalidPipeline):
    code = "operation_unavailable"


class InvalidParameters(InvalidPipeline):
    code = "invalid_parameters"


class ConfigurationError(PermanentError):
    code = "configuration_error"


class ModelUnavailable(ConfigurationError):
    """A learned model's weights are not prepared (or unreadable) and no fallback is allowed.

    Permanent: retrying on the same worker fails the same way until an operator runs
    ``darkroom models fetch``; a replay after that succeeds.
    """

    code = "model_unavailable"


class ProcessingFailed(RetryableError):
    """An unexpected fault inside an operation (a bug or resource exhaustion)."""

    code = "processing_failed"
