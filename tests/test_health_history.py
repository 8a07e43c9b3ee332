"""GET /health/history and the history behind it: 10-second samples for an hour, minutes
for a day, hours for a year, kept in the admin tree across restarts."""

from __future__ import annotations

import json
import os
import time

import pytest
import pytest_twisted
from hypothesis import given, settings, strategies as st
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from conftest import json_of
from jidoteki_admin.formats.healthhistory import FIELDS, FINE, HOUR, MINUTE, HealthHistory, rate
from jidoteki_admin.sections.information import HistorySampler

START = 1_700_000_000 - 1_700_000_000 % 3600  # on the hour


def sample(t, load=1.0, cpu=10, memory=20, disk=30, rx=100, tx=50):
    return (t, load, cpu, memory, disk, rx, tx)


def fed(seconds: int, start: int = START, value=lambda t: (t - START) % 600) -> HealthHistory:
    history = HealthHistory()
    for t in range(start, start + seconds, 10):
        history.add(sample(t, cpu=value(t)))
    return history


# The tiers


def test_an_hour_of_samples_is_kept_every_ten_seconds_and_rolled_into_minutes():
    history = fed(3600 + 10)
    fine, minutes = history.tiers[FINE.name], history.tiers[MINUTE.name]
    assert len(fine) == 360 and fine[-1][0] == START + 3600
    assert [m[0] for m in minutes] == [START + 60 * i for i in range(60)]
    first_minute = [(t - START) % 600 for t in range(START, START + 60, 10)]
    assert minutes[0][2] == round(sum(first_minute) / 6)
    assert list(history.tiers[HOUR.name]) == []  # the hour is complete once the next one has a minute


def test_an_hour_is_the_mean_of_its_minutes():
    history = fed(2 * 3600 + 70)
    hours, minutes = history.tiers[HOUR.name], history.tiers[MINUTE.name]
    assert [h[0] for h in hours] == [START, START + 3600]  # the second is complete at 2:01
    for hour in hours:
        inside = [m[2] for m in minutes if hour[0] <= m[0] < hour[0] + 3600]
        assert len(inside) == 60
        assert hour[2] == round(sum(inside) / 60)


def test_tiers_keep_an_hour_a_day_and_a_year():
    assert FINE.seconds * FINE.keep == 3600
    assert MINUTE.seconds * MINUTE.keep == 86400
    assert HOUR.seconds * HOUR.keep == 365 * 86400


def test_unknown_figures_are_left_out_of_the_means_and_a_minute_of_none_stays_none():
    history = HealthHistory()
    for i, t in enumerate(range(START, START + 70, 10)):
        history.add((t, None, 10 * i, 20, 30, None, None))
    minute = history.tiers[MINUTE.name][0]
    assert minute == (START, None, 25, 20, 30, None, None)


def test_a_clock_that_goes_back_does_not_disorder_the_series():
    history = fed(120)
    assert history.add(sample(START + 5)) is False
    times = [s[0] for s in history.tiers[FINE.name]]
    assert times == sorted(times) and START + 5 not in times


def test_ranges_answer_their_tier_within_their_span():
    history = fed(2 * 3600 + 70)
    now = START + 2 * 3600 + 60
    hour = history.answer("hour", now)
    assert all(s["time"] >= now - 3600 for s in hour) and len(hour) == 360
    assert set(hour[0]) == set(FIELDS)
    assert [s["time"] for s in history.answer("day", now)][:2] == [START, START + 60]
    assert [s["time"] for s in history.answer("year", now)] == [START, START + 3600]
    assert history.answer("week", now + 8 * 86400) == []


@settings(max_examples=40, deadline=None)
@given(split=st.integers(min_value=1, max_value=800), values=st.lists(st.integers(0, 100), min_size=800, max_size=800))
def test_a_history_saved_and_read_back_goes_on_as_if_never_interrupted(split, values):
    whole, first = HealthHistory(), HealthHistory()
    samples = [sample(START + 10 * i, cpu=v, load=v / 7) for i, v in enumerate(values)]
    for s in samples:
        whole.add(s)
    for s in samples[:split]:
        first.add(s)
    resumed = HealthHistory.loads(first.dumps())
    for s in samples[split:]:
        resumed.add(s)
    assert {k: list(v) for k, v in resumed.tiers.items()} == {k: list(v) for k, v in whole.tiers.items()}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=40)


@given(tiers=st.dictionaries(st.sampled_from(["10s", "1m", "1h", "x"]), JSON_VALUES, max_size=3) | JSON_VALUES)
def test_a_damaged_file_is_refused_or_read_whole_never_half_read(tiers):
    data = json.dumps({"format": 1, "fields": list(FIELDS), "tiers": tiers}).encode()
    try:
        history = HealthHistory.loads(data)
    except ValueError:
        return
    for samples in history.tiers.values():
        times = [s[0] for s in samples]
        assert times == sorted(set(times))
        assert all(len(s) == len(FIELDS) for s in samples)


@pytest.mark.parametrize("damaged", [
    {"format": 1, "fields": list(FIELDS), "tiers": {"10s": [[1, 2, 3, 4, 5, 6]]}},
    {"format": 1, "fields": list(FIELDS), "tiers": {"10s": [[2, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]}},
    {"format": 1, "fields": list(FIELDS), "tiers": {"10s": [[1, True, 1, 1, 1, 1, 1]]}},
    {"format": 1, "fields": list(FIELDS), "tiers": {"10s": [[None, 1, 1, 1, 1, 1, 1]]}},
    {"format": 2, "fields": list(FIELDS), "tiers": {}},
])
def test_damaged_files_are_refused(damaged):
    with pytest.raises(ValueError):
        HealthHistory.loads(json.dumps(damaged).encode())


def test_traffic_is_a_rate_and_a_counter_reset_is_unknown():
    assert rate(None, (100, 100), 10) == (None, None)
    assert rate((100, 200), (1100, 400), 10) == (100, 20)
    assert rate((1000, 200), (10, 400), 10) == (None, None)


# The sampler


class Figures:
    def __init__(self):
        self.counters = (0, 0)

    def __call__(self):
        self.counters = (self.counters[0] + 5000, self.counters[1] + 1000)
        return 0.5, 40, 60, self.counters


def test_the_sampler_records_rates_and_saves_each_minute_and_when_stopped(tmp_path):
    clock, path, writes = Clock(), tmp_path / "health-history.json", []
    clock.advance(START)

    def write(p, data):
        writes.append(data)
        return succeed(None)

    sampler = HistorySampler(clock, path, read=Figures(), write=write)
    sampler.startService()
    for _ in range(13):
        clock.advance(10)
        sampler.record(12.4)
    fine = list(sampler.history.tiers[FINE.name])
    assert fine[0][5:] == (None, None) and fine[1] == (START + 20, 0.5, 12, 40, 60, 500, 100)
    assert len(writes) == 2  # two minutes complete
    sampler.stopService()
    again = HistorySampler(clock, path, read=Figures(), write=write)
    again.startService()
    assert list(again.history.tiers[FINE.name]) == fine


def test_an_unreadable_history_file_starts_afresh(tmp_path):
    path = tmp_path / "health-history.json"
    path.write_text("{not json")
    sampler = HistorySampler(Clock(), path, read=Figures())
    sampler.startService()
    assert all(not tier for tier in sampler.history.tiers.values())
    sampler.stopService()
    assert HealthHistory.loads(path.read_bytes())  # replaced by a good one


# The endpoint


def history_of(daemon) -> HistorySampler:
    return next(s for s in daemon.service if isinstance(s, HistorySampler))


@pytest_twisted.ensureDeferred
async def test_the_history_is_served_by_range(memory_daemon):
    history = history_of(memory_daemon)
    now = int(history.clock.seconds())
    for t in range(now - 7200, now, 10):
        history.history.add(sample(t))
    answer = await json_of(await memory_daemon.get("/health/history"))
    assert answer["range"] == "hour" and answer["interval"] == 10 and answer["cores"] >= 1
    assert 355 <= len(answer["samples"]) <= 360
    assert answer["samples"][-1] == dict(zip(FIELDS, sample(now - 10)))
    day = await json_of(await memory_daemon.get("/health/history", range="day"))
    assert day["interval"] == 60 and len(day["samples"]) >= 118
    year = await json_of(await memory_daemon.get("/health/history", range="year"))
    assert year["interval"] == 3600 and 1 <= len(year["samples"]) <= 2


@pytest_twisted.ensureDeferred
async def test_an_unknown_range_is_refused_and_the_history_needs_authentication(memory_daemon):
    response = await memory_daemon.get("/health/history", range="decade")
    assert response.code == 400
    assert response.headers.getRawHeaders("Error-Message") == [
        "Unknown range: decade. Allowed: hour, day, week, month, year"]
    response = await memory_daemon.get("/health/history", auth=None)
    assert response.code == 403


@pytest_twisted.ensureDeferred
async def test_a_restart_loses_nothing(make_memory_daemon):
    first = make_memory_daemon()
    now = int(history_of(first).clock.seconds())
    for t in range(now - 600, now, 10):
        history_of(first).history.add(sample(t, cpu=77))
    before = await json_of(await first.get("/health/history"))
    await first.service.stopService()  # one daemon per tree at a time
    assert (first.admin_path / "etc" / "health-history.json").exists()
    second = make_memory_daemon()
    after = await json_of(await second.get("/health/history"))
    assert after["samples"][:len(before["samples"])] == before["samples"]


def test_a_daemon_killed_while_saving_leaves_nothing_behind_at_the_next_start(make_memory_daemon, tmp_path):
    etc = tmp_path / "admin" / "etc"
    etc.mkdir(parents=True)
    (etc / ".health-history.json.ab12cd34").write_bytes(b'{"format":1,')  # half written
    os.utime(etc / ".health-history.json.ab12cd34", (time.time() - 120, time.time() - 120))  # and left
    make_memory_daemon()
    assert not (etc / ".health-history.json.ab12cd34").exists()
