"""One driver per study: the lease a driver holds on its study row, kept fresh by a heartbeat thread.

The lease follows Optuna's RDB heartbeats: timestamps come from the database's clock, so drivers on
machines whose clocks disagree still agree on what is stale. A driver renews every ``ttl / 3`` seconds
from a thread (a long BO step in the main thread must not let the lease lapse). If a renewal finds the
lease taken (`study resume --force` elsewhere), `lost` is set and the loop stops without another write;
the store refuses its writes anyway (`Store` fences every driver write with the lease).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import TracebackType

from autopeft.errors import describe_exception
from autopeft.store import Lease, LeaseLostError, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultPolicy:
    """How a study treats lost, silent and hung jobs, and how drivers hand a study over.

    - ``max_retries``: a trial whose worker died (or went silent) runs again from its checkpoint this
      many times; one more loss fails it. Interruptions by the driver (Ctrl-C, crash) do not count.
    - ``trial_timeout``: seconds one job may run before it is stopped and the trial fails (None: no limit).
    - ``heartbeat_interval`` / ``heartbeat_grace``: a job beats every interval; a running trial silent
      for longer than the grace is taken as lost.
    - ``lease_ttl``: a driver lease whose heartbeat is older than this is stale and is taken over.
    """

    max_retries: int = 2
    trial_timeout: float | None = None
    heartbeat_interval: float = 5.0
    heartbeat_grace: float = 60.0
    lease_ttl: float = 30.0

    def __post_init__(self) -> None:
        from autopeft.errors import ConfigError

        if self.max_retries < 0:
            raise ConfigError(f"must be >= 0, got {self.max_retries}", field="max-retries")
        if self.trial_timeout is not None and self.trial_timeout <= 0:
            raise ConfigError(f"must be > 0 seconds, got {self.trial_timeout}", field="trial-timeout")
        if not 0 < self.heartbeat_interval < self.heartbeat_grace:
            raise ConfigError("the heartbeat interval must be > 0 and below the grace period", field="heartbeat")
        if self.lease_ttl <= 0:
            raise ConfigError(f"must be > 0 seconds, got {self.lease_ttl}", field="lease_ttl")


class DriverLease:
    """Hold a study's lease for the duration of a `with` block (acquire, renew from a thread, release)."""

    def __init__(self, store: Store, study: str, lease: Lease, *, ttl: float, force: bool = False) -> None:
        self.store = store
        self.study = study
        self.lease = lease
        self.ttl = ttl
        self.force = force
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def owner(self) -> str:
        return self.lease.owner

    def check(self) -> None:
        """Raise `LeaseLostError` if another driver took the study over."""
        if self.lost.is_set():
            holder = self.store.get_study(self.study).lease_holder or "another driver"
            raise LeaseLostError(f"study {self.study!r} was taken over by {holder}; this driver stopped")

    def __enter__(self) -> DriverLease:
        self.store.acquire_lease(self.study, self.lease, ttl=self.ttl, force=self.force)
        self._thread = threading.Thread(target=self._renew, name="autopeft-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.store.renew_lease(self.study, self.owner):
                    self.lost.set()
                    return
            except Exception as err:  # a database hiccup: try again next period, the ttl covers a few
                log.warning("lease heartbeat failed: %s", describe_exception(err))

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost.is_set() and not isinstance(error, LeaseLostError):
            try:
                self.store.release_lease(self.study, self.owner)
            except Exception as err:  # the lease goes stale by itself
                log.warning("could not release the lease of %s: %s", self.study, describe_exception(err))
