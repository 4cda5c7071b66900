"""darkroom's Kafka side, and its public surface for Python producers and operators.

What is promised is exactly ``__all__``: the producer client and what it returns, the
settings and their loader, and the error tree (every error a user can see, each with a
stable ``code`` and ``retryable``). Everything else in the subpackages stays importable
but may change without notice; the README's Layout section says which room holds what.

    from streams import Client, load_settings

    with Client(load_settings()) as client:
        sub = client.submit(data, "photo.jpg", "web")
"""

from processors.errors import (
    BackgroundNotPlain,
    ConfigurationError,
    DarkroomError,
    EmptyInput,
    FileTooLarge,
    InvalidInputError,
    InvalidParameters,
    InvalidPipeline,
    LimitExceeded,
    ModelUnavailable,
    NotAnImage,
    OperationUnavailable,
    PermanentError,
    ProcessingFailed,
    RetryableError,
    TooManyFrames,
    TooManyPixels,
    TruncatedImage,
    UnknownOperation,
    UnsupportedImage,
)
from streams.client import Client, FinalEvent, Submission
from streams.config import Settings, load_settings
from streams.errors import (
    AccessRefused,
    BrokerUnavailable,
    BucketNotAllowed,
    DatabaseUnavailable,
    DependencyUnavailable,
    GroupActive,
    InvalidImageId,
    InvalidObjectKey,
    InvalidTenant,
    InvalidWebhookSecret,
    InvalidWebhookUrl,
    LocalFileError,
    ObjectMissing,
    OutputOutsidePrefix,
    OutputRejected,
    RegistryUnavailable,
    StorageRequestRefused,
    StorageUnavailable,
    UndecodableEvent,
    UploadMismatch,
    WebhookTargetBlocked,
    WebhookTargetUnresolvable,
    WorkerStalled,
)

__all__ = [
    "AccessRefused",
    "BackgroundNotPlain",
    "BrokerUnavailable",
    "BucketNotAllowed",
    "Client",
    "ConfigurationError",
    "DarkroomError",
    "DatabaseUnavailable",
    "DependencyUnavailable",
    "EmptyInput",
    "FileTooLarge",
    "FinalEvent",
    "GroupActive",
    "InvalidImageId",
    "InvalidInputError",
    "InvalidObjectKey",
    "InvalidParameters",
    "InvalidPipeline",
    "InvalidTenant",
    "InvalidWebhookSecret",
    "InvalidWebhookUrl",
    "LimitExceeded",
    "LocalFileError",
    "ModelUnavailable",
    "NotAnImage",
    "ObjectMissing",
    "OperationUnavailable",
    "OutputOutsidePrefix",
    "OutputRejected",
    "PermanentError",
    "ProcessingFailed",
    "RegistryUnavailable",
    "RetryableError",
    "Settings",
    "StorageRequestRefused",
    "StorageUnavailable",
    "Submission",
    "TooManyFrames",
    "TooManyPixels",
    "TruncatedImage",
    "UndecodableEvent",
    "UnknownOperation",
    "UnsupportedImage",
    "UploadMismatch",
    "WebhookTargetBlocked",
    "WebhookTargetUnresolvable",
    "WorkerStalled",
    "load_settings",
]
