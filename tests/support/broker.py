"""A real mosquitto 2 for tests: free ports, generated certificates, kill and restart.

Every broker has a plain anonymous listener (`port`, no ACL: the tests' own
subscribers and "the centre" connect there) and, unless `tls=False`, a TLS listener
(`tls_port`) that requires a client certificate and uses its CN as the username, so an
ACL `pattern` with `%u` confines each device certificate to its own topics. With
`passwords={"user": "secret"}` a third listener (`password_port`) takes
username/password. Certificates are EC P-256, made with the `openssl` CLI once per
`CertAuthority` (i.e. once per test session with the `broker_certs` fixture).

`kill()` (SIGKILL: the broker loses what it has not saved) and `restart()` (same ports;
`graceful=True` stops it with SIGTERM first, which makes mosquitto write its
persistence file, so queued QoS 1 messages of persistent sessions survive).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.realparts import require_binary

HOST = "127.0.0.1"

# Each device may publish its own events and status and read its own commands; nothing
# else. `%u` is the certificate CN (use_identity_as_username).
DEVICE_ACL = """\
pattern write cabinet/+/%u/evt/#
pattern write cabinet/+/%u/status
pattern read cabinet/+/%u/cmd/#
"""


@dataclass(frozen=True)
class ClientCert:
    cn: str
    cert: Path
    key: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


class CertAuthority:
    """A throw-away CA in `directory` with a server certificate for 127.0.0.1/localhost."""

    def __init__(self, directory: Path) -> None:
        require_binary("openssl", "openssl")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.crt"
        self._ca_key = self.dir / "ca.key"
        self._lock = threading.Lock()
        self._clients: dict[str, ClientCert] = {}
        _openssl(
            "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=self.dir
        )
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=cabinet-test-ca",
            "-days",
            "3650",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=self.dir,
        )
        self.server = self._issue(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )

    def client(self, cn: str) -> ClientCert:
        """The certificate of one client (made on first use); CN = device id."""
        with self._lock:
            if cn not in self._clients:
                self._clients[cn] = self._issue(f"client-{cn}", cn, "extendedKeyUsage=clientAuth\n")
            return self._clients[cn]

    def _issue(self, name: str, cn: str, extensions: str) -> ClientCert:
        key, csr, crt, ext = (f"{name}.key", f"{name}.csr", f"{name}.crt", f"{name}.ext")
        (self.dir / ext).write_text("basicConstraints=CA:FALSE\n" + extensions)
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key, cwd=self.dir)
        _openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr, cwd=self.dir)
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            ext,
            "-out",
            crt,
            cwd=self.dir,
        )
        return ClientCert(cn, self.dir / crt, self.dir / key)


class Broker:
    """One mosquitto process; see the module docstring for the listeners."""

    def __init__(
        self,
        workdir: Path,
        certs: CertAuthority | None = None,
        *,
        tls: bool = True,
        acl: str | None = None,
        passwords: dict[str, str] | None = None,
        persistence: bool = False,
        extra_config: str = "",
    ) -> None:
        self.binary = require_binary("mosquitto", "mosquitto")
        if tls and certs is None:
            raise ValueError("a TLS listener needs a CertAuthority")
        self.host = HOST
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certs = certs
        self.tls = tls
        self.acl = acl
        self.passwords = dict(passwords or {})
        self.persistence = persistence
        self.extra_config = extra_config
        self.port = 0
        self.tls_port: int | None = None
        self.password_port: int | None = None
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    # --- addresses for the code under test --------------------------------------------

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this broker has no TLS listener")
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def password_url(self) -> str:
        if self.password_port is None:
            raise RuntimeError("this broker has no password listener")
        return f"mqtt://{self.host}:{self.password_port}"

    @property
    def ca(self) -> Path:
        if self.certs is None:
            raise RuntimeError("this broker has no certificates")
        return self.certs.ca

    def client_cert(self, cn: str) -> ClientCert:
        if self.certs is None:
            raise RuntimeError("this broker has no certificates")
        return self.certs.client(cn)

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> Broker:
        """Pick free ports, write the config, start, wait until every listener accepts."""
        for _attempt in range(5):
            self.port = free_port()
            self.tls_port = free_port() if self.tls else None
            self.password_port = free_port() if self.passwords else None
            self._write_config()
            try:
                self._spawn()
                return self
            except RuntimeError:
                # Another test may have grabbed a port between our probe and the bind.
                self._reap()
                continue
        raise RuntimeError(f"mosquitto did not start; see {self.log_path}")

    def restart(self, *, graceful: bool = True) -> None:
        """Stop (SIGTERM if graceful, else SIGKILL) and start again on the same ports.

        The config is written again, so a test may change `acl` or `passwords` first.
        """
        if self.running:
            if graceful:
                self.stop()
            else:
                self.kill()
        self._write_config()
        self._spawn()

    def kill(self) -> None:
        """SIGKILL: like a crash or power cut of the broker host."""
        self._signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file and exits."""
        self._signal(signal.SIGTERM)
        self._reap()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals --------------------------------------------------------------------

    def _ports(self) -> list[int]:
        return [p for p in (self.port, self.tls_port, self.password_port) if p]

    def _write_config(self) -> None:
        lines = [
            "user root" if os.geteuid() == 0 else "",
            "per_listener_settings true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "set_tcp_nodelay true",
            # A deep queue: the default 1000 would silently drop QoS 1 messages for a
            # slow or briefly absent test subscriber and break "none missing" checks.
            # Not 0 ("unlimited"): with 0, mosquitto 2.0.11 drops the connection after
            # every publish its ACL refuses (its quota check is `count >= 0`).
            "max_queued_messages 1000000",
        ]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                "persistence_file mosquitto.db",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        if self.tls_port is not None:
            assert self.certs is not None
            lines += [
                f"listener {self.tls_port} {self.host}",
                "allow_anonymous false",
                f"cafile {self.certs.ca}",
                f"certfile {self.certs.server.cert}",
                f"keyfile {self.certs.server.key}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
            if self.acl is not None:
                acl_path = self.workdir / "acl"
                acl_path.write_text(self.acl)
                lines.append(f"acl_file {acl_path}")
        if self.password_port is not None:
            passwd = self.workdir / "passwd"
            passwd.unlink(missing_ok=True)
            for user, secret in self.passwords.items():
                flags = ["-c"] if not passwd.exists() else []
                subprocess.run(
                    ["mosquitto_passwd", *flags, "-b", str(passwd), user, secret],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines += [
                f"listener {self.password_port} {self.host}",
                "allow_anonymous false",
                f"password_file {passwd}",
            ]
        if self.extra_config:
            lines.append(self.extra_config)
        (self.workdir / "mosquitto.conf").write_text("\n".join(x for x in lines if x) + "\n")

    def _spawn(self) -> None:
        log = self.log_path.open("ab")
        self._log_file = log
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.workdir / "mosquitto.conf")],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_text()[-2000:]}")
            if all(_accepts(self.host, p) for p in self._ports()):
                return
            time.sleep(0.01)
        raise RuntimeError(f"mosquitto not listening after 10 s: {self.log_text()[-2000:]}")

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
