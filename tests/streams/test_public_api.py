"""``streams``' public surface is exactly what is promised (as httpx tests its own)."""

from __future__ import annotations

import inspect

import streams
from processors import errors
from streams import errors as streams_errors


def test_the_exported_names_are_exactly_these() -> None:
    assert streams.__all__ == [
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


def test_the_exports_are_sorted_and_exist() -> None:
    assert streams.__all__ == sorted(streams.__all__, key=lambda name: (name[0].islower(), name))
    for name in streams.__all__:
        assert getattr(streams, name) is not None


def test_every_error_of_the_tree_is_exported() -> None:
    """A new error class in ``processors.errors`` or ``streams.errors`` must be added to the public surface too."""
    tree = {
        name
        for module in (errors, streams_errors)
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, errors.DarkroomError)
    }
    assert tree <= set(streams.__all__)
