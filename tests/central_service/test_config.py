"""central.toml: defaults, environment overrides, relative paths, file:line:key errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.ingest.workers import auto_workers
from central.service.config import load_central_config
from config.loading import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "central.toml"
    path.write_text('registry = "devices.toml"\ncentral_key = "keys/central.key"\n' + text)
    return path


def test_a_registry_and_a_key_are_enough_and_sqlite_is_the_default(tmp_path: Path) -> None:
    config = load_central_config(_write(tmp_path, ""), environ={})
    assert config.registry == tmp_path / "devices.toml"  # relative to the file
    assert config.central_key == tmp_path / "keys" / "central.key"
    assert config.time_zone == "Asia/Shanghai"
    assert config.http.listen == "127.0.0.1:8080"
    assert config.database_url == "sqlite:////var/lib/cabinet-central/central.db"


def test_the_environment_overrides_broker_database_state_and_listen(tmp_path: Path) -> None:
    env = {
        "CENTRAL_BROKER_URL": "mqtts://broker.example:8883",
        "CENTRAL_DATABASE_URL": "postgresql://central@db/central",
        "CENTRAL_STATE_DIR": str(tmp_path / "state"),
        "CENTRAL_HTTP_LISTEN": "0.0.0.0:9000",
    }
    config = load_central_config(_write(tmp_path, '[http]\nlisten = "127.0.0.1:1"\n'), env)
    assert config.broker.url == "mqtts://broker.example:8883"
    assert config.database_url == "postgresql://central@db/central"
    assert config.state_dir == tmp_path / "state"
    assert (config.http.host, config.http.port) == ("0.0.0.0", 9000)
    no_db = load_central_config(_write(tmp_path, ""), {"CENTRAL_STATE_DIR": str(tmp_path)})
    assert no_db.database_url == f"sqlite:///{tmp_path / 'central.db'}"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ('time_zone = "Mars/Olympus"\n', {}, ":3: time_zone: unknown time zone"),
        ('[http]\nlisten = "everywhere"\n', {}, ":4: http.listen: expected host:port"),
        ('[database]\nurl = "mysql://x"\n', {}, ":4: database.url: expected sqlite"),
        ('[broker]\nurl = "http://x"\n', {}, ":4: broker.url: broker url must start"),
        ('colour = "red"\n', {}, ":3: colour: unknown key"),
        ("[ingest]\nworkers = -1\n", {}, ":4: ingest.workers:"),
        ('[ingest]\nworkers = "many"\n', {}, ":4: ingest.workers:"),
        ("", {"CENTRAL_HTTP_LISTEN": ""}, "CENTRAL_HTTP_LISTEN: is set but empty"),
    ],
)
def test_a_bad_setting_names_the_file_line_key_and_problem(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_central_config(_write(tmp_path, text), env)
    assert expected in str(caught.value)


def test_judging_workers_are_auto_by_default_or_as_many_as_configured(tmp_path: Path) -> None:
    config = load_central_config(_write(tmp_path, ""), environ={})
    assert config.ingest.workers == "auto"
    assert config.ingest_workers == auto_workers()
    configured = load_central_config(_write(tmp_path, "[ingest]\nworkers = 0\n"), environ={})
    assert configured.ingest_workers == 0  # judged in the ingest thread
