"""The garbage collector is held while a broadcast is delivered, and collects once after it."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from esmd.metrics import Metrics
from esmd.services.collector import CollectorHold
from esmd.services.wake import Notifier


class _Cycle:
    """Garbage only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def _cyclic_garbage() -> weakref.ref[_Cycle]:
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    del cycle
    return ref


def test_a_hold_keeps_cycles_until_the_release_collects_them() -> None:
    hold = CollectorHold()
    hold.hold()
    assert not gc.isenabled() and hold.holding and hold.holds == 1
    ref = _cyclic_garbage()
    for _ in range(3):
        [object() for _ in range(10_000)]  # allocations that would have set off collections
    assert ref() is not None  # nothing collected while held
    hold.release()
    assert gc.isenabled() and not hold.holding
    assert ref() is None  # the release collected


def test_a_hold_ends_after_its_longest_time_and_leaves_an_off_collector_alone() -> None:
    hold = CollectorHold(longest_s=0.05)
    hold.hold()
    time.sleep(0.06)
    hold.hold()  # still delivering, but held long enough
    assert gc.isenabled() and not hold.holding
    hold.hold()  # not again until the queue was empty once
    assert gc.isenabled() and hold.holds == 1
    hold.release()
    gc.disable()  # someone else turned it off: a hold must not turn it back on
    hold.hold()
    hold.release()
    assert not gc.isenabled() and hold.holds == 1


def test_settle_releases_later_unless_another_broadcast_holds_first() -> None:
    async def scenario() -> None:
        hold = CollectorHold()
        hold.hold()
        hold.settle(0.05)
        assert hold.settling
        hold.hold()  # a second broadcast: the release is called off
        assert not hold.settling and not gc.isenabled()
        await asyncio.sleep(0.1)
        assert not gc.isenabled()
        hold.settle(0.05)
        await asyncio.sleep(0.1)
        assert gc.isenabled() and not hold.holding and hold.holds == 1

    asyncio.run(scenario())


def test_a_broadcast_is_delivered_with_the_collector_held_and_news_for_one_is_not() -> None:
    async def scenario() -> None:
        notifier = Notifier(Metrics(), wake_rate=100_000.0)
        notifier.settle_s = 0.05
        notifier.start(1)
        enabled: list[bool] = []

        async def one(n: int) -> None:
            wake = await notifier.wait(f"agent-{n}", 1, 10)
            assert wake is not None and wake.policy_version == 2
            enabled.append(gc.isenabled())

        tasks = [asyncio.create_task(one(n)) for n in range(300)]
        await asyncio.sleep(0.05)
        notifier.policy_moved(2)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert enabled == [False] * 300  # every reply went out with the collector held
        assert notifier.collector.holds == 1
        await asyncio.sleep(0.2)  # the settle time passed: one collection, then back on
        assert gc.isenabled() and not notifier.collector.holding

        single = asyncio.create_task(notifier.wait("agent-x", 2, 10))
        await asyncio.sleep(0.02)
        notifier.agents_notified(["agent-x"])
        wake = await asyncio.wait_for(single, 5)
        assert wake is not None and wake.reason == "pending"
        assert notifier.collector.holds == 1 and gc.isenabled()
        await notifier.stop()

    asyncio.run(scenario())
