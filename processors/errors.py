"""The one exception tree of darkroom, with stable error codes.

Every error a user can see carries a ``code`` (stable, machine-readable, part of the
failure-event contract) and ``retryable`` (whether trying the same thing again later
could help). Foreign errors (Pillow, minio, confluent-kafka) are translated into this
tree where they enter darkroom, never passed through.

    DarkroomError
    ├── PermanentError                      retryable=False: same input, same failure
    │   ├── InvalidInputError
    │   │   ├── EmptyInput                  empty_input
    │   │   ├── NotAnImage                  not_an_image
    │   │   ├── TruncatedImage              truncated_image
    │   │   ├── UnsupportedImage            unsupported_image
    │   │   └── LimitExceeded
    │   │       ├── FileTooLarge            file_too_large
    │   │       ├── TooManyPixels           too_many_pixels
    │   │       └── TooManyFrames           too_many_frames
    │   ├── InvalidPipeline
    │   │   ├── UnknownOperation            unknown_operation
    │   │   ├── OperationUnavailable        operation_unavailable
    │   │   └── InvalidParameters           invalid_parameters
    │   ├── ObjectMissing                   object_missing
    │   ├── BucketNotAllowed                bucket_not_allowed
    │   ├── InvalidImageId                  invalid_image_id
    │   ├── UndecodableEvent                undecodable_event
    │   ├── ConfigurationError              configuration_error
    │   │   ├── AccessRefused               configuration_error (a service refused darkroom's credentials)
    │   │   ├── ModelUnavailable            model_unavailable
    │   │   └── InvalidWebhookSecret        invalid_webhook_secret
    │   ├── OutputRejected                  output_rejected
    │   ├── InvalidWebhookUrl               invalid_webhook_url
    │   ├── WebhookTargetBlocked            webhook_target_blocked
    │   └── GroupActive                     group_active
    └── RetryableError                      retryable=True: may pass later
        ├── DependencyUnavailable           a service darkroom needs is down; the record is fine
        │   ├── StorageUnavailable          storage_unavailable
        │   ├── BrokerUnavailable           broker_unavailable
        │   ├── RegistryUnavailable         registry_unavailable
        │   └── DatabaseUnavailable         database_unavailable
        ├── ProcessingFailed                processing_failed
        ├── WebhookTargetUnresolvable       webhook_target_unresolvable
        └── WorkerStalled                   worker_stalled (a worker rebuilt its clients in vain: it exits)

Workers treat ``DependencyUnavailable`` and ``AccessRefused`` as outages, not as the
record's fault: they pause and wait instead of finalizing the image (``streams.runtime.worker``).
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


class ObjectMissing(PermanentError):
    code = "object_missing"


class BucketNotAllowed(PermanentError):
    """An event names a bucket outside ``DARKROOM_ALLOWED_BUCKETS`` (or one of darkroom's own)."""

    code = "bucket_not_allowed"


class InvalidImageId(PermanentError):
    """An image id outside the documented character set and length (it becomes part of keys)."""

    code = "invalid_image_id"


class UndecodableEvent(PermanentError):
    code = "undecodable_event"


class ConfigurationError(PermanentError):
    code = "configuration_error"


class AccessRefused(ConfigurationError):
    """A service (object store, broker, database) refused darkroom's credentials.

    Not the record's fault and not fixed by waiting alone: workers stop consuming and say
    so, instead of failing the backlog; they resume once the credentials are accepted.
    """


class OutputRejected(PermanentError):
    """The broker refused an output record for good (too large, not authorised, no such topic)."""

    code = "output_rejected"


class ModelUnavailable(ConfigurationError):
    """A learned model's weights are not prepared (or unreadable) and no fallback is allowed.

    Permanent: retrying on the same worker fails the same way until an operator runs
    ``darkroom models fetch``; a replay after that succeeds.
    """

    code = "model_unavailable"


class InvalidWebhookSecret(ConfigurationError):
    """A webhook signing secret that is not ``whsec_`` + base64 of 24–64 bytes (never quoted)."""

    code = "invalid_webhook_secret"


class InvalidWebhookUrl(PermanentError):
    """A webhook target that is not an absolute http(s) URL without credentials."""

    code = "invalid_webhook_url"


class WebhookTargetBlocked(PermanentError):
    """A webhook target whose address egress policy forbids (private, loopback, metadata…)."""

    code = "webhook_target_blocked"


class GroupActive(PermanentError):
    """A consumer group's offsets cannot be reset while it has active members.

    Their next commit would undo the reset (and the broker refuses commits from outside
    a live group): stop the group's consumers, then reset.
    """

    code = "group_active"


class LocalFileError(PermanentError):
    """A local file the CLI was told to read or write cannot be (missing directory, permissions)."""

    code = "file_error"


class DependencyUnavailable(RetryableError):
    """A service darkroom depends on did not answer; the record itself is fine."""


class StorageUnavailable(DependencyUnavailable):
    code = "storage_unavailable"


class BrokerUnavailable(DependencyUnavailable):
    code = "broker_unavailable"


class RegistryUnavailable(DependencyUnavailable):
    """The schema registry did not answer: an outage, never a reason to dead-letter a record."""

    code = "registry_unavailable"


class DatabaseUnavailable(DependencyUnavailable):
    """The result database did not answer, or its connection broke."""

    code = "database_unavailable"


class ProcessingFailed(RetryableError):
    """An unexpected fault inside an operation (a bug or resource exhaustion)."""

    code = "processing_failed"


class WebhookTargetUnresolvable(RetryableError):
    """A webhook target's host name did not resolve (DNS may recover)."""

    code = "webhook_target_unresolvable"


class WorkerStalled(RetryableError):
    """A worker stayed stalled through every rebuild of its clients: its process exits
    non-zero so that its supervisor (or Kubernetes) starts it afresh."""

    code = "worker_stalled"
