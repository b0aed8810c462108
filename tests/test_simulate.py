from __future__ import annotations

import dataclasses
import hashlib
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
        span_s = spike["duration_s"]  # event time in the truth file, not wall time
        assert 30 <= span_s <= 90 and 100 <= spike["events"] <= 600
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


# --- attacks on the trust guard -------------------------------------------------------------

ATTACKS = dataclasses.replace(SMALL, n_bot_farms=1, n_click_farms=1, n_lockstep_rings=1, n_banned_viral=1)
ATTACK_FIELDS = ("n_bot_farms", "n_click_farms", "n_lockstep_rings", "n_banned_viral")
FAKE_TYPES = {"view", "like", "share"}

#: sha256 of events.ndjson and truth.json written by the simulator before attacks existed.
GOLDEN = {
    "small": ("8f9b5503f4fc2644b7db1493f98056b3743e70109a9cf5c9d067cda3f464aedf",
              "d574e3764f22d1614c228591d8bf4ba32b3c66852548f4960a2ed1c9f622801c"),
    "dup_garbage": ("fa2bbe009a982378321214d891e433cf15d6fffa968e7c9f49ff2c4f0016461d",
                    "46824b13d7509bedd25e3c4890582674588e00ac4236f8c7e6f8b527543335c1"),
}  # fmt: skip


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def truth_without_attacks(result: SimulationResult) -> bytes:
    """truth.json as the simulator wrote it before attacks: without their keys and scenario fields."""
    truth = json.loads(result.truth_path.read_text())
    assert (truth.pop("attacks"), truth.pop("banned_sellers")) == ([], [])
    assert [truth["scenario"].pop(name) for name in ATTACK_FIELDS] == [0, 0, 0, 0]
    return (json.dumps(truth, indent=2) + "\n").encode()


def test_without_attacks_the_output_is_unchanged(small, tmp_path: Path) -> None:
    result, _ = small
    assert sha256(result.events_path.read_bytes()) == GOLDEN["small"][0]
    assert sha256(truth_without_attacks(result)) == GOLDEN["small"][1]
    noisy = dataclasses.replace(SMALL, n_events=10_000, duplicate_fraction=0.05, garbage_fraction=0.03)
    noisy = simulate(noisy, tmp_path)
    assert sha256(noisy.events_path.read_bytes()) == GOLDEN["dup_garbage"][0]
    assert sha256(truth_without_attacks(noisy)) == GOLDEN["dup_garbage"][1]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, list[dict]]:
    result = simulate(ATTACKS, tmp_path_factory.mktemp("attacked"))
    return result, read_events(result)


def attack(result: SimulationResult, kind: str) -> list[dict]:
    return [a for a in result.truth["attacks"] if a["kind"] == kind]


def after_onset(events: list[dict], row: dict) -> list[dict]:
    return [e for e in events if e["product_id"] == row["product_id"] and e["ts"] >= row["onset_ts"]]


def first_seen(events: list[dict]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for e in events:
        seen[e["user_id"]] = min(seen.get(e["user_id"], e["ts"]), e["ts"])
    return seen


def peak_10min(ts: np.ndarray) -> int:
    return int(np.bincount((ts - SMALL.start_ts_ms) // TEN_MIN_MS).max())


def test_attacks_keep_the_contract_the_budget_and_determinism(attacked, tmp_path: Path) -> None:
    result, events = attacked
    assert len(events) == result.n_lines == ATTACKS.n_events
    lines = result.events_path.read_text().splitlines()
    assert Counter(contract_problem(line, ATTACKS) for line in lines) == {None: len(lines)}
    attrs = {(e["product_id"], e["seller_id"], e["category"], e["price"]) for e in events}
    assert len(attrs) == len({e["product_id"] for e in events})
    again = simulate(ATTACKS, tmp_path)
    assert again.events_path.read_bytes() == result.events_path.read_bytes()
    assert again.truth_path.read_bytes() == result.truth_path.read_bytes()
    assert sum(a["events"] for a in result.truth["attacks"]) <= 0.3 * ATTACKS.n_events


def test_truth_lists_one_row_per_attacked_product(attacked) -> None:
    result, events = attacked
    truth = json.loads(result.truth_path.read_text())
    assert truth == result.truth and truth["scenario"] == dataclasses.asdict(ATTACKS)
    rows = truth["attacks"]
    kinds = Counter(a["kind"] for a in rows)
    assert kinds["bot_farm"] == kinds["click_farm"] == kinds["banned_viral"] == 1
    assert 3 <= kinds["lockstep_ring"] <= 5 and len(kinds) == 4
    products = Counter(e["product_id"] for e in events)
    special = {x["product_id"] for part in ("viral", "steady", "spikes") for x in truth[part]}
    start, span = ATTACKS.start_ts_ms, ATTACKS.duration_s * 1000
    for a in rows:
        assert {"product_id", "seller_id", "category", "onset_ts", "events", "accounts"} <= set(a)
        assert a["product_id"] not in special and a["rank"] >= 1000
        assert start + 0.15 * span <= a["onset_ts"] <= start + 0.75 * span
        assert 300 <= a["events"] <= products[a["product_id"]]
    assert len({a["product_id"] for a in rows}) == len(rows)
    ring = attack(result, "lockstep_ring")
    assert {(a["ring"], a["seller_id"], a["onset_ts"], a["accounts"]) for a in ring} == {
        (0, ring[0]["seller_id"], ring[0]["onset_ts"], ring[0]["accounts"])
    }
    assert 30 <= ring[0]["accounts"] <= 80
    ring_products = {e["product_id"] for e in events if e["seller_id"] == ring[0]["seller_id"]}
    assert ring_products == {a["product_id"] for a in ring}


def test_bot_farm_is_a_few_accounts_sending_many_events(attacked) -> None:
    result, events = attacked
    (bot,) = attack(result, "bot_farm")
    assert 5 <= bot["accounts"] <= 15
    mine = after_onset(events, bot)
    per_user = Counter(e["user_id"] for e in mine)
    top = per_user.most_common(15)
    assert sum(n for _, n in top) >= 0.95 * len(mine) >= 0.95 * bot["events"]
    bots = {u for u, n in top if n >= 24}  # dozens of events each, at least
    assert len(bots) == bot["accounts"]
    assert all(first_seen(events)[u] >= bot["onset_ts"] for u in bots)
    assert {e["type"] for e in mine if e["user_id"] in bots} <= FAKE_TYPES
    assert {e["product_id"] for e in events if e["user_id"] in bots} == {bot["product_id"]}


def is_fresh(user_id: str) -> bool:
    """Attack accounts get ids from n_users up, never used by ordinary traffic (tests only!)."""
    return int(user_id[2:]) >= ATTACKS.n_users


def test_click_farm_is_many_fresh_accounts_that_never_buy(attacked) -> None:
    result, events = attacked
    (farm,) = attack(result, "click_farm")
    seen = first_seen(events)
    mine = after_onset(events, farm)
    fake = [e for e in mine if is_fresh(e["user_id"])]
    assert len(fake) == farm["events"] >= 0.95 * len(mine)
    accounts = {e["user_id"] for e in fake}
    assert len(accounts) == farm["accounts"] >= farm["events"] / 3
    assert all(seen[u] >= farm["onset_ts"] for u in accounts)
    per_user = Counter(e["user_id"] for e in events if e["user_id"] in accounts)  # the whole stream
    assert set(per_user.values()) <= {1, 2, 3} and sum(per_user.values()) == len(fake)
    assert {e["type"] for e in fake} <= FAKE_TYPES  # no add_to_cart, no purchase
    # ordinary newcomers are rare among the product's events after the onset
    assert sum(seen[e["user_id"]] >= farm["onset_ts"] for e in mine) <= len(fake) + 0.05 * len(mine)


def test_lockstep_ring_accounts_hit_all_its_products_in_the_same_windows(attacked) -> None:
    result, events = attacked
    ring = attack(result, "lockstep_ring")
    heavy = []  # per product: the users with several events after the onset, and their times
    for a in ring:
        per_user: dict[str, list[int]] = {}
        for e in after_onset(events, a):
            per_user.setdefault(e["user_id"], []).append(e["ts"])
        heavy.append({u: np.sort(ts) for u, ts in per_user.items() if len(ts) >= 3})
    users = set(heavy[0])
    assert len(users) == ring[0]["accounts"]
    for other in heavy[1:]:
        assert len(users & set(other)) >= 0.95 * len(users | set(other))
    seen = first_seen(events)
    assert all(seen[u] >= ring[0]["onset_ts"] for u in users)
    for u in users:
        for a_ts, b_ts in zip(heavy, heavy[1:] + heavy[:1], strict=True):
            if u in a_ts and u in b_ts:
                near = np.clip(np.searchsorted(b_ts[u], a_ts[u]), 1, len(b_ts[u]) - 1)
                gap = np.minimum(np.abs(b_ts[u][near] - a_ts[u]), np.abs(b_ts[u][near - 1] - a_ts[u]))
                assert gap.max() <= 20_000, u
    windows = np.unique(np.concatenate([t for h in heavy for t in h.values()]) // 60_000)
    assert len(windows) <= 2 * 60  # about 45 min of rounds, each inside a minute or two


def test_banned_viral_product_ramps_like_a_viral_one(attacked) -> None:
    result, events = attacked
    (banned,) = attack(result, "banned_viral")
    assert result.truth["banned_sellers"] == [banned["seller_id"]]
    assert banned["product_id"] not in {v["product_id"] for v in result.truth["viral"]}
    banned_products = {e["product_id"] for e in events if e["seller_id"] == banned["seller_id"]}
    assert banned_products == {banned["product_id"]}
    ts, product = columns(events)
    viral_events = [v["events"] for v in result.truth["viral"]]
    for row in (banned, *result.truth["viral"]):
        mine = ts[product == row["product_id"]]
        onset = row["onset_ts"]
        before = np.count_nonzero((mine >= onset - TEN_MIN_MS) & (mine < onset))
        after = np.count_nonzero((mine >= onset) & (mine < onset + 3 * TEN_MIN_MS))
        assert after >= 20 and after >= 5 * (before + 1), row
        assert _peak_to_typical_10min(mine) > 20
    assert 0.5 * min(viral_events) <= banned["events"] <= 2 * max(viral_events)
    assert banned["accounts"] >= 0.9 * banned["events"]  # ordinary users, not a farm


def test_faked_products_look_as_busy_as_viral_ones(attacked) -> None:
    result, events = attacked
    ts, product = columns(events)
    viral_peak = np.median([peak_10min(ts[product == v["product_id"]]) for v in result.truth["viral"]])
    for a in result.truth["attacks"]:  # a ring spreads its volume over about 45 min
        share = 0.2 if a["kind"] == "lockstep_ring" else 0.35
        assert peak_10min(ts[product == a["product_id"]]) >= share * viral_peak, a


def test_attacks_on_a_tiny_stream_stay_within_it(tmp_path: Path) -> None:
    scenario = Scenario(n_events=1_000, n_products=200, n_users=1_000, n_sellers=5, duration_s=60.0, seed=2,
                        n_bot_farms=2, n_click_farms=2, n_lockstep_rings=2, n_banned_viral=2)  # fmt: skip
    result = simulate(scenario, tmp_path)
    lines = result.events_path.read_text().splitlines()
    assert len(lines) == 1_000
    assert Counter(contract_problem(line, scenario) for line in lines) == {None: 1_000}
    assert result.truth["banned_sellers"] == ["s-7", "s-8"]


@pytest.mark.parametrize("name", ATTACK_FIELDS)
def test_invalid_attack_count_raises_value_error_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Scenario(**{name: -1})
    with pytest.raises(ValueError, match=name):
        Scenario(**{name: 1.0})


def test_attacked_products_need_room_in_the_catalogue() -> None:
    with pytest.raises(ValueError, match="attacked products"):
        Scenario(n_products=40, n_lockstep_rings=1)
