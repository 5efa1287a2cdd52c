"""Proposing ahead: a slow sampler's proposals are made in the background, and a free worker never waits for one
while other trials run (it gets a cheap proposal instead); with nothing running, the model is waited for."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from autopeft.engine.executors import LocalPoolExecutor
from autopeft.engine.loop import Budget, StudyLoop
from autopeft.engine.proposals import ProposalQueue
from autopeft.engine.strategy import make_scheduler
from autopeft.search.history import Config, History
from autopeft.status import TrialStatus
from autopeft.store import Store, StudyStatus
from tests.engine.faulty import WithOptions, echo_runner
from tests.engine.synthetic import DIMS, MAX_F, UniformSampler
from tests.engine.test_loop import OBJECTIVES, _study


class GatedSampler(UniformSampler):
    """A 'model' that proposes only when the test opens its gate; its cheap proposals have y = -1."""

    slow = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.calls: list[int] = []  # n of each model call, in order

    def propose(self, n: int, history: History) -> list[Config]:
        assert self.gate.wait(10), "the test never opened the gate"
        self.calls.append(n)
        return [{**c, "model": True} for c in super().propose(n, history)]

    def cheap_propose(self, n: int, history: History) -> list[Config]:
        return [{"x": 0.5, "y": -1.0, "n": history.num_trials + i} for i in range(n)]


def _queue(sampler: Any, running: int, ahead: bool = True) -> ProposalQueue:
    return ProposalQueue(sampler, lambda: History(), running=lambda: running, ahead=ahead)


def _wait_idle(queue: ProposalQueue) -> None:
    """Until the background proposal is done (it runs in a daemon thread)."""
    job = queue._background
    assert job is None or job.done.wait(10)


def test_a_free_worker_gets_a_cheap_proposal_while_the_model_is_busy_then_the_models() -> None:
    sampler = GatedSampler(DIMS, OBJECTIVES, seed=0)
    queue = _queue(sampler, running=1)
    first = queue(1)
    assert first[0]["y"] == -1.0 and queue.cheap == 1  # nothing was ready: no waiting for the model
    queue.ahead()  # the model starts on the next one, in the background
    assert queue(1)[0]["y"] == -1.0  # still busy: cheap again
    sampler.gate.set()
    _wait_idle(queue)
    assert queue(1)[0].get("model") is True  # the background proposal is handed out
    assert sampler.calls == [1]


def test_the_background_batch_grows_to_what_the_workers_asked_for_meanwhile() -> None:
    sampler = GatedSampler(DIMS, OBJECTIVES, seed=0)
    queue = _queue(sampler, running=3)
    queue.ahead()
    for _ in range(3):
        queue(1)  # three workers freed while the model worked: cheap proposals
    sampler.gate.set()
    _wait_idle(queue)
    queue.ahead()  # collects the first (1 queued), then tops the queue up to 3, as demand showed: 2 more at once
    _wait_idle(queue)
    queue.ahead()
    assert sampler.calls == [1, 2]
    assert len(queue.queued) == 3 and all(c.get("model") for c in queue.queued)


def test_with_no_trial_running_the_model_is_waited_for() -> None:
    sampler = GatedSampler(DIMS, OBJECTIVES, seed=0)
    queue = _queue(sampler, running=0)
    queue.ahead()
    threading.Timer(0.2, sampler.gate.set).start()
    got = queue(2)  # waits for the background one, then asks the model for the rest
    assert all(c.get("model") for c in got) and queue.cheap == 0
    assert sampler.calls == [1, 1]


def test_a_fast_sampler_is_never_asked_ahead_so_its_proposals_stay_in_order() -> None:
    sampler = UniformSampler(DIMS, OBJECTIVES, seed=0)
    queue = _queue(sampler, running=2)
    queue.ahead()
    assert queue._background is None
    assert queue(3) == sampler.propose(3, History())


def test_an_inline_executor_never_proposes_ahead() -> None:
    assert not _queue(GatedSampler(DIMS, OBJECTIVES, seed=0), running=1, ahead=False).ahead_enabled


def test_an_error_of_the_background_proposal_reaches_the_loop() -> None:
    class Broken(GatedSampler):
        def propose(self, n: int, history: History) -> list[Config]:
            raise RuntimeError("the GP fit diverged")

    queue = _queue(Broken(DIMS, OBJECTIVES, seed=0), running=1)
    queue.ahead()
    _wait_idle(queue)
    with pytest.raises(RuntimeError, match="diverged"):
        queue(1)



def test_a_configuration_handed_out_while_the_model_ran_is_not_queued_again() -> None:
    """A seed (the space's default) given by the cheap fallback while the model worked on the same history."""
    seed = {"x": 0.25, "y": 0.75}

    class SeedBoth(GatedSampler):
        def propose(self, n: int, history: History) -> list[Config]:
            assert self.gate.wait(10)
            return [dict(seed)]

        def cheap_propose(self, n: int, history: History) -> list[Config]:
            return [dict(seed)]

    sampler, started = SeedBoth(DIMS, OBJECTIVES, seed=0), []
    queue = ProposalQueue(sampler, lambda: History(pending=tuple(started), num_trials=len(started)),
                          running=lambda: 1, ahead=True)
    queue.ahead()  # the model starts from a history without the seed
    started += queue(1)  # meanwhile a worker frees: the cheap proposal is the seed, and it starts
    assert started == [seed]
    sampler.gate.set()
    _wait_idle(queue)
    queue.ahead()  # collects the model's proposal: the seed again, already running
    assert queue.queued == []


class SlowModel(UniformSampler):
    """Takes 0.6 s a proposal (a slow GP fit); cheap proposals are marked by y = 0.05."""

    slow = True

    def propose(self, n: int, history: History) -> list[Config]:
        threading.Event().wait(0.6)
        return super().propose(n, history)

    def cheap_propose(self, n: int, history: History) -> list[Config]:
        return [{**c, "y": 0.05} for c in UniformSampler.propose(self, n, history)]


def test_a_study_with_a_slow_model_runs_every_trial_and_uses_both_kinds_of_proposal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    definition = _study(store, "p", strategy="random")
    sampler = SlowModel(DIMS, OBJECTIVES, seed=1)

    def factory(propose: Any) -> Any:
        return make_scheduler("random", propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0)

    loop = StudyLoop(store=store, name="p", definition=definition, scheduler_factory=factory, sampler=sampler,
                     executor=LocalPoolExecutor(2), runner=WithOptions(echo_runner, {"sleep": 0.3}),
                     compile_config=lambda c: {"plan": {}}, budget=Budget(trials=8))
    summary = loop.run()
    assert summary.status is StudyStatus.COMPLETE
    trials = store.trials("p")
    assert len(trials) == 8 and all(t.status is TrialStatus.COMPLETE for t in trials)
    cheap = sum(t.config["y"] == 0.05 for t in trials)
    assert cheap == loop.queue.cheap and 0 < cheap < 8  # workers did not wait for the model, and it was used
    assert loop.queue._background is None  # no proposal left running after the study
