"""The errors of events, storage, the broker, webhooks and the CLI, on ``processors.errors``' tree.

The whole tree, with the stable codes failure events, problem bodies and the CLI carry
(``*``: defined in ``processors.errors``, the image side, which imports nothing of
``streams``). Foreign errors (confluent-kafka, minio, psycopg, httpx) are translated into
it where they enter darkroom: ``runtime.kafka``, ``runtime.storage``, ``runtime.offsets``,
``sinks.database``, ``sinks.webhooks.attempt``.

    DarkroomError *                         internal_error
    ├── PermanentError *                    retryable=False: same input, same failure
    │   ├── InvalidInputError *             invalid_input
    │   │   ├── EmptyInput *                empty_input
    │   │   ├── NotAnImage *                not_an_image
    │   │   ├── TruncatedImage *            truncated_image
    │   │   ├── UnsupportedImage *          unsupported_image
    │   │   ├── BackgroundNotPlain *        background_not_plain
    │   │   └── LimitExceeded *             limit_exceeded
    │   │       ├── FileTooLarge *          file_too_large
    │   │       ├── TooManyPixels *         too_many_pixels
    │   │       └── TooManyFrames *         too_many_frames
    │   ├── InvalidPipeline *               invalid_pipeline
    │   │   ├── UnknownOperation *          unknown_operation
    │   │   ├── OperationUnavailable *      operation_unavailable
    │   │   └── InvalidParameters *         invalid_parameters
    │   ├── ConfigurationError *            configuration_error
    │   │   ├── ModelUnavailable *          model_unavailable
    │   │   ├── AccessRefused               configuration_error (a service refused darkroom's credentials)
    │   │   └── InvalidWebhookSecret        invalid_webhook_secret
    │   ├── ObjectMissing                   object_missing
    │   ├── BucketNotAllowed                bucket_not_allowed
    │   ├── InvalidImageId                  invalid_image_id
    │   ├── InvalidObjectKey                invalid_object_key
    │   ├── InvalidTenant                   invalid_tenant
    │   ├── StorageRequestRefused           storage_request_refused
    │   ├── UndecodableEvent                undecodable_event
    │   │   ├── UploadMismatch              upload_mismatch (an upload ingest refuses for the API's image it names)
    │   │   └── OutputOutsidePrefix         output_outside_prefix (a final event the result writer refuses)
    │   ├── OutputRejected                  output_rejected
    │   ├── InvalidWebhookUrl               invalid_webhook_url
    │   ├── WebhookTargetBlocked            webhook_target_blocked
    │   ├── GroupActive                     group_active
    │   └── LocalFileError                  file_error
    └── RetryableError *                    retryable=True: may pass later
        ├── ProcessingFailed *              processing_failed
        ├── DependencyUnavailable           a service darkroom needs is down; the record is fine
        │   ├── StorageUnavailable          storage_unavailable
        │   ├── BrokerUnavailable           broker_unavailable
        │   ├── RegistryUnavailable         registry_unavailable
        │   └── DatabaseUnavailable         database_unavailable
        ├── WebhookTargetUnresolvable       webhook_target_unresolvable
        └── WorkerStalled                   worker_stalled (a worker rebuilt its clients in vain: it exits)

Workers treat ``DependencyUnavailable`` and ``AccessRefused`` as outages, not as the
record's fault: they pause and wait instead of finalizing the image (``streams.runtime.worker``).
"""

from __future__ import annotations

from processors.errors import ConfigurationError, PermanentError, RetryableError


class ObjectMissing(PermanentError):
    code = "object_missing"


class BucketNotAllowed(PermanentError):
    """An event names a bucket outside ``DARKROOM_ALLOWED_BUCKETS`` (or one of darkroom's own)."""

    code = "bucket_not_allowed"


class InvalidImageId(PermanentError):
    """An image id outside the documented character set and length (it becomes part of keys)."""

    code = "invalid_image_id"


class InvalidObjectKey(PermanentError):
    """An object key darkroom will not read: empty, not UTF-8, over 1,024 bytes, with a control
    character, a backslash or a ``.``/``..`` segment (``streams.wire.events.check_key``).

    Checked before any read: object stores answer such keys with errors of their own, or
    resolve them to other objects than the one named."""

    code = "invalid_object_key"


class InvalidTenant(PermanentError):
    """A tenant outside the documented character set and length (``streams.wire.events.check_tenant``)."""

    code = "invalid_tenant"


class StorageRequestRefused(PermanentError):
    """The object store refused the request for what the record names (an invalid key or
    argument, a method it does not allow): the same request fails the same way, so the
    record fails instead of pausing the worker as an outage would."""

    code = "storage_request_refused"


class UndecodableEvent(PermanentError):
    code = "undecodable_event"


class UploadMismatch(UndecodableEvent):
    """An upload for an image the HTTP API created that does not carry that image's tenant,
    bucket and upload key: a forged event aiming one tenant's image at another's object.

    Refused as ingest decodes it, so it is dead-lettered: a failure event would replace
    the image owner's result."""

    code = "upload_mismatch"


class OutputOutsidePrefix(UndecodableEvent):
    """A final event naming outputs outside its image's own output prefix, or in a bucket not
    allowed (a forged completion pointing at another tenant's upload or the broker's log).

    The result writer refuses it while decoding, so the loop dead-letters it at once, with
    this code, and nothing of it is stored or notified."""

    code = "output_outside_prefix"


class AccessRefused(ConfigurationError):
    """A service (object store, broker, database) refused darkroom's credentials.

    Not the record's fault and not fixed by waiting alone: workers stop consuming and say
    so, instead of failing the backlog; they resume once the credentials are accepted.
    """


class OutputRejected(PermanentError):
    """The broker refused an output record for good (too large, not authorised, no such topic)."""

    code = "output_rejected"


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


class WebhookTargetUnresolvable(RetryableError):
    """A webhook target's host name did not resolve (DNS may recover)."""

    code = "webhook_target_unresolvable"


class WorkerStalled(RetryableError):
    """A worker stayed stalled through every rebuild of its clients: its process exits
    non-zero so that its supervisor (or Kubernetes) starts it afresh."""

    code = "worker_stalled"
