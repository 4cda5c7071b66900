"""Per-target concurrency: each target's slots, throttles, and a slow target against a real receiver."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from streams.runtime.egress import EgressGuard
from streams.sinks.webhooks.limiter import THROTTLE_COOLDOWN_S, TargetLimiter, target_key
from streams.sinks.webhooks.schedule import MAX_RETRY_AFTER_S
from tests.streams.sinks.webhooks.loopback import LOOPBACK, Receiver, deliver


def test_the_limiter_bounds_each_target_separately() -> None:
    limiter = TargetLimiter(2)
    assert [limiter.try_acquire("a:443") for _ in range(3)] == [True, True, False]
    assert limiter.try_acquire("b:443") and limiter.in_flight("a:443") == 2
    limiter.release("a:443")
    assert limiter.try_acquire("a:443")
    for _ in range(2):
        limiter.release("a:443")
    limiter.release("b:443")
    with pytest.raises(RuntimeError):
        limiter.release("a:443")
    with pytest.raises(ValueError):
        TargetLimiter(0)
    assert target_key("https://Hooks.Example.com/x") == "hooks.example.com:443"
    assert target_key("http://h.test:8080/") == "h.test:8080"


def test_a_throttled_target_takes_no_attempt_until_its_retry_after_or_cool_down_ends() -> None:
    now = [1000.0]
    limiter = TargetLimiter(2, clock=lambda: now[0])
    assert limiter.throttle("a:443", 2.0) == 2.0
    assert not limiter.try_acquire("a:443") and limiter.try_acquire("b:443")  # only that target waits
    assert limiter.closed() == {"a:443"}
    limiter.throttle("a:443", 0.5)  # a shorter answer does not cut the pause short
    now[0] += 1.99
    assert not limiter.try_acquire("a:443")
    now[0] += 0.01
    assert limiter.try_acquire("a:443") and limiter.closed() == set()
    assert limiter.try_acquire("a:443") and limiter.closed() == {"a:443"}  # full now, not throttled

    assert limiter.throttle("c:80", None) == THROTTLE_COOLDOWN_S  # no Retry-After: the cool-down
    now[0] += THROTTLE_COOLDOWN_S - 0.01
    assert not limiter.try_acquire("c:80")
    now[0] += 0.01
    assert limiter.try_acquire("c:80")
    assert limiter.throttle("d:80", 10 * MAX_RETRY_AFTER_S) == MAX_RETRY_AFTER_S  # capped like Retry-After
    assert limiter.throttle("e:80", -3.0) == 0.0 and limiter.try_acquire("e:80")


def test_a_slow_target_holds_only_its_own_slots(client: httpx2.Client) -> None:
    slow, fast = Receiver(), Receiver()
    try:
        slow.script.append((200, {}, 1.2))
        limiter = TargetLimiter(1)
        slow_url, fast_url = slow.url(host="localhost"), fast.url()
        guard = EgressGuard(allow_networks=LOOPBACK.allow_networks, resolver=lambda host, port: ["127.0.0.1"])
        with ThreadPoolExecutor(2) as pool:
            assert limiter.try_acquire(target_key(slow_url))
            pending = pool.submit(deliver, client, slow_url, guard=guard)
            while not slow.seen:
                time.sleep(0.01)
            assert not limiter.try_acquire(target_key(slow_url))  # a second one for it waits
            assert limiter.try_acquire(target_key(fast_url))
            started = time.monotonic()
            assert deliver(client, fast_url, guard=guard).delivered
            assert time.monotonic() - started < 1.0 and not pending.done()
            assert pending.result().delivered
    finally:
        slow.close()
        fast.close()


def test_the_limiter_is_safe_across_threads() -> None:
    limiter, peak, lock = TargetLimiter(3), [0], threading.Lock()

    def work() -> None:
        for _ in range(300):
            if limiter.try_acquire("h:80"):
                with lock:
                    peak[0] = max(peak[0], limiter.in_flight("h:80"))
                limiter.release("h:80")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak[0] <= 3 and limiter.in_flight("h:80") == 0
