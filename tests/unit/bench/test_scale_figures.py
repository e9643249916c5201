"""The scale-out figures' arithmetic (bench/scalefigures.py) and their report (bench/scalereport.py)."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest

from ledgerflow.bench.scalefigures import Trial, ceiling, markdown, project, replication_cost, rows
from ledgerflow.bench.scalereport import BEGIN, END, block, replace_block


def _trial(
    brokers: int, workers: int, events: int, seconds: float, worker_cpu: float, broker_cpu: float
) -> Trial:
    return Trial(brokers, workers, events, seconds, worker_cpu, broker_cpu, 0.5, 3.0)


TRIALS = [
    _trial(1, 1, 10_000, 10.0, 6.0, 2.0),  # 1,000/s; 600 µs worker, 200 µs broker, 50 µs Redis
    _trial(1, 1, 10_000, 8.0, 6.4, 2.2),  # 1,250/s
    _trial(1, 1, 10_000, 12.5, 5.6, 1.8),  # 800/s
    _trial(1, 2, 10_000, 6.25, 7.0, 2.0),  # 1,600/s
    _trial(3, 1, 10_000, 12.5, 6.0, 5.0),  # 800/s; broker 500 µs
    _trial(3, 2, 10_000, 10.0, 7.0, 5.0),  # 1,000/s
]


def test_rows_are_medians_per_cell_with_the_speedup_over_the_same_clusters_one_worker() -> None:
    table = rows(TRIALS)
    assert [(r.brokers, r.workers, r.rounds) for r in table] == [(1, 1, 3), (1, 2, 1), (3, 1, 1), (3, 2, 1)]
    one = table[0]
    assert one.rate == 1_000 and one.worker_us == 600 and one.broker_us == 200 and one.redis_us == 50
    assert one.speedup == 1.0 and table[1].speedup == pytest.approx(1.6)
    assert table[3].speedup == pytest.approx(1_000 / 800)  # against three brokers' one worker, not one's
    assert one.total_us == 850


def test_a_cluster_without_a_one_worker_row_has_no_speedup() -> None:
    [row] = rows([_trial(1, 2, 100, 1.0, 0.1, 0.1)])
    assert math.isnan(row.speedup)


def test_the_ceiling_is_the_cores_divided_by_the_cpu_every_event_costs() -> None:
    one = rows(TRIALS)[0]
    assert ceiling(2, one) == pytest.approx(2e6 / 850)


def test_the_projection_is_linear_in_worker_cores_and_scales_brokers_and_redis_with_the_rate() -> None:
    one = rows(TRIALS)[0]
    [two, eight] = project(one, (2, 8))
    assert two.rate == pytest.approx(2e6 / 600) and eight.rate == pytest.approx(4 * two.rate)
    assert eight.broker_cores == pytest.approx(eight.rate * 200 / 1e6)
    assert eight.redis_cores == pytest.approx(eight.rate * 50 / 1e6)


def test_replication_cost_compares_one_worker_rows_and_needs_both_clusters() -> None:
    assert replication_cost(rows(TRIALS)) == pytest.approx(500 / 200)
    assert replication_cost(rows(TRIALS[:4])) is None


def test_zero_events_or_seconds_do_not_divide_by_zero() -> None:
    empty = _trial(1, 1, 0, 0.0, 1.0, 1.0)
    assert empty.rate == 0.0 and empty.per_event_us(1.0) == 0.0


def test_the_report_names_its_command_machine_and_load_and_has_a_row_per_cell() -> None:
    text = markdown(
        rows(TRIALS),
        command="ledgerflow bench --scale --runs 3",
        machine="AMD EPYC",
        cores=2,
        load=[1.5, 2, 3],
        when="now",
    )
    assert (
        "`ledgerflow bench --scale --runs 3`" in text
        and "AMD EPYC, 2 cores" in text
        and "1.50, 2.00, 3.00" in text
    )
    assert "| 1 | 1 | 1,000 | 1.00 | 600 | 200 | 50 | 2,353 | 3.0 |" in text
    assert "three brokers (RF 3) ÷ one broker (RF 1): 2.50×" in text
    assert "Projection from the 3-broker, one-worker row" in text and "| 32 |" in text


def test_the_docs_block_is_replaced_between_its_markers_and_appended_when_absent() -> None:
    doc = {
        "command": "ledgerflow bench --scale --runs 1",
        "started_at": 0,
        "machine": {"cpu": "X", "memory_gib": 8, "cores": 2, "load_average_at_start": [1, 1, 1]},
        "trials": [asdict(t) for t in TRIALS],
    }
    generated = block(doc)
    page = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    assert replace_block(page, generated) == f"intro\n{BEGIN}\n{generated}\n{END}\noutro\n"
    assert replace_block("intro\n", generated) == f"intro\n\n{BEGIN}\n{generated}\n{END}\n"
