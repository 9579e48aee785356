"""`cabinet-agent run`: drivers, core, outbox, uplink and health wired into one service.

Start order is fail-secure: the outbox (and so seq, boot and the chain) first, the
core with all outputs forced off and `system.started` committed, then drivers, the
uplink and health; READY=1 once they run (not once the broker answers: the cabinet
must work offline). Stop order: SIGTERM -> `system.stopping` committed with the relay
off -> uplink drains what it can and publishes a clean `offline` -> drivers close.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__
from agent.clock import Clock, ScaledClock, SystemClock
from agent.clocksync import ClockWatch, clock_synchronized
from agent.commands import CommandVerifier, load_persisted_policy, persist_policy
from agent.core import Core, CoreHooks, saved_state
from agent.health import Health, LoopMonitor, ProgressWatch, status_line
from agent.heartbeat import Heartbeat
from agent.nonces import NonceStore
from agent.outbox import Outbox
from agent.policy_source import PolicyError, read_policy_file
from agent.status import StatusFile
from agent.uplink import Uplink
from agent.wire import SigningKey, VerifyKey
from agent.wire.key_files import read_key, write_new_key
from config.agent import AgentConfig
from config.loading import ConfigError
from drivers.base import Driver
from rules import inputs as i
from rules.cabinet import CabinetRules
from rules.effects import OutputName

if TYPE_CHECKING:
    from drivers.scenario import Scenario

log = structlog.get_logger("daemon")

STOP_BUDGET_S = 4.5  # SIGTERM -> exit 0 within 5 s (systemd's TimeoutStopSec)


@dataclass
class RunOptions:
    config_file: Path
    policy_file: Path | None = None
    scenario: Scenario | None = None
    speed: float = 1.0
    exit_after_scenario_s: float | None = None  # demo/tests: stop this long after the end


class Daemon:
    """The composition root. `config` has passed agent.preflight.check_before_start, the
    one owner of the start-up checks (`run` and `check-config` share it), so the keys
    below are read, not judged again; a file that changed since still fails loudly."""

    def __init__(self, config: AgentConfig, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.monitor = LoopMonitor()
        self.health = Health(self.monitor, stall_s=config.health.watchdog_stall_s)
        self.drivers: list[Driver] = []
        self._outputs: dict[OutputName, list[Driver]] = {}
        self._stop_started: float | None = None
        self._scenario_done_at: float | None = None
        state = config.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self.key = self._device_key()
        self.central_key = self._central_key()
        self.outbox = Outbox(
            state / "outbox.db", config.device, self.key, max_bytes=config.outbox.max_bytes
        )
        self.clock: Clock = SystemClock()
        if options.scenario is not None:
            self.clock = ScaledClock(int(time.time() * 1000), options.speed)
        self.rules = CabinetRules(config.device, __version__)
        # Looked up at each check, so a test can stand in for the kernel's answer.
        self.clock_watch = ClockWatch(self._post, probe=lambda: clock_synchronized())
        hooks = CoreHooks(
            apply_output=self._apply_output,
            committed=self._committed,
            republish=lambda lo, hi: self.uplink.republish(lo, hi),
            persist_policy=self._persist_policy,
            beat=self.monitor.beat,
            idle=lambda: self.status.refresh(self.rules, self.clock.now()),
            clock_ok=lambda: self.clock_watch.ok,
        )
        self.core = Core(self.rules, self.outbox, self.clock, hooks)
        verifier = CommandVerifier(
            config.device, self.central_key or _NO_KEY, NonceStore(state / "nonces.db")
        )
        self.uplink = Uplink(
            config,
            self.outbox,
            pubkey=self.key.public.to_text(),
            version=__version__,
            boot=self.outbox.boot,
            post=self.core.post,
            verifier=verifier,
        )
        identity = {"device": config.device, "site": config.site, "boot": self.outbox.boot}
        self.status = StatusFile(state, {**identity, "version": __version__}, self._counters)
        self.heartbeat = Heartbeat(
            outbox=self.outbox,
            uplink_state=lambda: self.uplink.state,
            clock=self.clock,
            health=self.health,
            status=self.status,
            post=self._post,
            every_s=config.health.heartbeat_s,
        )
        period = min(0.25, config.health.watchdog_stall_s / 4)
        self.uplink_watch = ProgressWatch(
            self.monitor, "uplink", lambda: self.uplink.progress, period
        )

    # --- start-up ------------------------------------------------------------------------

    def _device_key(self) -> SigningKey:
        path = self.config.state_path(self.config.keys.device_key)
        if not path.exists() and self.config.hardware.simulated:
            # A simulated cabinet may mint its own key; a real one must be provisioned
            # (its public key registered at the centre), so it never invents one:
            # preflight refused to start one without it.
            key = write_new_key(path)
            log.warning("device_key.created", path=str(path), pubkey=key.public.to_text())
            return key
        return read_key(path)  # KeyFileError (exit 78) if it went away since preflight

    def _central_key(self) -> VerifyKey | None:
        text = self.config.keys.central_pubkey
        if text is None:
            log.warning("central_key.missing", effect="every command and signed policy is refused")
            return None
        return VerifyKey.from_text(text)  # preflight checked it parses

    def _initial_policies(self) -> list[i.AnyInput]:
        state = self.config.state_dir
        loaded: list[i.AnyInput] = []
        if self.central_key is not None:
            persisted = load_persisted_policy(state, self.central_key)
            if persisted is not None:
                loaded.append(i.PolicyLoaded(persisted[0], persisted[1], "startup"))
        if self.options.policy_file is not None:
            loaded.append(self._read_policy_file())
        return loaded

    def _read_policy_file(self) -> i.PolicyLoaded:
        assert self.options.policy_file is not None
        policy, document = read_policy_file(
            self.options.policy_file, self.central_key, allow_plain=self.config.hardware.simulated
        )
        return i.PolicyLoaded(policy, document, "file")

    def run(self) -> int:
        for loop in ("core", "outbox", "uplink"):
            self.monitor.register(loop)
        self.core.process(
            [
                i.Started(
                    __version__,
                    self.outbox.boot,
                    self.outbox.resumed_from_seq,
                    saved_state(self.outbox),
                ),
                i.ClockStatus(self.clock_watch.ok),
                *self._initial_policies(),
            ]
        )
        self._start_drivers()
        self.status.refresh(self.rules, self.clock.now())  # core thread not running yet
        self.status.write(self.uplink.state, self.outbox.stats().unsent, None)
        self.uplink.start()
        self.health.start()
        self.health.ready(status_line("connecting", self.outbox.stats().unsent))
        for part in (self.heartbeat, self.clock_watch, self.uplink_watch):
            part.start()
        log.info(
            "daemon.ready",
            device=self.config.device,
            boot=self.outbox.boot,
            last_seq=self.outbox.last_seq,
        )
        core = threading.Thread(target=self.core.run, args=(threading.Event(),), name="core")
        core.daemon = True
        core.start()
        self._serve(core)
        self._shutdown()
        return 0

    def _serve(self, core: threading.Thread) -> None:
        """Main thread, until the core ends: SIGHUP, the scenario's end, SIGTERM."""
        while core.is_alive():
            core.join(0.2)
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload()
            if self._scenario_over():
                self.stop_requested.set()
            if self.stop_requested.is_set():
                # The core ends by itself once the rules have stopped; this only asks.
                self._stop_started = time.monotonic()
                self.health.stopping()
                self.core.post(i.Stopping("signal"))
                deadline = self._stop_started + 1.5
                while core.is_alive() and time.monotonic() < deadline:
                    core.join(0.05)
                return

    def _scenario_over(self) -> bool:
        sim = getattr(self, "sim", None)
        linger = self.options.exit_after_scenario_s
        if sim is None or linger is None or not sim.finished.is_set():
            return False
        now = time.monotonic()
        self._scenario_done_at = self._scenario_done_at or now
        return now - self._scenario_done_at >= linger

    def _start_drivers(self) -> None:
        from drivers.registry import build_drivers, check_outputs

        hardware = self.config.hardware
        drivers: list[Driver] = list(build_drivers(hardware))
        if hardware.simulated:
            # Imported here: a real cabinet never loads the simulator and its scenario
            # models (~0.4 MB of its memory).
            from drivers.sim import SimDriver

            policy = self.rules.policy
            state_file = self.config.state_dir / "sim-cabinet.json"
            self.sim = SimDriver(policy, self.options.scenario, self.clock, state_file)
            drivers.append(self.sim)
        try:
            check_outputs(drivers)  # also guarded when the config is read; never two owners
        except ConfigError:
            for driver in drivers:
                driver.close()
            raise
        for driver in drivers:
            for output in driver.outputs():
                self._outputs.setdefault(output, []).append(driver)
            driver.start(self.core.post)
            self.drivers.append(driver)
        # Outputs decided before the drivers existed (an alarm open at start lights the
        # red LED, the fail-secure "all off") are applied now; the core thread is not
        # running yet, so reading the rules' output state here is safe.
        for output, on in self.rules.outputs.items():
            self._apply_output(output, on)
        if "lock" not in self._outputs:
            log.warning("outputs.no_lock_relay", effect="nothing can release the lock")

    # --- effects -------------------------------------------------------------------------

    def _apply_output(self, output: OutputName, on: bool) -> None:
        for driver in self._outputs.get(output, []):
            driver.apply(output, on)

    def _persist_policy(self, document: dict[str, Any], version: int) -> None:
        persist_policy(self.config.state_dir, document)

    def _committed(self, envelopes: list[Any]) -> None:
        self.uplink.notify(envelopes)

    def _post(self, item: i.AnyInput) -> None:
        self.core.post(item)  # looked up at each call: tests tap the core's inbox

    def _counters(self) -> dict[str, int]:
        # Plain ints owned by other threads: a slightly stale figure is fine here.
        counters = {
            "core_errors": self.core.errors,
            "events_committed": self.core.committed_events,
            "side_task_failures": sum(
                part.failures for part in (self.heartbeat, self.clock_watch, self.uplink_watch)
            ),
            "watchdog_pets": self.health.pets,
            "watchdog_check_failures": self.health.check_failures,
            **{f"uplink_{k}": v for k, v in self.uplink.stats().items() if k != "unsent"},
        }
        for driver in self.drivers:
            # Drivers that count what they see (reads, bus errors, ...) offer counters().
            driver_counters = getattr(driver, "counters", None)
            if callable(driver_counters):
                counters.update({f"{driver.name}_{k}": v for k, v in driver_counters().items()})
        return counters

    # --- SIGHUP ----------------------------------------------------------------------------

    def _reload(self) -> None:
        from config.agent import load_agent_config
        from config.loading import ConfigError

        try:
            fresh = load_agent_config(self.options.config_file)
        except ConfigError as exc:
            self.core.post(i.Reloaded(False, f"config invalid, kept the running one: {exc}"))
            return
        if fresh != self.config:
            self.core.post(i.Reloaded(False, "config changed: a restart is needed to apply it"))
        if self.options.policy_file is None:
            self.core.post(i.Reloaded(True, "config unchanged; no policy file to reload"))
            return
        try:
            self.core.post(self._read_policy_file())
            self.core.post(i.Reloaded(True, f"policy file {self.options.policy_file} re-read"))
        except PolicyError as exc:
            self.core.post(i.Reloaded(False, f"policy file refused: {exc}"))

    # --- stop ----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        for part in (self.heartbeat, self.clock_watch, self.uplink_watch):
            part.close()
        started = self._stop_started or time.monotonic()
        # Give the uplink a moment to publish what is still unsent (system.stopping at
        # least) before the clean offline status; what remains stays in the outbox and
        # goes out after the next start.
        flush_until = started + 3.0
        while (
            self.uplink.state == "connected"
            and self.outbox.stats().unsent
            and time.monotonic() < flush_until
        ):
            time.sleep(0.05)
        self.uplink.stop(timeout=max(0.5, started + STOP_BUDGET_S - time.monotonic()))
        for driver in self.drivers:
            try:
                driver.close()
            except Exception:
                log.exception("driver.close_failed", driver=getattr(driver, "name", "?"))
        self.health.stop()
        self.outbox.close()
        log.info("daemon.stopped")

    def install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self.stop_requested.set()

        def hup(signum: int, _frame: FrameType | None) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)


class _NoKey:
    """Stands in for a missing central key: nothing verifies against it."""

    def verify(self, message: bytes, signature: bytes) -> bool:
        return False

    def to_text(self) -> str:
        return "none"


_NO_KEY: Any = _NoKey()
