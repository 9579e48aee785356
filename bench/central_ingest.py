"""central_ingest_sqlite / central_ingest_postgres: the centre under a city's stream.

Pre-signed streams of 500 simulated cabinets (agent.wire envelopes, chained, a realistic
mix: heartbeats, telemetry, badges, door, withdrawals) are published to the benchmark's
mosquitto twice, the same bytes in the same order by the same publisher:
- to a bare paho subscriber (another process, the same shared subscription, QoS 1,
  nothing verified or stored): its received msgs/s is the baseline;
- to `cabinet-central serve` (another process, a fresh database): verified-and-stored
  events/s, i.e. from the first publish until the stream's last envelope is in the
  database (the alarms below are not waited for: their schedule is not the centre's).
`ratio` = stored/s ÷ baseline/s (goal ≥ 0.5). Meanwhile one more cabinet, on a broker
connection of its own as every cabinet has, raises alarms every ALARM_EVERY_S;
`alarm_p99_ms` is the time from its publish until the alarm is in the open-alarms query
(`GET /api/alarms?state=open`, or the store's `alarms(state="open")` it serves when the
console is not installed). Goal < 1000 ms. Every wait is bounded (*_GIVE_UP_S).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agent.wire import SigningKey, event_topic, write_new_key
from bench.broker import HOST, _free_port
from bench.central_clients import (
    Publisher,
    bare_rate,
    cpu_seconds,
    open_alarms_reader,
    wait_for_http,
)
from bench.central_fleet import SITE, Cabinet, interleaved, make_fleet
from bench.postgres import PostgresCluster
from bench.stats import ms, percentile
from central.registry import Device, Registry, render_registry

# `serve` processes sharing the stream (one share group, one database). On this loaded
# 2-core machine a second process does not pay: SQLite takes one writer at a time (728 vs
# 2050 events/s), and PostgreSQL measured 1810 with two against 2017 with one.
PROCESSES = {"sqlite": 1, "postgresql": 1}
# serve's [ingest] workers (BENCH_CENTRAL_WORKERS=0, 1, 2 to compare; "auto" by default)
_workers = os.environ.get("BENCH_CENTRAL_WORKERS", "auto")
WORKERS = _workers if _workers.isdigit() else '"auto"'
STREAM_GIVE_UP_S = 300.0  # the stream not stored by then: reported as it stands
ALARM_EVERY_S = 0.1  # alarms on a fixed schedule, whether or not the last one showed yet
# a console polling far faster than any person looks; each poll is an HTTP request the
# serve process answers while it ingests, so it is part of the load, not free
ALARM_POLL_S = 0.02
ALARM_GIVE_UP_S = 30.0  # an alarm not open by then is reported missed


class AlarmWatch:
    """Raises alarms every ALARM_EVERY_S while the stream is published and notes when each
    shows as open. Bounded: an alarm not shown within ALARM_GIVE_UP_S is missed."""

    def __init__(self, publisher: Publisher, shown_open: Any, alarm_stream: list[Any]) -> None:
        self.publisher = publisher
        self.shown_open = shown_open
        self.alarm_stream = alarm_stream
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self._raiser = threading.Thread(target=self._raise, daemon=True)
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._raiser.start()
        self._watcher.start()

    def join(self) -> None:
        limit = len(self.alarm_stream) * ALARM_EVERY_S + ALARM_GIVE_UP_S + 5
        self._raiser.join(limit)
        self._watcher.join(limit)

    def _raise(self) -> None:
        for env in self.alarm_stream:
            time.sleep(ALARM_EVERY_S)
            topic = event_topic("cabinet", SITE, env.device, env.type)
            self.sent[_alarm_id(env)] = time.perf_counter()
            self.publisher.publish_one(topic, env.payload)

    def _watch(self) -> None:
        waiting = {_alarm_id(env) for env in self.alarm_stream}
        while waiting:
            shown = self.shown_open() & waiting
            now = time.perf_counter()
            self.latencies += [now - self.sent[alarm] for alarm in shown]
            late = {a for a in waiting if now - self.sent.get(a, now) > ALARM_GIVE_UP_S}
            unsent = set() if self._raiser.is_alive() else waiting - self.sent.keys()
            waiting -= shown | late | unsent  # missed: counted by the caller
            time.sleep(ALARM_POLL_S)


def _alarm_id(env: Any) -> str:
    return str(env.fields["data"]["alarm"])


def _central(
    port: int,
    database_url: str,
    fleet: list[Cabinet],
    alarmist: Cabinet,
    stream: list[tuple[str, bytes]],
    alarms: int,
    work: Path,
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from central.store import Store
    from central.store.schema import events

    registry = Registry(
        work / "devices.toml",
        {c.device: Device(c.device, SITE, "", c.key.public) for c in [*fleet, alarmist]},
    )
    (work / "devices.toml").write_text(render_registry(registry))
    write_new_key(work / "central.key")
    (work / "central.toml").write_text(
        f'registry = "{work / "devices.toml"}"\ncentral_key = "{work / "central.key"}"\n'
        f'state_dir = "{work / "state"}"\n[database]\nurl = "{database_url}"\n'
        f'[broker]\nurl = "mqtt://{HOST}:{port}"\n[http]\nlisten = "{HOST}:{_free_port()}"\n'
        f"[ingest]\nworkers = {WORKERS}\n"
    )
    serves = []
    listens = []
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    for n in range(PROCESSES[backend]):
        log = work / f"serve{n}.log"
        listens.append(f"{HOST}:{_free_port()}")
        env = {**os.environ, "CENTRAL_HTTP_LISTEN": listens[-1]}
        command = [sys.executable, "-m", "central.service", "serve"]
        command += ["--config", str(work / "central.toml"), "--log-format", "json"]
        serves.append(
            subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
        )
        deadline = time.monotonic() + 60
        while b"broker.subscribed" not in log.read_bytes():
            if serves[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.05)
    for listen in listens:
        wait_for_http(listen, serves, 60)
    store = Store.open(database_url)
    try:
        shown_open = open_alarms_reader(store, listens[0], alarmist.device)
        publisher = Publisher(port)
        alarm_stream = [
            alarmist.emit("alarm.raised", {"alarm": f"A1-{n}", "kind": "leak"}, "alarm")
            for n in range(1, alarms + 1)
        ]
        # the alarming cabinet has a connection of its own, as every cabinet has: its alarm
        # must not queue behind 20,000 envelopes in the stream publisher's socket
        watch = AlarmWatch(Publisher(port), shown_open, alarm_stream)
        cpu0 = sum(cpu_seconds(serve.pid) for serve in serves)
        t0 = time.perf_counter()
        watch.start()
        publisher.publish_all(stream, within_s=STREAM_GIVE_UP_S)
        stored = 0
        not_alarms = select(func.count()).where(events.c.device != alarmist.device)
        while stored < len(stream) and time.perf_counter() - t0 < STREAM_GIVE_UP_S:
            time.sleep(0.02)
            with store.connection() as conn:
                stored = conn.execute(not_alarms).scalar() or 0
        elapsed = time.perf_counter() - t0  # the stream's last envelope stored (or gave up)
        cpu = sum(cpu_seconds(serve.pid) for serve in serves) - cpu0
        watch.join()
        publisher.close()
        watch.publisher.close()
        return {
            "stored": int(stored),
            "seconds": elapsed,
            "cpu_s": cpu,
            "latencies": watch.latencies,
            "via": getattr(shown_open, "via", "store"),
            "query_errors": len(getattr(shown_open, "errors", [])),
        }
    finally:
        for serve in serves:
            serve.terminate()
        for serve in serves:
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        store.close()


def _run(name: str, port: int, quick: bool, postgres: bool) -> dict[str, Any]:
    cabinets, per_cabinet, alarms = (500, 4, 5) if quick else (500, 40, 25)
    fleet = make_fleet(cabinets, per_cabinet)
    alarmist = Cabinet("cab-alarms", SigningKey.generate(), [])
    stream = interleaved(fleet)
    baseline = bare_rate(port, stream)
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    cluster = PostgresCluster().start() if postgres else None
    try:
        url = cluster.new_database() if cluster else f"sqlite:///{work / 'central.db'}"
        # a second, fresh stream of the same shape: the bare run must not pre-fill anything
        fleet2 = make_fleet(cabinets, per_cabinet)
        run = _central(port, url, fleet2, alarmist, interleaved(fleet2), alarms, work)
    finally:
        if cluster is not None:
            cluster.destroy()
    per_s = run["stored"] / run["seconds"]
    lat = run["latencies"]
    return {
        "name": name,
        "ratio": round(per_s / baseline, 3),
        "events_per_s": round(per_s),
        # CPU of serve and its workers per stored envelope: steadier than the rates on a
        # shared machine, and what sizing a host needs
        "serve_cpu_us_per_event": round(run["cpu_s"] * 1e6 / max(run["stored"], 1)),
        "raw_per_s": round(baseline),
        "events": run["stored"],
        "cabinets": cabinets,
        "processes": PROCESSES["postgresql" if postgres else "sqlite"],
        "workers": WORKERS.strip('"'),
        "alarm_p50_ms": ms(percentile(lat, 50)) if lat else None,
        "alarm_p99_ms": ms(percentile(lat, 99)) if lat else None,
        "alarms": len(lat),
        "alarms_missed": alarms - len(lat),
        "alarm_query": run["via"],
        "alarm_query_errors": run["query_errors"],
    }


def bench_central_ingest_sqlite(port: int, url: str, quick: bool) -> dict[str, Any]:
    return _run("central_ingest_sqlite", port, quick, postgres=False)


def bench_central_ingest_postgres(port: int, url: str, quick: bool) -> dict[str, Any]:
    return _run("central_ingest_postgres", port, quick, postgres=True)
