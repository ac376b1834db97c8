"""The control of tests/test_slow_clients.py, run by hand on a quiet machine (not collected by the suite):

    .venv/bin/python -m pytest tests/benchmarks/slow_clients_control.py -s

the same slow connections against `serve --workers 2` alone, without nginx, starve it: legitimate calls time
out. That is the attack the shipped nginx stops (the suite's test). On a busy machine gunicorn sometimes frees
its threads before the next call, so how many calls starve is the machine's as much as gunicorn's."""

from __future__ import annotations

from ..test_slow_clients import Trickler, _legitimate, proxy, service  # noqa: F401 - the suite's fixtures


def test_slow_clients_starve_gunicorn_alone(service, make_token):  # noqa: F811 - the fixture imported above
    assert [s for s, _ in _legitimate(service, make_token, 3, 5)] == [200] * 3  # a healthy start
    with Trickler(service):
        direct = _legitimate(service, make_token, 4, 2.5)
    print(f"gunicorn alone: {direct}")
    assert sum(s == 0 for s, _ in direct) >= 3, f"the attack did not starve gunicorn alone: {direct}"
