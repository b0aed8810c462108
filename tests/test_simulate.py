from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from viraltrend.events import EVENT_TYPES
from viraltrend.simulate import Scenario, SimulationResult, _hawkes_counts, simulate

SMALL = Scenario(n_events=50_000, duration_s=6 * 3600.0, seed=11)  # 2.3 events/s, the default has 11.6
TEN_MIN_MS = 600_000

_ID_PATTERNS = {
    "event_id": re.compile(r"e-\d+"),
    "product_id": re.compile(r"p-\d{6}"),
    "user_id": re.compile(r"u-\d+"),
    "seller_id": re.compile(r"s-\d+"),
    "category": re.compile(r"c-\d+"),
}


def contract_problem(line: str, scenario: Scenario) -> str | None:
    """Why ``line`` breaks the event contract (or the simulator's promises), None if it is fine."""
    try:
        event = json.loads(line)
    except ValueError:
        return "bad_json"
    if not isinstance(event, dict):
        return "not_object"
    quantity = event.get("type") in ("add_to_cart", "purchase")
    expected = {"event_id", "ts", "type", "product_id", "user_id", "seller_id", "category", "price"}
    if set(event) != expected | ({"quantity"} if quantity else set()):
        return f"keys {sorted(event)}"
    ts = event["ts"]
    end_ms = scenario.start_ts_ms + scenario.duration_s * 1000
    if not isinstance(ts, int) or isinstance(ts, bool) or not scenario.start_ts_ms <= ts < end_ms:
        return f"ts {ts!r}"
    if event["type"] not in EVENT_TYPES:
        return f"type {event['type']!r}"
    for key, pattern in _ID_PATTERNS.items():
        if not isinstance(event[key], str) or not pattern.fullmatch(event[key]):
            return f"{key} {event[key]!r}"
    price = event["price"]
    if not isinstance(price, int | float) or not 0 <= price == round(price, 2) < math.inf:
        return f"price {price!r}"
    if quantity and event["quantity"] != 1:
        return f"quantity {event['quantity']!r}"
    return None


def read_events(result: SimulationResult) -> list[dict]:
    return [json.loads(line) for line in result.events_path.read_text().splitlines()]


def columns(events: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and product ids as arrays."""
    return np.array([e["ts"] for e in events]), np.array([e["product_id"] for e in events])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, list[dict]]:
    result = simulate(SMALL, tmp_path_factory.mktemp("small"))
    return result, read_events(result)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = simulate(SMALL, tmp_path / "a")
    b = simulate(SMALL, tmp_path / "b")
    assert a.events_path.read_bytes() == b.events_path.read_bytes()
    assert a.truth_path.read_bytes() == b.truth_path.read_bytes()


def test_different_seed_gives_different_events(tmp_path: Path, small) -> None:
    other = simulate(dataclasses.replace(SMALL, seed=SMALL.seed + 1), tmp_path)
    assert other.events_path.read_bytes() != small[0].events_path.read_bytes()


def test_line_count_equals_n_events(small) -> None:
    result, events = small
    assert len(events) == result.n_lines == SMALL.n_events == result.truth["n_lines"]


def test_every_line_meets_the_contract(small) -> None:
    result, _ = small
    lines = result.events_path.read_text().splitlines()
    problems = Counter(contract_problem(line, SMALL) for line in lines)
    assert problems == {None: len(lines)}


def test_event_ids_are_unique_and_product_attributes_constant(small) -> None:
    _, events = small
    assert len({e["event_id"] for e in events}) == len(events)
    attrs = {(e["product_id"], e["seller_id"], e["category"], e["price"]) for e in events}
    assert len(attrs) == len({e["product_id"] for e in events})


def test_event_type_shares_are_realistic(small) -> None:
    _, events = small
    share = Counter(e["type"] for e in events)
    assert 0.70 < share["view"] / len(events) < 0.85
    assert share["view"] > share["like"] > share["comment"]
    assert share["add_to_cart"] > share["purchase"]


def test_lines_are_mostly_in_time_order_and_late_by_at_most_30s(small) -> None:
    _, events = small
    ts, _ = columns(events)
    assert 0.005 < np.mean(np.diff(ts) < 0) < 0.1
    assert np.all(ts[1:] >= np.maximum.accumulate(ts)[:-1] - 30_000)


def test_truth_lists_every_part_with_its_scenario(small) -> None:
    result, _ = small
    truth = json.loads(result.truth_path.read_text())
    assert truth == result.truth
    assert truth["scenario"] == dataclasses.asdict(SMALL)
    assert (len(truth["viral"]), len(truth["steady"]), len(truth["spikes"])) == (5, 5, 10)
    for v in truth["viral"]:
        assert {"product_id", "seller_id", "category", "onset_ts", "events"} <= set(v)
        assert v["rank"] > 1000
        start, span = SMALL.start_ts_ms, SMALL.duration_s * 1000
        assert start + 0.1 * span <= v["onset_ts"] <= start + 0.7 * span


def test_viral_products_ramp_up_after_onset(small) -> None:
    result, events = small
    ts, product = columns(events)
    for v in result.truth["viral"]:
        mine = ts[product == v["product_id"]]
        onset = v["onset_ts"]
        before = np.count_nonzero((mine >= onset - TEN_MIN_MS) & (mine < onset))
        after = np.count_nonzero((mine >= onset) & (mine < onset + TEN_MIN_MS))
        assert after == v["events_first_10min"]
        assert after >= 20 and after >= 5 * (before + 1), v
        assert np.count_nonzero(mine >= onset) >= v["events"]
        assert np.count_nonzero(mine < onset) < 0.01 * v["events"]


def _peak_to_typical_10min(mine: np.ndarray) -> float:
    """Largest 10-minute count over the (median + 1) 10-minute count."""
    n_windows = round(SMALL.duration_s / 600)
    per_window = np.bincount((mine - SMALL.start_ts_ms) // TEN_MIN_MS, minlength=n_windows)
    return float(per_window.max() / (np.median(per_window) + 1))


def test_steady_products_are_busy_without_a_ramp(small) -> None:
    result, events = small
    ts, product = columns(events)
    counts = Counter(product.tolist())
    special = {x["product_id"] for part in ("viral", "spikes") for x in result.truth[part]}
    ordinary = [p for p, _ in counts.most_common() if p not in special]
    steady = result.truth["steady"]
    assert {s["product_id"] for s in steady} == set(ordinary[: len(steady)])
    for s in steady:
        assert s["events"] == counts[s["product_id"]] >= 0.01 * SMALL.n_events
        assert _peak_to_typical_10min(ts[product == s["product_id"]]) < 2.5
    for v in result.truth["viral"]:
        assert _peak_to_typical_10min(ts[product == v["product_id"]]) > 20


def test_spikes_are_short_bursts_that_stop(small) -> None:
    result, events = small
    ts, product = columns(events)
    for spike in result.truth["spikes"]:
        assert 30 <= spike["duration_s"] <= 90 and 100 <= spike["events"] <= 600
        mine = ts[product == spike["product_id"]]
        start, end = spike["ts"], spike["ts"] + spike["duration_s"] * 1000
        assert np.count_nonzero((mine >= start) & (mine <= end)) >= spike["events"]
        around = ((mine >= start - TEN_MIN_MS) & (mine < start)) | ((mine > end) & (mine <= end + TEN_MIN_MS))
        assert np.count_nonzero(around) <= max(3, 0.02 * spike["events"])


def test_duplicates_and_garbage_have_the_expected_counts(tmp_path: Path) -> None:
    scenario = dataclasses.replace(SMALL, duplicate_fraction=0.05, garbage_fraction=0.03)
    result = simulate(scenario, tmp_path)
    lines = result.events_path.read_text().splitlines()
    assert len(lines) == result.n_lines == 50_000 + 2_500
    assert (result.n_duplicates, result.n_garbage) == (2_500, 1_500)
    problems = Counter(contract_problem(line, scenario) for line in lines)
    assert problems[None] == len(lines) - 1_500
    good = [line for line in lines if contract_problem(line, scenario) is None]
    by_id = Counter(json.loads(line)["event_id"] for line in good)
    assert sorted(Counter(by_id.values()).items()) == [(1, 50_000 - 1_500 - 2_500), (2, 2_500)]
    assert len(set(good)) == len(good) - 2_500  # a duplicate repeats its original byte for byte


def test_garbage_covers_many_kinds_of_bad_input(tmp_path: Path) -> None:
    scenario = dataclasses.replace(SMALL, n_events=10_000, garbage_fraction=0.05)
    result = simulate(scenario, tmp_path)
    lines = result.events_path.read_text().splitlines()
    problems = Counter(contract_problem(line, scenario) for line in lines)
    kinds = {str(p).split(" ")[0] for p in problems if p is not None}
    assert {"bad_json", "not_object", "keys", "ts", "type", "price", "user_id"} <= kinds


def test_progress_reports_lines_written_up_to_the_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    scenario = dataclasses.replace(SMALL, n_events=5_000)
    result = simulate(scenario, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, result.n_lines) and calls[-1] == (result.n_lines, result.n_lines)
    assert [a for a, _ in calls] == sorted(a for a, _ in calls)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_events", 0),
        ("n_events", 1.5),
        ("n_events", True),
        ("n_products", 10),
        ("n_viral", -1),
        ("n_steady", -2),
        ("n_spikes", "3"),
        ("n_users", 0),
        ("seed", -1),
        ("start_ts_ms", -5),
        ("duration_s", 0.0),
        ("duration_s", float("nan")),
        ("zipf_exponent", -1.0),
        ("daily_cycle_amplitude", 1.5),
        ("duplicate_fraction", -0.1),
        ("garbage_fraction", 2.0),
    ],
)
def test_invalid_scenario_argument_raises_value_error_naming_it(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        Scenario(**{name: value})


def test_fractions_that_add_up_to_more_than_one_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate_fraction \\+ garbage_fraction"):
        Scenario(duplicate_fraction=0.6, garbage_fraction=0.5)


def reference_hawkes(rng, n_bins, mu, branching, decay, max_rate, audience):
    """Plain-Python version of the viral process, one second at a time."""
    counts, history = [], []
    for k in range(n_bins):
        total = sum(counts)
        left = 1.0 - (total / audience) ** 3
        if left <= 0:
            counts.extend([0] * (n_bins - k))
            break
        excitation = sum(c * decay ** (k - 1 - j) for j, c in enumerate(history))
        c = int(rng.poisson(min(left * (mu + branching * (1 - decay) * excitation), max_rate)))
        counts.append(c)
        history.append(c)
    return counts


@pytest.mark.parametrize("seed", range(3))
def test_hawkes_kernel_matches_reference(seed: int) -> None:
    args = (400, 0.5, 1.25, math.exp(-1 / 20), 8.0, 800.0)
    got = _hawkes_counts(np.random.default_rng(seed), *args)
    want = reference_hawkes(np.random.default_rng(seed), *args)
    np.testing.assert_array_equal(got, want)


def test_hawkes_kernel_stops_once_the_audience_is_reached() -> None:
    counts = _hawkes_counts(np.random.default_rng(0), 5_000, 1.0, 1.2, math.exp(-1 / 60), 20.0, 3_000.0)
    assert 0.98 * 3_000 <= counts.sum() <= 3_000 + counts.max()
    assert counts.max() < 40  # the rate is capped at 20/s
    assert counts[-1_000:].sum() < 0.01 * 3_000


def test_hawkes_kernel_without_base_rate_stays_silent() -> None:
    counts = _hawkes_counts(np.random.default_rng(0), 1_000, 0.0, 1.3, math.exp(-1 / 60), 20.0, 3_000.0)
    assert not counts.any()
