"""The centre's database goes away mid-stream and comes back: nothing lost, nothing twice.

`serve` on PostgreSQL (a cluster of this test's own, stopped and started under it) with a
stream of hand-signed events from a real mosquitto. While the database is down the
ingest holds what it received unacknowledged and `/api/health` says so; after it is back
every event is stored exactly once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from central.store import Store
from central.store.schema import events
from tests.central.cabinet import FakeCabinet
from tests.central_service.postgres import PostgresCluster
from tests.central_service.rig import CentralRig, FakeFleet, wait_until
from tests.support.broker import Broker, free_port

pytestmark = pytest.mark.realpart


def _health(listen: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://{listen}/api/health", timeout=5) as answer:
            return dict(json.loads(answer.read()))
    except urllib.error.HTTPError as error:
        return dict(json.loads(error.read()))
    except OSError:
        return None


def test_the_database_restarted_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, make_broker: Callable[..., Broker]
) -> None:
    broker = make_broker(tls=False)
    cluster = PostgresCluster().start()
    try:
        url = cluster.new_database()
        cabinets = [FakeCabinet(device=f"cab-{i}") for i in range(2)]
        rig = CentralRig(tmp_path, broker.url, url, cabinets)
        fleet = FakeFleet(broker.host, broker.port, cabinets, rig.central_pub)
        listen = f"127.0.0.1:{free_port()}"
        try:
            rig.serve_ready(listen=listen)
            for i in range(120):
                for cab in cabinets:
                    fleet.publish(cab, fleet.emit(cab, "system.heartbeat", {"uptime_s": i}))
                if i == 40:
                    cluster.stop("fast")
                    wait_until(
                        lambda: (_health(listen) or {}).get("database") == "down",
                        20,
                        "health to say the database is down",
                    )
                if i == 80:
                    cluster.start()
            with Store.open(url) as store:
                wait_until(
                    lambda: all(len(store.events(c.device, limit=1000)) == 120 for c in cabinets),
                    60,
                    "every event stored after the database came back",
                )
                for cab in cabinets:
                    assert store.events(cab.device, limit=1000) == [
                        e.payload for e in cab.envelopes
                    ]
                with store.connection() as conn:
                    assert conn.execute(select(func.count()).select_from(events)).scalar() == 240
                assert [c.last_seq for c in store.cabinets()] == [120, 120]
            wait_until(lambda: (_health(listen) or {}).get("database") == "ok", 20, "health ok")
            assert "database.down" in rig.log_text() and "database.back" in rig.log_text()
        finally:
            rig.stop_all()
            fleet.close()
    finally:
        cluster.destroy()
