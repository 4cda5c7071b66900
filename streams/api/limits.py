"""Every bound the HTTP API puts on a request, each written once.

The request models (``streams.api.schemas``), the routes' query parameters, the bounded
body readers (``streams.api.bodies``) and so the OpenAPI document (``/openapi.json``) all
take them from here: what the document promises is what the server refuses. Bounds that
are someone else's are read where they are written: a pipeline's length
(``streams.wire.pipeline.MAX_STEPS``), an image id (``streams.wire.events.IMAGE_ID``: any
other id is not found), an ``Idempotency-Key`` (``streams.api.idempotency.KEY``). Two are
configurable, in ``streams.config.Settings``: an image's size (``max_file_bytes``) and the
rate per tenant (``api_rate_per_minute``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_JSON_BYTES = 64 * 1024
"""Largest JSON body (a pipeline, a callback URL: a few hundred bytes in practice), and
largest text field of a multipart body."""
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""What a multipart body may carry besides the file: boundaries, headers, the other fields."""
MAX_FORM_FIELDS = 8
"""Text fields a multipart body may have besides its one file (four are known)."""
MAX_TEXT = 2048
MAX_NAME = 64
MAX_VALUE = 256
MAX_FILENAME = 255
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
"""No control characters: every text field ends up in a database, an event or a URL."""

Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_CONTROL)]
"""A pipeline spec, a callback URL."""
Name = Annotated[str, Field(max_length=MAX_NAME, pattern=NO_CONTROL)]
"""An operation, a parameter, a preset."""
Value = Annotated[str, Field(max_length=MAX_VALUE, pattern=NO_CONTROL)]
"""A parameter's value."""
Filename = Annotated[str, Field(max_length=MAX_FILENAME, pattern=NO_CONTROL)]
