"""What the requests share: opened once (the store migrated), closed once, nothing left open when opening fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.api import state as state_module
from streams.api.state import ApiState
from streams.config import Settings, load_settings
from streams.errors import BrokerUnavailable
from streams.sinks.database import Database


@pytest.mark.integration
def test_opening_migrates_the_store_and_closing_releases_it(settings: Settings, tmp_path: Path) -> None:
    state = ApiState.open(settings.replace(database_url=f"sqlite:///{tmp_path / 'r.sqlite3'}"))
    with state.db.transaction() as tx:
        assert tx.query("SELECT COUNT(*) AS n FROM api_keys") == [{"n": 0}]
    assert state.images.db is state.db and state.idempotency.db is state.db
    state.close()


def test_a_client_that_cannot_start_leaves_no_connection_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[Database] = []

    class Recorded(Database):
        def close(self) -> None:
            closed.append(self)
            super().close()

    def unavailable(_settings: Settings) -> None:
        raise BrokerUnavailable("no broker")

    monkeypatch.setattr(state_module, "Database", Recorded)
    monkeypatch.setattr(state_module, "Client", unavailable)
    with pytest.raises(BrokerUnavailable):
        ApiState.open(load_settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'r.sqlite3'}"))
    assert len(closed) == 1
