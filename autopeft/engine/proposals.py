"""New configurations for the scheduler, proposed ahead in the background so a slow model never idles workers.

A model-based sampler (BoTorch's GP) can take tens of seconds to fit and optimise its acquisition on a
small machine; proposing at the moment a worker frees would leave that worker idle for as long. So the
`ProposalQueue` keeps proposals ready: after each event of the loop it starts one background proposal
(`ahead`) from a snapshot of the history, with the running and already queued configurations as pending,
and the next free worker takes a ready one. When none is ready and other trials are running, the worker
gets the sampler's cheap proposal (`Sampler.cheap_propose`, quasi-random) instead of waiting; the
background batch then grows to the number of proposals the workers asked for during the last one, so
it keeps up. With no trial running (every worker idle anyway) it waits for the model, as before.

Samplers that propose quickly (random, TPE, NSGA-II) are asked in the loop's thread, in order, so their
proposals stay reproducible; so is every sampler on an executor that runs trials inline.

Why not `concurrent.futures.ThreadPoolExecutor`: its threads are joined at interpreter exit, so a Ctrl-C
during a 30-second fit would hang the exit for that long; one daemon thread per proposal does not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from autopeft.search.history import History
from autopeft.search.samplers.base import Sampler
from autopeft.search.samplers.common import seen_keys
from autopeft.space.encoding import config_key

log = logging.getLogger(__name__)


class _Background:
    """One proposal computed in a daemon thread; `result` is set when it is done (or `error` if it raised)."""

    def __init__(self, sampler: Sampler, n: int, history: History) -> None:
        self.n = n
        self.done = threading.Event()
        self.result: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(sampler, n, history), daemon=True,
                                        name="autopeft-propose-ahead")
        self._thread.start()

    def _run(self, sampler: Sampler, n: int, history: History) -> None:
        try:
            self.result = [dict(c) for c in sampler.propose(n, history)]
        except BaseException as err:  # handed to the loop's thread, which raises it there
            self.error = err
        finally:
            self.done.set()

    def join(self) -> None:
        self._thread.join()


class ProposalQueue:
    """The scheduler's ``propose`` callable: hands out configurations, proposed in batches and ahead of need.

    Args:
        sampler: proposes configurations from a `History`.
        history: () -> the study's `History`, with in-flight configurations as pending.
        running: () -> how many trials are running now (0: nobody is kept waiting by a slow proposal).
        ahead: propose in the background (for slow samplers on executors that run trials elsewhere).
    """

    def __init__(self, sampler: Sampler, history: Callable[[], History], *, running: Callable[[], int] = lambda: 0,
                 ahead: bool = False) -> None:
        self.sampler = sampler
        self._history = history
        self._running = running
        self.ahead_enabled = ahead and sampler.slow
        self.queued: list[dict[str, Any]] = []
        self.cheap = 0  # proposals handed out from the cheap fallback (the model was busy)
        self._background: _Background | None = None
        self._asked_during = 0  # proposals the workers asked for while the background one ran

    def _current(self) -> History:
        base = self._history()
        return History(base.observations, (*base.pending, *self.queued), base.num_trials + len(self.queued),
                       base.failed)

    def _collect(self, *, wait: bool = False) -> None:
        """Queue the background proposal's configurations once it is done (waiting for it if asked)."""
        job = self._background
        if job is None or not (job.done.is_set() or wait):
            return
        job.done.wait()
        self._background = None
        if job.error is not None:
            raise job.error
        # A configuration handed out while the model ran (a seed given by the cheap fallback, say) is not
        # proposed twice: the background proposal's history was taken before it.
        seen = seen_keys(self._current())
        fresh = [c for c in job.result if config_key(c) not in seen]
        self.queued.extend(fresh)

    def prefetch(self, n: int) -> None:
        """At least ``n`` configurations queued (one joint batch, so a model picks them together)."""
        self._collect()
        missing = n - len(self.queued)
        if missing <= 0:
            return
        if self.ahead_enabled and self._running() > 0:
            self._asked_during += missing
            self.queued.extend(self._cheap(missing))
            return
        self._collect(wait=True)  # nobody runs: wait for the model rather than guess
        missing = n - len(self.queued)
        if missing > 0:
            self.queued.extend(dict(c) for c in self.sampler.propose(missing, self._current()))

    def _cheap(self, n: int) -> list[dict[str, Any]]:
        configs = [dict(c) for c in self.sampler.cheap_propose(n, self._current())]
        self.cheap += len(configs)
        log.info("the model is still proposing; %d cheap proposal(s) so the free workers do not wait", len(configs))
        return configs

    def __call__(self, n: int) -> list[dict[str, Any]]:
        self.prefetch(n)
        out, self.queued = self.queued[:n], self.queued[n:]
        return out

    def ahead(self) -> None:
        """Start a background proposal if none is running and the queue is short (call after each event)."""
        if not self.ahead_enabled:
            return
        self._collect()
        if self._background is not None:
            return
        batch = max(1, self._asked_during)
        self._asked_during = 0
        if len(self.queued) >= batch:
            return
        self._background = _Background(self.sampler, batch - len(self.queued), self._current())

    def settle(self) -> None:
        """Wait for a background proposal still running (at the end of a study: no thread left behind)."""
        if self._background is not None:
            self._background.join()
            self._background = None

    def __repr__(self) -> str:
        busy = self._background is not None
        return f"ProposalQueue(queued={len(self.queued)}, background={busy}, cheap={self.cheap})"

