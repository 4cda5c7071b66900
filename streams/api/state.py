"""What every request shares, opened once per app and kept on ``app.state``.

``ApiState.open`` migrates the result store and opens the producer SDK client; the image
logic, the Idempotency-Key store and the rate limit sit on them. Routes receive it as a
FastAPI dependency (``State``), so they are plain module functions, and a test can hand
them another state (``app.dependency_overrides[app_state]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from streams.api.idempotency import Idempotency
from streams.api.images import Images
from streams.api.rate import RateLimit
from streams.client import Client
from streams.config import Settings
from streams.sinks.database import Database


@dataclass(frozen=True)
class ApiState:
    settings: Settings
    db: Database
    """One connection for every request thread (``Database`` locks it)."""
    client: Client
    images: Images
    idempotency: Idempotency
    rate: RateLimit

    @classmethod
    def open(cls, settings: Settings) -> ApiState:
        """Migrate the result store and connect the producer; nothing is left open if either fails."""
        db = Database(settings)
        try:
            db.migrate()
            client = Client(settings)
        except BaseException:
            db.close()
            raise
        return cls(
            settings,
            db,
            client,
            Images(settings, db, client),
            Idempotency(db),
            RateLimit(settings.api_rate_per_minute),
        )

    def close(self) -> None:
        self.client.close()
        self.db.close()


def app_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(app_state)]
