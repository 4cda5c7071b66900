"""Image operations as plain functions: bytes in, encoded renditions out.

Nothing in this package imports Kafka or object-storage code.
"""

from processors.errors import DarkroomError, PermanentError, RetryableError
from processors.operation import Limits, Operation, Rendition, StepResult
from processors.registry import AVAILABLE_OPERATIONS, KNOWN_OPERATIONS, get_operation

__all__ = [
    "AVAILABLE_OPERATIONS",
    "KNOWN_OPERATIONS",
    "DarkroomError",
    "Limits",
    "Operation",
    "PermanentError",
    "Rendition",
    "RetryableError",
    "StepResult",
    "get_operation",
]
