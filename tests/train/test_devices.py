"""`--devices` and the rule that shares a local pool's GPUs out (`train.resources.DevicePlan`).

No GPU exists where these run: device names are plain strings here, never handed to torch. The pool's side
(devices handed to trials, given back however a trial ends, the worker names) is in
tests/engine/test_executors.py.
"""

from __future__ import annotations

import threading

import pytest

from autopeft.errors import ConfigError
from autopeft.train.resources import DevicePlan, check_devices, cuda_count, default_devices, gpu_tag

GPUS = ("cuda:0", "cuda:1", "cuda:2", "cuda:3")
no_gpu = pytest.mark.skipif(cuda_count() > 0, reason="asserts what a machine without a CUDA GPU answers")


def test_each_trial_gets_the_least_busy_device() -> None:
    plan = DevicePlan(GPUS)
    assert [plan.acquire() for _ in range(4)] == list(GPUS)  # four trials: one per device
    assert [plan.acquire() for _ in range(4)] == list(GPUS)  # eight: two per device
    assert plan.busy() == dict.fromkeys(GPUS, 2)
    plan.release("cuda:2")
    assert plan.acquire() == "cuda:2"  # the one device with a free place, whatever the turn


def test_a_device_frees_when_its_trial_ends() -> None:
    plan = DevicePlan(GPUS[:2])
    first, second = plan.acquire(), plan.acquire()
    assert (first, second) == ("cuda:0", "cuda:1")
    plan.release(first)
    assert plan.busy() == {"cuda:0": 0, "cuda:1": 1}
    assert plan.acquire() == "cuda:0"


def test_equally_busy_devices_take_turns() -> None:
    """One trial at a time still goes round every device (round robin), not always to cuda:0."""
    plan = DevicePlan(GPUS[:3])
    seen = []
    for _ in range(6):
        device = plan.acquire()
        seen.append(device)
        plan.release(device)
    assert seen == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1", "cuda:2"]


def test_a_device_is_not_released_more_often_than_acquired() -> None:
    plan = DevicePlan(GPUS[:1])
    with pytest.raises(ValueError, match="released more often"):
        plan.release("cuda:0")
    with pytest.raises(ValueError, match="released more often"):
        plan.release("cuda:7")


def test_acquire_and_release_from_many_threads_keep_count() -> None:
    """Trials end on the pool's threads while the driver submits: the counts stay exact."""
    plan = DevicePlan(GPUS)

    def churn() -> None:
        for _ in range(500):
            plan.release(plan.acquire())

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert plan.busy() == dict.fromkeys(GPUS, 0)


@pytest.mark.parametrize("devices", [(), ("cpu",), ("cuda",), ("0",), ("cuda:0", "cuda:0")])
def test_a_plan_takes_distinct_cuda_n_names(devices: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        DevicePlan(devices)


def test_worker_names_show_the_gpu_as_ray_workers_do() -> None:
    assert gpu_tag("cuda:3") == ":gpu3"


@pytest.mark.parametrize(("text", "words"), [
    ("gpu0", ("'gpu0' is not a GPU", "accepted: GPU indices or cuda:N names")),
    ("0,,1", ("'' is not a GPU",)),
    ("cuda:1,1", ("cuda:1 is listed twice",)),
    ("-1", ("'-1' is not a GPU",)),
])
def test_devices_that_are_not_a_gpu_list_are_one_line(text: str, words: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        check_devices(text)
    message = str(caught.value)
    assert message.startswith("--devices: ") and "\n" not in message
    for word in words:
        assert word in message


@no_gpu
def test_a_gpu_torch_does_not_see_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match=r"^--devices: cuda:0, cuda:2 asked for, but torch sees no CUDA GPU here"):
        check_devices("0, cuda:2")


def test_devices_given_are_cuda_names() -> None:
    assert check_devices(None) is None
    count = cuda_count()
    if count == 0:
        pytest.skip("no CUDA GPU here: every index is refused (the test above)")
    assert check_devices(",".join(str(i) for i in range(count))) == tuple(f"cuda:{i}" for i in range(count))


@no_gpu
def test_without_several_gpus_nothing_is_shared_out() -> None:
    for device in ("auto", "cuda", "cpu", "cuda:0", None):
        assert default_devices(device) is None


def test_a_cpu_recipe_is_never_spread_over_gpus() -> None:
    assert default_devices("cpu") is None and default_devices("cuda:1") is None
