"""The API's routes, one ``APIRouter`` per concern; ``ROUTERS`` in the order the document lists them.

``health``: liveness, no key. ``images``: the image resource under ``/v1/images``.
``catalog``: what the service offers, ``/v1/operations`` and ``/v1/models``. What routes
need arrives through dependencies: the caller (``streams.api.auth.Tenant``) and what
every request shares (``streams.api.state.State``).
"""

from __future__ import annotations

from streams.api.routes import catalog, health, images

ROUTERS = (health.router, images.router, catalog.router)
