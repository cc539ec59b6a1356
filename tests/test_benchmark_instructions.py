"""`python -m benchmarks.instructions`: instruction counts that other load cannot move.

Only what the tool promises is checked — the count is read from callgrind's summary, and one
operation's count is the same from run to run and does not depend on how many are measured —
never a figure of corrstack's, which changes with the code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.instructions import CONNECTIONS, _count, count_http, parse_collected, report


def test_the_count_is_read_from_callgrinds_summary() -> None:
    output = "==12== Events    : Ir\n==12== Collected : 2,360,137,843\n==12==\n==12== I refs: 1"
    assert parse_collected(output) == 2_360_137_843
    with pytest.raises(RuntimeError, match="no instruction count"):
        parse_collected("valgrind: command not found")


def test_the_report_sets_corrstacks_overhead_beside_each_peers() -> None:
    table = report(
        {"bare": 400_000, "corrstack": 550_000, "asgi_correlation_id": 700_000},
        {"stdlib": 100_000, "corrstack": 120_000},
    )
    assert "| corrstack | 550,000 | 150,000 | – |" in table
    assert "| asgi_correlation_id | 700,000 | 300,000 | 0.50 |" in table
    assert "| corrstack | 120,000 | 1.20 |" in table
    served = report({}, {}, {"bare": 900_000, "corrstack": 1_050_000, "starlette_exporter": 1.2e6})
    assert "over HTTP" in served and "| starlette_exporter | 1,200,000 | 300,000 | 0.50 |" in served


@pytest.mark.binary("valgrind")
def test_a_records_count_repeats_and_does_not_depend_on_how_many_are_counted() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:  # one valgrind per core, as the tool runs
        none, once, again, twice = pool.map(
            lambda records: _count("record", "stdlib", records), (0, 200, 200, 400)
        )
    per_record = (once - none) / 200
    assert per_record > 10_000  # a stdlib log call runs tens of thousands of instructions
    assert abs(once - again) / (once - none) < 0.01  # the same count, run after run
    assert abs((twice - none) / 400 - per_record) / per_record < 0.05


@pytest.mark.binary("valgrind")
def test_a_served_requests_count_is_the_servers_and_grows_with_the_requests() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:  # uvicorn under valgrind, a client outside
        none, some = pool.map(lambda requests: count_http("bare", requests), (0, 2 * CONNECTIONS))
    per_request = (some - none) / (2 * CONNECTIONS)
    # uvicorn and FastAPI serve a request in about a million instructions; the client's own,
    # outside valgrind, are not counted.
    assert 300_000 < per_request < 5_000_000
