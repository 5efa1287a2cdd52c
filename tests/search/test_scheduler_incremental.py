"""`MultiObjectiveHyperband.restore` after a budget ran out: the stopped trials are promotable again (issue 16).

At the end of a budget the loop marks every trial still paused at a rung `pruned`. A study resumed with a
larger budget restores its scheduler from those rows; the pruned trials must rejoin their rungs as
candidates, so the promotion rule moves them on before new trials start wherever a rung has room.
"""

from __future__ import annotations

from typing import Any

from autopeft.search import MultiObjectiveHyperband, ParetoRanking, RestoredTrial, SuggestionKind
from autopeft.search.rungs import rung_levels
from autopeft.status import TrialStatus
from tests.search.test_scheduler import MAX_F, TWO, synthetic
from tests.search.test_scheduler_restore import CONFIGS, Recorder, from_list

LEVELS = rung_levels(1, MAX_F, 3)  # [1, 3, 9, 27]


def _hyperband(start: int, assignment: str = "hyperband") -> MultiObjectiveHyperband:
    return MultiObjectiveHyperband(propose=from_list(start), objectives=TWO, min_fidelity=1, max_fidelity=MAX_F,
                                   eta=3, bracket_assignment=assignment, seed=0)


def _budget_ran_out(recorder: Recorder) -> list[RestoredTrial]:
    """The stored trials after the loop's end of budget: paused ones are pruned."""
    return [RestoredTrial(t.trial_id, t.config, TrialStatus.PRUNED if t.status is TrialStatus.PAUSED else t.status,
                          t.bracket, t.results) for t in recorder.stored()]


def test_a_scheduler_restored_after_its_budget_ran_out_continues_like_the_original() -> None:
    """Pruned trials and the sampled bracket draws carry over: the restored scheduler decides as one never stopped."""
    original = Recorder(_hyperband(0))
    for i in range(40):
        original.step(fail=i == 7)
    stored = _budget_ran_out(original)
    assert any(t.status is TrialStatus.PRUNED for t in stored)

    restored = _hyperband(len(original.configs))
    assert restored.restore(stored) == []
    assert restored._rungs == original.scheduler._rungs  # type: ignore[attr-defined]
    twin = Recorder(restored)
    pruned = {t.trial_id for t in stored if t.status is TrialStatus.PRUNED}
    resumed: set[int] = set()
    for _ in range(60):
        a, b = original.step(), twin.step()
        assert a is not None and b is not None
        assert (a.trial_id, a.kind, a.fidelity, a.bracket, a.resume_from, a.config) == \
            (b.trial_id, b.kind, b.fidelity, b.bracket, b.resume_from, b.config)
        if b.kind is SuggestionKind.RESUME:
            resumed.add(b.trial_id)
    assert resumed & pruned  # not vacuous: trials the budget had stopped were promoted later


def _at_rung(trial_id: int, config: dict[str, Any], status: TrialStatus) -> RestoredTrial:
    return RestoredTrial(trial_id, config, status, 0, ((LEVELS[0], synthetic(config, LEVELS[0])),))


def test_stopped_trials_in_their_rungs_quota_are_promoted_before_new_trials_start() -> None:
    """Six results at rung 0 of bracket 0, none promoted: the quota (2) goes to the best two, then new trials."""
    configs = [dict(c) for c in CONFIGS[:6]]
    statuses = [TrialStatus.PRUNED] * 5 + [TrialStatus.PAUSED]  # pruned at an earlier budget's end, or paused
    scheduler = _hyperband(6, assignment="round_robin")
    assert scheduler.restore([_at_rung(i, c, s) for i, (c, s) in enumerate(zip(configs, statuses, strict=True))]) == []

    best = ParetoRanking(TWO).top(2, [synthetic(c, LEVELS[0]) for c in configs])
    first, second, third = scheduler.suggest(), scheduler.suggest(), scheduler.suggest()
    assert first is not None and second is not None and third is not None
    assert [(s.kind, s.trial_id, s.fidelity, s.resume_from, s.rung) for s in (first, second)] == [
        (SuggestionKind.RESUME, tid, LEVELS[1], LEVELS[0], 1) for tid in best]
    assert first.config == configs[best[0]]
    assert third.kind is SuggestionKind.START and third.trial_id == 6 and third.config == CONFIGS[6]


def test_complete_and_failed_trials_stay_finished() -> None:
    """Only pruned (and paused) trials come back: a complete or failed trial at a rung is never promoted."""
    configs = [dict(c) for c in CONFIGS[:3]]
    statuses = [TrialStatus.FAILED, TrialStatus.PRUNED, TrialStatus.PRUNED]
    best = ParetoRanking(TWO).top(1, [synthetic(c, LEVELS[0]) for c in configs])[0]
    statuses[best] = TrialStatus.FAILED
    scheduler = _hyperband(3, assignment="round_robin")
    scheduler.restore([_at_rung(i, c, s) for i, (c, s) in enumerate(zip(configs, statuses, strict=True))])
    nxt = scheduler.suggest()
    assert nxt is not None and nxt.kind is SuggestionKind.START  # the quota's one place is the failed trial's
