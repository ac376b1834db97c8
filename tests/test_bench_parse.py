"""The benchmark's reading of wrk's output: the percentiles, never the "+/- Stdev" column, with or without the
trailing blank wrk leaves after a latency in seconds."""

from __future__ import annotations

import pytest

from .benchmarks.bench_http import parse_wrk

OUT = """Running 5s test @ http://127.0.0.1:51455/cds-services/her2-order-select
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   330.62ms  219.53ms   1.05s    88.89%
    Req/Sec     3.62      1.41     5.00     87.50%
  Latency Distribution
     50%  232.79ms
     75%  299.80ms
     90%  732.38ms
     99%    1.05s{trail}
  16 requests in 5.01s, 2.33MB read
  Non-2xx or 3xx responses: 2
Requests/sec:      3.19
Transfer/sec:    476.64KB
"""


@pytest.mark.parametrize("trail", ["", " ", "  "])
def test_percentiles_in_any_unit_with_or_without_a_trailing_blank(trail):
    got = parse_wrk(OUT.format(trail=trail))
    assert got == {"p50": 232.79, "p99": 1050.0, "rps": 3.19, "requests": 16, "errors": 2}


def test_no_distribution_is_an_error_not_a_stdev_read_as_a_percentile():
    with pytest.raises(RuntimeError, match="no latency distribution"):
        parse_wrk(OUT.format(trail="").replace("     50%  232.79ms\n", ""))
