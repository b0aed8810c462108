"""The trust guard against the simulator's attacks, and organic viral products that must get through."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audience_helpers import signature
from tests.conftest import read_events, run_engine, truth
from viraltrend.board import Board, Candidates
from viraltrend.config import BoardConfig, TrustConfig, load_config
from viraltrend.kernels.audience import containment
from viraltrend.trust import AudienceMemory, TrustGuard, soft_refusal

ATTACKS = dict(
    n_events=300_000,
    n_products=20_000,
    n_viral=3,
    seed=4,
    n_bot_farms=1,
    n_click_farms=1,
    n_lockstep_rings=1,
    n_banned_viral=1,
)


@pytest.fixture(scope="module")
def attacked(scenario_factory):
    directory = scenario_factory(**ATTACKS)
    t = truth(directory)
    cfg = load_config(None, environ={}, overrides={"trust": {"blocked_sellers": t["banned_sellers"]}})
    engine, messages = run_engine(read_events(directory / "events.ndjson"), [], cfg)
    promoted = {m["product_id"] for m in messages if m["action"] == "promote"}
    blocked = {}
    for m in messages:
        if m["action"] == "block":
            blocked.setdefault(m["product_id"], m["reasons"])
    return t, promoted, blocked, engine


def test_no_attacked_product_is_promoted(attacked):
    t, promoted, _, _ = attacked
    assert {a["product_id"] for a in t["attacks"]} & promoted == set()


def test_organic_viral_products_still_get_through_unblocked(attacked):
    t, promoted, blocked, _ = attacked
    viral = {v["product_id"] for v in t["viral"]}
    assert viral <= promoted
    assert not viral & set(blocked)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        # A bot farm's few accounts count once each per product and hour, and a lockstep ring's
        # 30-80 accounts stop being new after their first round: neither brings the stream of new
        # distinct users a trend does, so the detector never puts them forward (they are covered
        # by test_no_attacked_product_is_promoted; rings that do recruit are refused as lockstep).
        ("click_farm", "fresh_accounts"),
        ("banned_viral", "seller_blocked"),
    ],
)
def test_each_attack_is_blocked_with_its_reason(attacked, kind, reason):
    t, _, blocked, _ = attacked
    rows = [a for a in t["attacks"] if a["kind"] == kind]
    assert rows
    reasons = [r for a in rows for r in blocked.get(a["product_id"], [])]
    assert any(r.startswith(reason) for r in reasons), (kind, reasons)


def test_refusals_are_counted(attacked):
    *_, engine = attacked
    assert engine.guard.refused["seller_blocked"] >= 1 and sum(engine.guard.refused.values()) >= 4


def features(**cols):
    return {k: np.array([v], float) for k, v in cols.items()}


def test_guard_passes_a_converting_product_with_many_users():
    g = TrustGuard(TrustConfig(), catalogue_fresh_share=0.05)
    f = features(unique_users=200, fresh_share=0.45, conversion_ratio=1.2, events_per_user=1.3)
    assert g.check("p", "s", 1, f, 0) is None


@pytest.mark.parametrize(
    ("fresh", "catalogue", "refused"), [(0.74, 0.09, True), (0.74, 0.3, False), (0.55, 0.05, False)]
)
def test_a_small_farm_of_new_accounts_is_refused_converting_or_not(fresh, catalogue, refused):
    # a bot farm of a few dozen accounts created for it: most of its events come from accounts
    # first seen minutes ago, where the catalogue's share is a small fraction of that; it converts
    # (an organic-looking mix) and passes the user floor by its users since the change point
    g = TrustGuard(
        TrustConfig(), catalogue_fresh_share=catalogue, min_change_users=16, catalogue_events_per_user=1.06
    )
    f = features(
        unique_users=8.6, change_users=28, fresh_share=fresh, conversion_ratio=3.6, events_per_user=2.0
    )
    got = g.check("p", "s", 1, f, 0)
    assert (got == [f"fresh_accounts_{fresh:.0%}_catalogue_{catalogue:.0%}"]) if refused else got is None


def test_almost_all_fresh_accounts_are_refused_even_converting_where_the_catalogue_is_not():
    f = features(unique_users=200, fresh_share=0.97, conversion_ratio=1.2, events_per_user=1.3)
    refused = TrustGuard(TrustConfig(), catalogue_fresh_share=0.05).check("p", "s", 1, f, 0)
    assert refused == ["fresh_accounts_97%_catalogue_5%"]
    # a young stream, or one where most accounts are new anyway: every audience is fresh
    assert TrustGuard(TrustConfig(), catalogue_fresh_share=0.6).check("p", "s", 1, f, 0) is None


@pytest.mark.parametrize(("fresh", "refused"), [(0.97, True), (0.93, False)])
def test_fresh_accounts_are_compared_with_the_catalogue_on_the_odds_scale(fresh, refused):
    # a click farm inflates the catalogue's own fresh share (36 % here): 97 % is no longer 3 times
    # that, but its odds (32 to 1) are 57 times the catalogue's (0.56); 93 % (13 to 1) is 24 times
    f = features(unique_users=14, fresh_share=fresh, conversion_ratio=0.7, events_per_user=1.5)
    got = TrustGuard(TrustConfig(), catalogue_fresh_share=0.36).check("p", "s", 1, f, 0)
    assert (got == [f"fresh_accounts_{fresh:.0%}_catalogue_36%"]) if refused else got is None
    # where most of the catalogue is fresh (a young stream), even 100 % fresh is no signal
    f = features(unique_users=14, fresh_share=1.0, conversion_ratio=0.7, events_per_user=1.5)
    assert TrustGuard(TrustConfig(), catalogue_fresh_share=0.9).check("p", "s", 1, f, 0) is None


def test_an_audience_that_sends_many_events_each_is_refused_as_recycled():
    f = features(unique_users=40, fresh_share=0.0, conversion_ratio=1.0, events_per_user=7.5)
    assert TrustGuard(TrustConfig()).check("p", "s", 1, f, 0) == [
        "recycled_audience_7.5_events_per_user_catalogue_1.0"
    ]


def test_an_audience_sending_twice_the_catalogue_s_events_each_is_refused_below_the_ceiling():
    # 12 ring accounts sending about 5 events each, where the catalogue's users send 1.2 per product
    g = TrustGuard(TrustConfig(), catalogue_events_per_user=1.2)
    ring = features(unique_users=12.2, fresh_share=0.5, conversion_ratio=3.0, events_per_user=4.9)
    assert g.check("p", "s", 1, ring, 0) == ["recycled_audience_4.9_events_per_user_catalogue_1.2"]
    # an organic trend recruits: about one event per new user, a little above the catalogue's
    trend = features(unique_users=12.2, fresh_share=0.1, conversion_ratio=3.0, events_per_user=1.4)
    assert g.check("p", "s", 1, trend, 0) is None
    # where users send several events per product anyway, the same 4.9 is ordinary
    busy = TrustGuard(TrustConfig(), catalogue_events_per_user=3.0)
    assert busy.check("p", "s", 1, ring, 0) is None


def test_a_crowd_that_never_converts_is_refused_whoever_its_accounts_are():
    g = TrustGuard(TrustConfig(min_unique_users=12), catalogue_fresh_share=0.05)
    f = features(unique_users=60, fresh_share=0.05, conversion_ratio=0.0, events_per_user=1.2)
    assert g.check("p", "s", 1, f, 0) == ["no_conversion_x0.00_60_users"]


def test_no_conversion_minutes_into_a_change_holds_the_product_back_and_blocks_it_later():
    """Carts follow views: a crowd with no cart 55 s into its change is held (soft), at 300 s refused."""
    from viraltrend.trust import soft_refusal

    g = TrustGuard(TrustConfig(min_unique_users=12, conversion_wait_s=300.0), catalogue_fresh_share=0.05)
    young = features(unique_users=38, fresh_share=0.05, conversion_ratio=0.0, events_per_user=1.2)
    young["change_s"] = np.array([55.0])
    early = g.check("p", "s", 1, young, 0)
    assert early == ["no_conversion_yet_x0.00_38_users_change_55s"] and soft_refusal(early)
    young["change_s"] = np.array([300.0])
    late = g.check("p", "s", 1, young, 0)
    assert late == ["no_conversion_x0.00_38_users"] and not soft_refusal(late)


def test_no_conversion_where_few_carts_were_expected_holds_rather_than_blocks():
    """No cart where the catalogue's rate expects 1.5 is chance (e^-1.5 = 22 %): held; where 4, refused."""
    from viraltrend.trust import soft_refusal

    cfg = TrustConfig(min_unique_users=12, conversion_wait_s=300.0)
    g = TrustGuard(cfg, catalogue_fresh_share=0.05)
    f = features(unique_users=29, fresh_share=0.05, conversion_ratio=0.0, events_per_user=1.2)
    f["change_s"] = np.array([390.0])
    f["expected_buys"] = np.array([1.5])
    held = g.check("p", "s", 1, f, 0)
    assert held == ["no_conversion_yet_x0.00_29_users_expected_1.5"] and soft_refusal(held)
    f["expected_buys"] = np.array([4.0])
    refused = g.check("p", "s", 1, f, 0)
    assert refused == ["no_conversion_x0.00_29_users"] and not soft_refusal(refused)
    off = TrustGuard(
        TrustConfig(min_unique_users=12, conversion_wait_s=300.0, no_conversion_expected_buys=0.0),
        catalogue_fresh_share=0.05,
    )
    f["expected_buys"] = np.array([1.5])
    assert off.check("p", "s", 1, f, 0) == ["no_conversion_x0.00_29_users"]  # the key at 0: as before


def test_an_organic_trend_that_converts_a_little_is_not_refused_for_conversion():
    g = TrustGuard(TrustConfig(min_unique_users=12), catalogue_fresh_share=0.05)
    few = features(unique_users=20, fresh_share=0.05, conversion_ratio=0.0, events_per_user=1.2)
    assert g.check("p", "s", 1, few, 0) is None  # below 2 x the user floor: may just be early lookers
    some = features(unique_users=60, fresh_share=0.05, conversion_ratio=0.3, events_per_user=1.2)
    assert g.check("p", "s", 1, some, 0) is None


def test_guard_refuses_fresh_accounts_that_never_convert():
    g = TrustGuard(TrustConfig())
    f = features(unique_users=200, fresh_share=0.95, conversion_ratio=0.0)
    assert g.check("p", "s", 1, f, 0)[0].startswith("fresh_accounts_95%")


def test_live_blocklist_change_blocks_and_unblocks():
    g = TrustGuard(TrustConfig())
    f = features(unique_users=200, fresh_share=0.1, conversion_ratio=1.0)
    g.set_blocked("seller", "s", "fake_reviews")
    assert g.check("p", "s", 1, f, 0) == ["seller_blocked", "blocklist_reason:fake_reviews"]
    g.set_blocked("seller", "s", None)
    assert g.check("p", "s", 1, f, 0) is None


def _signature(users, k=32):
    return signature(users, k)


def test_audience_memory_finds_a_ring_hours_later_and_not_a_stranger():
    mem = AudienceMemory(capacity=8, k=32, memory_ms=6 * 3_600_000)
    ring = list(range(1000, 1130))
    mem.remember(np.array([1], np.int64), np.array([7], np.int64), _signature(ring[:110]), now_ms=0)
    later = 3 * 3_600_000
    same, other, _, _ = mem.best_match(
        np.array([2], np.int64), np.array([9], np.int64), _signature(ring[15:]), now_ms=later
    )[:4]
    assert same[0] >= 0.5 and other[0] == 1
    stranger, _, _, _ = mem.best_match(
        np.array([3], np.int64), np.array([9], np.int64), _signature(range(5000, 5200)), now_ms=later
    )[:4]
    assert stranger[0] < 0.2
    gone, other, _, _ = mem.best_match(
        np.array([2], np.int64), np.array([9], np.int64), _signature(ring), now_ms=7 * 3_600_000
    )[:4]
    assert other[0] == -1 and gone[0] == 0.0  # forgotten after audience_memory_s


def test_audience_memory_reports_the_same_seller_separately_and_gives_way_when_full():
    mem = AudienceMemory(capacity=2, k=32, memory_ms=10**9)
    mem.remember(np.array([1, 2], np.int64), np.array([5, 6], np.int64),
                 np.concatenate([_signature(range(100)), _signature(range(100, 200))]), now_ms=0)  # fmt: skip
    _, _, same, other_same = mem.best_match(
        np.array([9], np.int64), np.array([5], np.int64), _signature(range(60)), now_ms=1
    )[:4]
    assert other_same[0] == 1 and same[0] > 0.3
    mem.remember(np.array([3], np.int64), np.array([5], np.int64), _signature(range(300, 400)), now_ms=2)
    assert sorted(mem.slot.tolist()) == [2, 3]  # the oldest (slot 1) gave way


def test_audience_memory_finds_a_small_audience_inside_a_large_remembered_one():
    # the weakness of k MinHash minima: 12 ring accounts inside a 400-account audience share about
    # k * 12 / 400 minima (1 of 32); a bottom-256 sample holds about 8 of the 12 below its threshold
    mem = AudienceMemory(capacity=8, k=256, memory_ms=10**9)
    ring = list(range(10_000, 10_400))
    mem.remember(np.array([1], np.int64), np.array([-1], np.int64), _signature(ring, k=256), now_ms=0)
    share, other, _, _ = mem.best_match(
        np.array([2], np.int64), np.array([-1], np.int64), _signature(ring[100:112], k=256), now_ms=1
    )[:4]
    assert other[0] == 1 and share[0] == 1.0


def test_audience_memory_leaves_an_organic_audience_drawn_from_a_large_population_alone():
    # an organic trend's users are strangers to a remembered 3,000-user audience of a popular
    # product, except for the few who are in both by chance (3,000 of 60,000 users: 5 %)
    rng = np.random.default_rng(1)
    mem = AudienceMemory(capacity=8, k=256, memory_ms=10**9)
    big = rng.choice(60_000, 3_000, replace=False)
    mem.remember(np.array([1], np.int64), np.array([-1], np.int64), _signature(big, k=256), now_ms=0)
    for n in (12, 40, 200):
        share, _, _, _ = mem.best_match(
            np.array([2], np.int64), np.array([-1], np.int64), _signature(rng.choice(60_000, n), k=256),
            now_ms=1,
        )[:4]  # fmt: skip
        assert share[0] < 0.3


def test_containment_is_exact_below_the_sample_size():
    a = _signature(range(50), k=64)
    b = _signature(range(25, 60), k=64)
    sampled, shared = containment(a, b, np.array([0]))
    assert (sampled[0, 0], shared[0, 0]) == (50, 25)


def test_fresh_accounts_below_the_user_floor_are_a_soft_refusal():
    g = TrustGuard(TrustConfig(min_unique_users=15))
    f = features(unique_users=2, fresh_share=1.0, conversion_ratio=0.0)
    reasons = g.check("p", "s", 1, f, 0)
    assert [r.split("_")[0] for r in reasons] == ["low", "fresh"]
    assert soft_refusal(reasons)


def test_fresh_accounts_at_the_user_floor_are_a_hard_refusal():
    g = TrustGuard(TrustConfig(min_unique_users=15))
    reasons = g.check("p", "s", 1, features(unique_users=15, fresh_share=1.0, conversion_ratio=0.0), 0)
    assert reasons[0].startswith("fresh_accounts") and not soft_refusal(reasons)


def test_few_users_with_a_blocked_seller_or_lockstep_stay_hard():
    assert not soft_refusal(["low_unique_users_3", "seller_blocked"])
    fresh = "fresh_accounts_90%_no_conversion_x0.00"
    assert not soft_refusal(["low_unique_users_3", fresh, "lockstep_with_p-1"])


def _early_then_organic(unique_users: float, fresh_share: float, conversion: float = 0.0) -> dict:
    return features(unique_users=unique_users, fresh_share=fresh_share, conversion_ratio=conversion)


def test_board_holds_an_early_product_of_fresh_accounts_then_promotes_it_when_its_audience_grows():
    guard = TrustGuard(TrustConfig(min_unique_users=15))
    board = Board(
        BoardConfig(confirm_s=60.0), guard=lambda c, i: guard.check(c.product_id[i], None, 1, c.features, i)
    )

    def at(now_ms, users, fresh, conversion):
        feats = _early_then_organic(users, fresh, conversion)
        cand = Candidates(
            slot=np.array([1], np.int64), product_id=["p1"], seller_id=[None], category=[None],
            score=np.array([0.95]), features={**feats, "momentum": np.ones(1)},
        )  # fmt: skip
        return [m["action"] for m in board.step(now_ms, cand)]

    assert at(0, 2, 1.0, 0.0) == [] and 1 in board.held  # two brand-new accounts: held, not blocked
    assert at(30_000, 20, 0.2, 0.5) == [] and 1 not in board.held  # the audience grew: now confirming
    assert at(90_000, 40, 0.1, 1.0) == ["promote"]


def test_board_blocks_a_product_still_below_the_user_floor_after_the_confirm_time():
    guard = TrustGuard(TrustConfig(min_unique_users=15))
    board = Board(
        BoardConfig(confirm_s=60.0), guard=lambda c, i: guard.check(c.product_id[i], None, 1, c.features, i)
    )
    cand = Candidates(
        slot=np.array([1], np.int64), product_id=["p1"], seller_id=[None], category=[None],
        score=np.array([0.95]), features={**_early_then_organic(4, 1.0), "momentum": np.ones(1)},
    )  # fmt: skip
    assert board.step(0, cand) == []
    msgs = board.step(60_000, cand)
    assert [m["action"] for m in msgs] == ["block"]
    assert msgs[0]["reasons"][0].startswith("low_unique_users") and msgs[0]["reasons"][1].startswith("fresh")


def _one_candidate(**cols):
    return Candidates(
        slot=np.array([3], np.int64), product_id=["p3"], seller_id=[None], category=[None],
        score=np.array([0.95]), features=features(**cols),
    )  # fmt: skip


@pytest.mark.parametrize(("users", "sticks"), [(40, True), (14, False)])
def test_a_hard_refusal_sticks_when_the_signal_later_fades_if_enough_users_were_behind_it(users, sticks):
    # a ring of fresh accounts is refused while they are fresh; ten minutes later they are not,
    # but the product stays refused (for trust.audience_memory_s): the ring cannot wait out a window.
    # 14 users (above the floor of 12, below twice it) are no verdict: that refusal does not stick
    from viraltrend.engine import Engine

    engine = Engine(load_config(None, environ={}))
    engine.guard.catalogue_fresh_share = 0.05
    first = engine.board.guard(
        _one_candidate(unique_users=users, fresh_share=1.0, conversion_ratio=0.0, events_per_user=1.2), 0
    )
    assert first is not None and first[0].startswith("fresh_accounts")
    later = engine.board.guard(
        _one_candidate(unique_users=80, fresh_share=0.1, conversion_ratio=1.5, events_per_user=1.2), 0
    )
    assert later == ([first[0]] if sticks else None)


def test_a_soft_refusal_does_not_stick():
    from viraltrend.engine import Engine

    engine = Engine(load_config(None, environ={}))
    early = engine.board.guard(
        _one_candidate(unique_users=3, fresh_share=1.0, conversion_ratio=0.0, events_per_user=1.0), 0
    )
    assert early is not None and soft_refusal(early)
    grown = engine.board.guard(
        _one_candidate(unique_users=80, fresh_share=0.1, conversion_ratio=1.5, events_per_user=1.2), 0
    )
    assert grown is None


def test_block_density_finds_a_ring_spread_over_many_products_and_not_organic_audiences():
    # a ring of 300 accounts spreads over 8 products, each drawing a third of them: no pair of its
    # products shares half its users (lockstep misses it), but each user is in ~2-3 other audiences
    rng = np.random.default_rng(3)
    mem = AudienceMemory(capacity=32, k=256, memory_ms=10**9)
    ring = np.arange(100_000, 100_300)
    for j in range(7):
        mem.remember(np.array([j], np.int64), np.array([-1], np.int64),
                     _signature(rng.choice(ring, 100, replace=False), k=256), now_ms=0)  # fmt: skip
    for j in range(7, 27):  # organic hot products: audiences drawn from a large population
        mem.remember(np.array([j], np.int64), np.array([-1], np.int64),
                     _signature(rng.choice(60_000, 400, replace=False), k=256), now_ms=0)  # fmt: skip
    cand = _signature(rng.choice(ring, 100, replace=False), k=256)
    share, _, _, _ = mem.best_match(np.array([99], np.int64), np.array([-1], np.int64), cand, now_ms=1)[:4]
    assert share[0] < 0.5  # no single product holds half of its users
    dense, n = mem.block_density(np.array([99], np.int64), cand, now_ms=1)
    assert dense[0] >= 0.5 and n[0] == 7
    organic = _signature(rng.choice(60_000, 200, replace=False), k=256)
    dense, _ = mem.block_density(np.array([98], np.int64), organic, now_ms=1)
    assert dense[0] < 0.1


def test_block_density_weighs_popular_audiences_little_camouflage():
    # FRAUDAR's column weight 1 / log(d + 5): the same share of users in a 20,000-user audience of a
    # popular product counts less than in a 60-user ring product's
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    users = np.arange(60)
    mem.remember(np.array([1], np.int64), np.array([-1], np.int64), _signature(users, k=256), now_ms=0)
    mem.remember(np.array([2], np.int64), np.array([-1], np.int64),
                 _signature(np.concatenate([users, np.arange(1000, 21_000)]), k=256), now_ms=0)  # fmt: skip
    small = mem.block_density(np.array([9], np.int64), _signature(users, k=256), now_ms=1)[0][0]
    mem.forget(np.array([1], np.int64))
    popular = mem.block_density(np.array([9], np.int64), _signature(users, k=256), now_ms=1)[0][0]
    assert 0.0 <= popular < small / 2


def test_catalogue_figures_are_the_smaller_of_the_trend_and_baseline_windows():
    # an attack running now inflates the trend window's catalogue events per user; the guard's
    # reference is the smaller of that and the slow baseline window, so it cannot lift its own bar
    from viraltrend.engine import Engine

    engine = Engine(load_config(None, environ={}))
    counters = engine.trust_counters
    counters.global_acc[:] = np.array([[100.0, 100.0], [10.0, 20.0], [400.0, 150.0]])  # pairs, fresh, raw
    engine.audience_guard.catalogue_trust(counters.read_global(0))
    g = counters.read_global(0)
    assert engine.guard.catalogue_events_per_user == pytest.approx(min(g[2] / g[0]))
    assert engine.guard.catalogue_fresh_share == pytest.approx(min(g[1] / g[2]))
    assert engine.guard.catalogue_events_per_user < 2.0 < g[2, 0] / g[0, 0]


def test_a_hot_product_stays_sketched_across_ticks_without_its_events():
    # a trending product with an event every few minutes keeps one audience sample for its whole
    # trend: it used to be unwatched (its sample emptied) at every tick without one of its events
    from viraltrend.engine import Engine

    engine = Engine(load_config(None, environ={}))
    a, b = np.array([3, 8], np.int64), np.array([0.9, 0.5])
    kept = engine.audience_guard.keep_sketched(0, a, b, cap=4)
    engine.book.sketched = kept
    kept = engine.audience_guard.keep_sketched(60_000, np.array([5], np.int64), np.array([0.4]), cap=4)
    assert kept.tolist() == [3, 5, 8]  # 3 and 8 had no events this tick: still sketched
    engine.book.sketched = kept
    kept = engine.audience_guard.keep_sketched(1_800_001, np.array([7], np.int64), np.array([0.2]), cap=4)
    assert kept.tolist() == [5, 7]  # 3 and 8 were last hot 30 min + 1 ms ago (_SKETCH_IDLE_MS); 5, 29 min ago
    engine.book.sketched = kept
    kept = engine.audience_guard.keep_sketched(
        1_800_002, np.array([1, 2, 9], np.int64), np.array([0.3, 0.6, 0.1]), cap=3
    )
    assert kept.tolist() == [1, 2, 5]  # at most cap, most evidence first (9: the least)


def test_the_engine_refuses_a_ring_spread_over_many_products_as_a_dense_block_with_its_numbers():
    # 7 remembered ring products each hold a third of 300 accounts; a candidate drawing 100 of them
    # shares under half its users with any one (no lockstep), but is refused as a dense block, and
    # the refusal carries the density and the number of products behind it
    from viraltrend.engine import Engine

    rng = np.random.default_rng(3)
    engine = Engine(load_config(None, environ={}))
    ring = np.arange(100_000, 100_300)
    for j in range(7):
        sig = _signature(rng.choice(ring, 100, replace=False), k=256)
        engine.audiences.remember(np.array([j], np.int64), np.array([-1], np.int64), sig, now_ms=0)
    cand = np.array([9], np.int64)
    engine._grow(16)
    engine.sketches.watch(cand)
    engine.sketches.update(np.full(100, 9, np.int64), rng.choice(ring, 100, replace=False).astype(np.int64))
    yes = np.array([True])
    engine.audience_guard.track(60_000, cand, yes, yes, yes, {"evidence": np.array([1.0])})
    reason = engine.guard.lockstep.get(9, "")
    assert reason.startswith("dense_block_") and reason.endswith("_over_7_products"), reason
    assert float(reason.split("_")[2]) >= engine.cfg.trust.dense_block_density


def test_a_ring_product_already_on_the_board_is_exposed_by_its_later_sibling():
    # the first product of a staggered ring is promoted before any sibling trends; when a later product
    # of the same audience is refused as lockstep with it, the first one gets a refusal that takes it off
    # the board (ring_member_of_<sibling>); a stranger's audience exposes nothing
    from viraltrend.board import Member
    from viraltrend.engine import Engine

    rng = np.random.default_rng(5)
    engine = Engine(load_config(None, environ={}))
    assert engine.products.intern([f"p-{i}" for i in range(12)]).tolist() == list(range(12))
    engine._grow(16)
    ring = np.arange(200_000, 200_250)
    sig = _signature(rng.choice(ring, 120, replace=False), k=256)
    engine.audiences.remember(np.array([0], np.int64), np.array([-1], np.int64), sig, now_ms=0)
    engine.board.members[0] = Member(
        slot=0, product_id="p-first", seller_id=None, category=None, score=1.0, since_ms=0
    )
    engine.book.ring_refusals[0] = ("recycled_audience_3.1_per_user", 0)  # got on the board: did not evict it
    yes = np.array([True, True])
    for slot, users in ((9, rng.choice(ring, 120, replace=False)), (11, np.arange(900_000, 900_120))):
        engine.sketches.watch(np.array([slot], np.int64))
        engine.sketches.update(np.full(users.size, slot, np.int64), users.astype(np.int64))
    engine.audience_guard.track(60_000, np.array([9, 11], np.int64), yes, yes, yes, {"evidence": np.ones(2)})
    assert engine.guard.lockstep[9].startswith("lockstep_with_")
    assert 11 not in engine.guard.lockstep
    exposed = engine.guard.lockstep.get(0, "")
    assert exposed.startswith("ring_member_of_p-9_shared_"), exposed
