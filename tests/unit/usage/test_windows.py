from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledgerflow.errors import ValidationError
from ledgerflow.usage.windows import (
    LateUsage,
    UsageState,
    WindowClosed,
    WindowConfig,
    add,
    advance,
    window_bounds,
)

S = 1_000_000
CONFIG = WindowConfig(size_micros=60 * S, lateness_micros=10 * S, retention_micros=600 * S)


def feed(state: UsageState, events: list[tuple[str, str, int, int | None, int]]) -> tuple[UsageState, list]:
    out: list = []
    for tenant, model, at, tokens, length in events:
        state, emitted = add(state, tenant, model, at, tokens, length)
        out.extend(emitted)
    return state, out


def test_window_bounds_are_epoch_aligned_and_end_exclusive() -> None:
    assert window_bounds(CONFIG, 0) == (0, 60 * S)
    assert window_bounds(CONFIG, 60 * S - 1) == (0, 60 * S)
    assert window_bounds(CONFIG, 60 * S) == (60 * S, 120 * S)
    assert window_bounds(CONFIG, -1) == (-60 * S, 0)


def test_window_closes_once_the_watermark_reaches_its_end() -> None:
    state = UsageState(CONFIG)
    state, out = feed(
        state, [("acme", "m", 5 * S, 10, 0), ("acme", "m", 59 * S, None, 9), ("acme", "m", 69 * S, 1, 0)]
    )
    assert out == []  # watermark = 69 - 10 = 59 s < 60 s
    state, out = add(state, "acme", "m", 70 * S, 1, 0)  # watermark = 60 s
    assert out == [WindowClosed("acme", "m", 0, 60 * S, tokens=13, events=2, estimated_tokens=3)]
    assert state.watermark == 60 * S
    assert ("acme", "m", 0) not in state.open and ("acme", "m", 0) in state.closed


def test_windows_are_kept_apart_per_tenant_and_model_and_closed_in_a_stable_order() -> None:
    state, _ = feed(
        UsageState(CONFIG), [("b", "m", 1 * S, 1, 0), ("a", "x", 2 * S, 2, 0), ("a", "m", 3 * S, 3, 0)]
    )
    state, out = advance(state, 60 * S)
    assert [(r.tenant, r.model, r.tokens) for r in out] == [("a", "m", 3), ("a", "x", 2), ("b", "m", 1)]


def test_event_within_lateness_still_lands_in_its_open_window() -> None:
    state, out = feed(UsageState(CONFIG), [("acme", "m", 65 * S, 1, 0), ("acme", "m", 58 * S, 4, 0)])
    assert out == []
    _, out = advance(state, 60 * S)
    assert out == [WindowClosed("acme", "m", 0, 60 * S, tokens=4, events=1, estimated_tokens=0)]


def test_too_late_event_emits_a_correction_with_the_new_full_totals() -> None:
    state, out = feed(UsageState(CONFIG), [("acme", "m", 10 * S, 5, 0), ("acme", "m", 75 * S, 1, 0)])
    assert [r.revision for r in out] == [0]
    state, out = add(state, "acme", "m", 30 * S, 7, 0)
    assert out == [
        WindowClosed(
            "acme", "m", 0, 60 * S, tokens=12, events=2, estimated_tokens=0, revision=1, correction=True
        )
    ]
    state, out = add(state, "acme", "m", 31 * S, None, 40)
    assert out == [
        WindowClosed(
            "acme", "m", 0, 60 * S, tokens=22, events=3, estimated_tokens=10, revision=2, correction=True
        )
    ]


def test_late_event_for_a_closed_window_that_never_had_data_starts_at_revision_zero() -> None:
    state, _ = add(UsageState(CONFIG), "acme", "m", 200 * S, 1, 0)
    state, out = add(state, "acme", "other", 10 * S, 3, 0)
    assert out == [WindowClosed("acme", "other", 0, 60 * S, 3, 1, 0, revision=0, correction=True)]
    _, out = add(state, "acme", "other", 11 * S, 3, 0)
    assert out[0].revision == 1 and out[0].tokens == 6


def test_event_past_retention_is_reported_as_a_late_usage_delta_and_state_stays_bounded() -> None:
    state, _ = add(UsageState(CONFIG), "acme", "m", 10 * S, 5, 0)
    state, _ = advance(state, 60 * S)
    assert ("acme", "m", 0) in state.closed
    state, _ = advance(state, 60 * S + 600 * S)  # window_end + retention
    assert state.closed == {} and state.next_prune_at is None
    state_after, out = add(state, "acme", "m", 20 * S, 2, 0)
    assert out == [LateUsage("acme", "m", 0, 60 * S, tokens=2, events=1, estimated_tokens=0)]
    assert state_after == state


def test_watermark_never_moves_backwards() -> None:
    state, _ = advance(UsageState(CONFIG), 500 * S)
    same, out = advance(state, 100 * S)
    assert same == state and out == []
    state, _ = add(state, "acme", "m", 505 * S, 1, 0)  # 505 - 10 < 500
    assert state.watermark == 500 * S


def test_add_does_not_mutate_the_state_it_was_given() -> None:
    before = UsageState(CONFIG)
    after, _ = add(before, "acme", "m", 1 * S, 1, 0)
    assert before.open == {} and after.open != {}
    closed, _ = advance(after, 60 * S)
    assert after.open != {} and after.closed == {} and closed.closed != {}


def test_negative_token_count_is_refused() -> None:
    with pytest.raises(ValidationError, match="token count must be >= 0"):
        add(UsageState(CONFIG), "acme", "m", 0, -1, 0)


@pytest.mark.parametrize("kwargs", [{"size_micros": 0}, {"lateness_micros": -1}, {"retention_micros": -1}])
def test_invalid_window_config_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        WindowConfig(**kwargs)


# --- properties ----------------------------------------------------------------------

usage_event = st.tuples(
    st.sampled_from(["acme", "globex"]),
    st.sampled_from(["m1", "m2"]),
    st.integers(min_value=0, max_value=400 * S),
    st.one_of(st.none(), st.integers(min_value=0, max_value=1000)),
    st.integers(min_value=0, max_value=200),
)


def expected_sums(events: list, config: WindowConfig) -> Counter:
    """(tenant, model, window_start, "tokens" | "events") -> total, from the inputs."""
    sums: Counter = Counter()
    for tenant, model, at, tokens, length in events:
        start, _ = window_bounds(config, at)
        sums[(tenant, model, start, "tokens")] += tokens if tokens is not None else max(1, -(-length // 4))
        sums[(tenant, model, start, "events")] += 1
    return +sums


def final_sums(out: list) -> Counter:
    """The same totals from the output: latest revision per window plus every LateUsage delta."""
    latest: dict = {}
    sums: Counter = Counter()
    for record in out:
        key = (record.tenant, record.model, record.window_start)
        if isinstance(record, LateUsage):
            sums[(*key, "tokens")] += record.tokens
            sums[(*key, "events")] += record.events
        else:
            assert record.revision == latest.get(key, (-1,))[0] + 1, "revisions must count up by one"
            latest[key] = (record.revision, record.tokens, record.events)
    for key, (_, tokens, count) in latest.items():
        sums[(*key, "tokens")] += tokens
        sums[(*key, "events")] += count
    return +sums


@settings(max_examples=100, deadline=None)
@given(st.lists(usage_event, max_size=40))
def test_in_order_events_sum_exactly_into_their_windows_without_corrections(events: list) -> None:
    events = sorted(events, key=lambda e: e[2])
    state, out = feed(UsageState(CONFIG), events)
    state, tail = advance(state, 10**15)
    out += tail
    assert all(isinstance(r, WindowClosed) and not r.correction for r in out)
    assert len({(r.tenant, r.model, r.window_start) for r in out}) == len(out)
    assert final_sums(out) == expected_sums(events, CONFIG)
    assert state.open == {}


near_boundaries = st.tuples(
    st.sampled_from(["acme", "globex"]),
    st.sampled_from(["m1", "m2"]),
    st.integers(min_value=50 * S, max_value=130 * S),
    st.one_of(st.none(), st.integers(min_value=0, max_value=1000)),
    st.integers(min_value=0, max_value=200),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(near_boundaries, st.integers(min_value=0, max_value=10 * S)), max_size=40))
@example([(("acme", "m1", 59 * S, 1, 0), 10 * S), (("acme", "m1", 61 * S, 1, 0), 0)])
def test_events_shuffled_within_the_lateness_sum_exactly_without_corrections(jittered: list) -> None:
    # Arrival order = event time + a delay of at most the allowed lateness.
    arrival = [event for event, _ in sorted(jittered, key=lambda pair: pair[0][2] + pair[1])]
    state, out = feed(UsageState(CONFIG), arrival)
    _, tail = advance(state, 10**15)
    out += tail
    assert all(isinstance(r, WindowClosed) and not r.correction for r in out)
    assert final_sums(out) == expected_sums(arrival, CONFIG)


@settings(max_examples=100, deadline=None)
@given(st.lists(usage_event, max_size=40), st.integers(min_value=0, max_value=300 * S))
def test_any_arrival_order_is_fully_accounted_by_revisions_and_late_deltas(
    events: list, retention: int
) -> None:
    config = WindowConfig(size_micros=60 * S, lateness_micros=10 * S, retention_micros=retention)
    state, out = feed(UsageState(config), events)
    state, tail = advance(state, 10**15)
    out += tail
    assert final_sums(out) == expected_sums(events, config)
    assert state.open == {} and state.closed == {}


def test_reconcile_closes_what_was_written_and_corrects_what_was_counted_since() -> None:
    from ledgerflow.usage.windows import WindowClosed, reconcile

    config = WindowConfig(size_micros=60, lateness_micros=10, retention_micros=600)
    state, _ = add(UsageState(config=config), "acme", "m", 5, 10, 0)  # open [0, 60): 10 tokens
    written = {("acme", "m", 0): WindowClosed("acme", "m", 0, 60, 10, 1, 0, 0, False)}
    same, emitted = reconcile(state, written)
    assert emitted == [] and same.open == {} and same.closed[("acme", "m", 0)].revision == 0
    assert same.watermark is not None and same.watermark >= 60
    more, _ = add(state, "acme", "m", 20, 5, 0)  # counted since: 15 tokens, the log says 10
    fixed, emitted = reconcile(more, written)
    assert fixed.closed[("acme", "m", 0)].totals.tokens == 15
    assert [(e.revision, e.tokens, e.correction) for e in emitted] == [(1, 15, True)]
    assert reconcile(state, {}) == (state, [])


def test_reconcile_writes_what_the_refold_closed_and_forgets_by_the_live_retention() -> None:
    """The re-fold forgets nothing (``refold_config``) and its records are dropped: a window it closed
    that nothing was written for is written by ``reconcile`` at revision 0 with its totals; one
    written at revision 2 with the same totals stays at 2 and is written again; then the live
    config's retention applies."""
    from ledgerflow.usage.windows import WindowClosed, reconcile, refold_config

    live = WindowConfig(size_micros=60, lateness_micros=10, retention_micros=600)
    state = UsageState(config=refold_config(live))
    for at, tokens in [(5, 10), (65, 4), (2000, 1)]:  # [0, 60) and [60, 120) closed, never forgotten
        state, _ = add(state, "acme", "m", at, tokens, 0)
    assert set(state.closed) == {("acme", "m", 0), ("acme", "m", 60)}
    written = {("acme", "m", 60): WindowClosed("acme", "m", 60, 120, 4, 1, 0, 2, True)}
    done, emitted = reconcile(state, written, live)
    assert [(e.window_start, e.tokens, e.revision, e.correction) for e in emitted] == [(0, 10, 0, False)]
    assert done.config == live and done.closed == {}, "both past the live retention at watermark 1990"
    kept, _ = reconcile(state, written, dataclasses.replace(live, retention_micros=10**6))
    assert {key: (c.totals.tokens, c.revision) for key, c in kept.closed.items()} == {
        ("acme", "m", 0): (10, 0),
        ("acme", "m", 60): (4, 2),
    }
