"""The sequential detector on shapes: a ramp is promoted; a flat spike and a decaying burst are not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import run_engine
from tests.kernels.reference import _growth
from tests.test_engine import batch_of
from viraltrend.config import load_config
from viraltrend.detect import SequentialDetector

T0 = 1_000_000_000_000
HOUR_MS = 3_600_000


def _catalogue(hours: float = 26.0, every_s: int = 120, stagger_ms: int = 300) -> list[tuple]:
    """300 quiet products, a view every ``every_s`` each from a pool of returning users."""
    n = int(hours * 3600 / every_s)
    return [
        (
            T0 - HOUR_MS * 24 + k * every_s * 1000 + p * stagger_ms,
            "view",
            f"bg{p}",
            f"s{p % 50}",
            None,
            f"user{(p * 61 + k) % 3000}",
        )
        for p in range(300)
        for k in range(n)
    ]


def _shaped(product: str, times_ms: list[int]) -> list[tuple]:
    """One event per user of ``product`` at ``times_ms`` (one in ten an add-to-cart).

    The users are the catalogue's existing audience (accounts active for a day), each new to the
    product: an organic audience (one of brand-new accounts only is refused as fresh accounts).
    """
    return [
        (T0 + t, "add_to_cart" if i % 10 == 0 else "view", product, "s-x", None, f"user{(i * 7919) % 3000}")
        for i, t in enumerate(sorted(times_ms))
    ]


def _promotes(rows: list[tuple]) -> dict[str, dict]:
    _, messages = run_engine(batch_of(sorted(rows)), [], load_config(None, environ={}))
    out: dict[str, dict] = {}
    for m in messages:
        if m["action"] == "promote":
            out.setdefault(m["product_id"], m)
    return out


@pytest.fixture(scope="module")
def shapes():
    rng = np.random.default_rng(7)
    # ramp: the rate doubles every 3 min from 1/min: cumulative count 1/min * d/ln2 * (2**(t/d) - 1)
    d_s = 180.0
    n = 1500  # fewer than the 3000 accounts: every user is new to the product
    ramp = [int(1000 * d_s / math.log(2) * math.log2(1 + i * math.log(2) / d_s * 60)) for i in range(n)]
    # flat spike: 400 users evenly over 5 minutes, then nothing
    spike = sorted(int(x) for x in rng.uniform(0, 300_000, 400))
    # creator burst: 600 users, exponential decay with a 6-minute time constant from its start
    burst = sorted(int(x) for x in rng.exponential(360_000, 600))
    rows = _catalogue() + _shaped("p-ramp", ramp) + _shaped("p-spike", [t + HOUR_MS for t in spike])
    rows += _shaped("p-burst", [t + 2 * HOUR_MS for t in burst])
    return _promotes(rows)


def test_a_growing_ramp_is_promoted_within_minutes_with_its_evidence(shapes):
    promote = shapes["p-ramp"]
    assert promote["event_ts"] - T0 <= 20 * 60_000  # evidence suffices at ~13 min (18 users), growth by ~17
    assert promote["features"]["evidence"] >= 1.0
    assert any(r.startswith("change_evidence_x") for r in promote["reasons"])
    assert any(r.startswith("growth_z_") for r in promote["reasons"])


def test_a_flat_spike_is_never_promoted(shapes):
    assert "p-spike" not in shapes


def test_a_decaying_burst_is_never_promoted(shapes):
    assert "p-burst" not in shapes


def test_growth_compares_whole_bins_after_the_change():
    bins = np.array(
        [[0, 0, 0, 5, 5, 5, 5, 5], [0, 0, 1, 2, 4, 8, 16, 32], [0, 0, 40, 30, 20, 15, 10, 8]], float
    )
    z = _growth(bins, np.array([5, 6, 6]), 7)
    assert abs(z[0]) < 1.0 and z[1] > 3.0 and z[2] < -2.0


def test_cycle_factor_is_clipped_and_neutral_without_history():
    assert SequentialDetector.cycle_factor(1.0, 0.0) == 1.0
    assert SequentialDetector.cycle_factor(100.0, 1.0) == 5.0
    assert SequentialDetector.cycle_factor(0.01, 1.0) == 0.2


def _slow_ramp() -> list[int]:
    """Users of a ramp from 0.2/min doubling every 30 min, over 2 hours (ms from T0)."""
    d_s, r0 = 1800.0, 0.2 / 60.0
    n = int(r0 * d_s / math.log(2) * (2 ** (7200 / d_s) - 1))
    return [int(1000 * d_s * math.log2(1 + i * math.log(2) / (r0 * d_s))) for i in range(n)]


def _sparse_catalogue() -> list[tuple]:
    """300 quiet products over 26 hours, a view every 20 minutes each (3 distinct users an hour)."""
    return _catalogue(every_s=1200, stagger_ms=4000)


def _first_promote_s(min_change_users: float) -> float | None:
    cfg = load_config(None, environ={"VIRALTREND_DETECT_MIN_CHANGE_USERS": str(min_change_users)})
    rows = sorted(_sparse_catalogue() + _shaped("p-slow", _slow_ramp()))
    _, messages = run_engine(batch_of(rows), [], cfg)
    ts = [m["event_ts"] for m in messages if m["action"] == "promote" and m["product_id"] == "p-slow"]
    return (min(ts) - T0) / 1000.0 if ts else None


def test_a_slow_ramp_is_backed_by_its_users_since_the_change_point():
    """Its 5-minute window holds fewer than trust.min_unique_users users until its rate reaches about
    1.7/min (~90 min in); its users since the change point (up to the coarse ring's 24 minutes) reach
    detect.min_change_users (the default, 16; 24 before) sooner.  With that backing it is promoted earlier
    than without it (an unreachable floor)."""
    with_backing = _first_promote_s(load_config(None, environ={}).detect.min_change_users)
    without = _first_promote_s(1e9)
    assert with_backing is not None
    assert without is None or without >= with_backing + 300.0


def _plateau(product: str, start_ms: int, share_every: int, first_user: int) -> list[tuple]:
    """A flat plateau: a new user every 6 s for 45 minutes (450 users), one in ten an add-to-cart;
    with ``share_every`` > 0, every ``share_every``-th viewer also shares it 20 s after the view.  The
    users are the catalogue's accounts from ``first_user`` on (two plateaus apart share no audience)."""
    rows = []
    for i in range(450):
        t, user = T0 + start_ms + i * 6000, f"user{(first_user + i) % 3000}"
        rows.append((t, "add_to_cart" if i % 10 == 0 else "view", product, "s-x", None, user))
        if share_every and i % share_every == 0:
            rows.append((t + 20_000, "share", product, "s-x", None, user))
    return rows


@pytest.fixture(scope="module")
def plateaus():
    """A catalogue whose views are shared one in 20; a plateau nobody shares (a livestream, a price
    drop: a level change) and a plateau whose viewers share one in three (a cascade recruiting)."""
    rows = _catalogue(every_s=600)
    rows += [(t + 30_000, "share", *rest) for k, (t, _, *rest) in enumerate(rows) if k % 20 == 0]
    rows += _plateau("p-level", 0, 0, 0) + _plateau("p-recruits", 2 * HOUR_MS, 3, 1500)
    out = {}
    for ratio in (0.0, load_config(None, environ={}).detect.sustain_min_share_ratio):
        env = {"VIRALTREND_DETECT_SUSTAIN_MIN_SHARE_RATIO": str(ratio)}
        _, messages = run_engine(batch_of(sorted(rows)), [], load_config(None, environ=env))
        out[ratio] = {m["product_id"]: m for m in messages if m["action"] == "promote"}
    return out


def test_a_plateau_that_recruits_nobody_is_not_a_trend(plateaus):
    """Flat for 45 minutes, longer than detect.sustain_s: promoted on the sustain path alone without the
    recruitment gate; with it (the default), a plateau whose viewers share less than the catalogue's
    are not promoted, and one whose viewers share more is, with its share ratio among the reasons."""
    ungated, gated = plateaus[0.0], plateaus[load_config(None, environ={}).detect.sustain_min_share_ratio]
    assert "p-level" in ungated and "p-recruits" in ungated
    assert "p-level" not in gated
    promote = gated["p-recruits"]
    assert promote["features"]["share_ratio"] >= 1.0
    assert any(r.startswith("shares_per_view_x") for r in promote["reasons"])


def _vouch_cols(engaged: float) -> dict[str, np.ndarray]:
    """A candidate where only the shape test waits and the model vouches (the flash sale's trickle)."""
    one = np.ones(1)
    return {
        "evidence": 2.0 * one, "growth_z": 1.5 * one, "growth_z_slow": 0.5 * one, "fade_z": 0.0 * one,
        "change_s": 600.0 * one, "change_users": 30.0 * one, "recent_lift": 20.0 * one,
        "share_ratio": 0.0 * one, "engaged_ratio": engaged * one,
    }  # fmt: skip


def test_the_vouch_asks_for_more_than_views():
    """model.min_engaged_ratio: a warm model's vouch for a product seen and nothing more (no like, share,
    cart) does not make it ready (the default asks a quarter of the catalogue's engagement per view); with
    engagement at the catalogue's rate it does; off (0), views do."""
    p, users = np.array([0.9]), np.array([30.0])
    alone = {"VIRALTREND_MODEL_RECRUIT_SHARE_RATIO": "0"}  # the share gate apart (its own test below)
    off = SequentialDetector(
        load_config(None, environ={**alone, "VIRALTREND_MODEL_MIN_ENGAGED_RATIO": "0"}), capacity=2
    )
    on = SequentialDetector(
        load_config(None, environ={**alone, "VIRALTREND_MODEL_MIN_ENGAGED_RATIO": "0.25"}), capacity=2
    )
    assert off.ready(_vouch_cols(0.0), users, p)[0]
    assert not on.ready(_vouch_cols(0.0), users, p)[0]
    assert on.ready(_vouch_cols(1.0), users, p)[0]


def _recruit_cols(change_s: float, share: float) -> dict[str, np.ndarray]:
    """:func:`_vouch_cols`' candidate (engaged), with its change's age and its shares per view."""
    cols = _vouch_cols(1.0)
    cols["change_s"] = np.array([change_s])
    cols["share_ratio"] = np.array([share])
    return cols


def test_the_vouch_asks_an_older_change_to_have_been_passed_on():
    """model.recruit_share_ratio: the model's vouch asks shares per view (x the catalogue's) in proportion
    to the change's age over detect.sustain_s.  A young change is vouched for with few shares; a change
    1200 s old that nobody passes on (a ring's accounts arriving at a flat rate) is not, unless shared
    on; off (0), it is."""
    p, users = np.array([0.9]), np.array([30.0])
    env = {"VIRALTREND_DETECT_SUSTAIN_S": "1500"}
    key = "VIRALTREND_MODEL_RECRUIT_SHARE_RATIO"
    off = SequentialDetector(load_config(None, environ={**env, key: "0"}), 2)
    on = SequentialDetector(load_config(None, environ={**env, key: "2"}), 2)
    assert on.ready(_recruit_cols(200.0, 0.5), users, p)[0]  # asks 2 x 200 / 1500 = 0.27
    assert not on.ready(_recruit_cols(1200.0, 0.5), users, p)[0]  # asks 1.6
    assert on.ready(_recruit_cols(1200.0, 2.0), users, p)[0]
    assert off.ready(_recruit_cols(1200.0, 0.5), users, p)[0]


def test_the_vouch_takes_more_users_while_the_slow_ring_sees_growth():
    """model.grown_change_users: past max_change_users users since the change point the vouch holds up
    to grown_change_users while the slow ring sees growth (growth z >= model.min_growth_z); a spike's or
    a burst's slow ring (flat, fading, or too young to say) does not."""
    p, users = np.array([0.9]), np.array([150.0])
    base = {
        "VIRALTREND_MODEL_RECRUIT_SHARE_RATIO": "0",
        "VIRALTREND_MODEL_MAX_CHANGE_USERS": "60",
        "VIRALTREND_MODEL_GROWTH_Z_USERS": "0",  # the z a larger audience asks: its own test below
    }
    off = SequentialDetector(
        load_config(None, environ={**base, "VIRALTREND_MODEL_GROWN_CHANGE_USERS": "0"}), 2
    )
    on = SequentialDetector(
        load_config(None, environ={**base, "VIRALTREND_MODEL_GROWN_CHANGE_USERS": "200"}), 2
    )

    def cols(slow_z: float, change_users: float = 120.0) -> dict[str, np.ndarray]:
        c = _vouch_cols(1.0)
        c["growth_z_slow"], c["change_users"] = np.array([slow_z]), np.array([change_users])
        return c

    assert on.ready(cols(1.5), users, p)[0]
    assert not off.ready(cols(1.5), users, p)[0]
    assert not on.ready(cols(0.5), users, p)[0]  # sees no growth
    assert not on.ready(cols(0.0), users, p)[0]  # too young to see any
    assert not on.ready(cols(1.5, 250.0), users, p)[0]  # past grown_change_users


def test_the_vouch_asks_a_larger_audience_for_a_larger_growth_z():
    """model.growth_z_users: past growth_z_users users since the change point, the growth z the vouch asks
    grows as the root of the users (the same growth per user: a z grows with the root of the count).  A
    burst of 125 users whose rings see a growth z of 1.1 (market tuning seed 111: flat, not a ramp) is not
    vouched for; a ramp with as many users and a z of 2.7 is, and so are 40 users at a z of 1.1."""
    p, users = np.array([0.9]), np.array([150.0])
    base = {"VIRALTREND_MODEL_RECRUIT_SHARE_RATIO": "0", "VIRALTREND_MODEL_GROWN_CHANGE_USERS": "200"}
    off = SequentialDetector(load_config(None, environ={**base, "VIRALTREND_MODEL_GROWTH_Z_USERS": "0"}), 2)
    on = SequentialDetector(load_config(None, environ={**base, "VIRALTREND_MODEL_GROWTH_Z_USERS": "60"}), 2)

    def cols(z: float, change_users: float) -> dict[str, np.ndarray]:
        c = _vouch_cols(1.0)
        c["growth_z"], c["growth_z_slow"] = np.array([z - 0.5]), np.array([z])
        c["change_users"] = np.array([change_users])
        return c

    assert off.ready(cols(1.1, 125.0), users, p)[0]
    assert not on.ready(cols(1.1, 125.0), users, p)[0]  # asks sqrt(125 / 60) = 1.44
    assert on.ready(cols(2.7, 125.0), users, p)[0]
    assert on.ready(cols(1.1, 40.0), users, p)[0]  # asks min_growth_z (1.0)


def test_the_warm_model_takes_a_flat_step_that_is_passed_on():
    """model.step_share_ratio: a flat step (growth z 0, young: no rule path) whose viewers share far more
    than the catalogue's is ready under the warm model whatever its probability, as a saturated cascade;
    one shared like a creator burst (4 x) is not, nor is any under the rule alone (no model), nor once the
    key is off (0), nor while its change is younger than model.min_change_s."""
    users, p = np.array([30.0]), np.array([0.1])  # the model does not vouch by its probability

    def cols(share: float, change_s: float = 300.0) -> dict[str, np.ndarray]:
        c = _recruit_cols(change_s, share)
        c["growth_z"] = c["growth_z_slow"] = np.zeros(1)  # flat: neither accelerating nor fading
        return c

    on = SequentialDetector(load_config(None, environ={"VIRALTREND_MODEL_STEP_SHARE_RATIO": "9"}), 2)
    off = SequentialDetector(load_config(None, environ={"VIRALTREND_MODEL_STEP_SHARE_RATIO": "0"}), 2)
    assert on.ready(cols(12.0), users, p)[0]
    assert not on.ready(cols(4.0), users, p)[0]
    assert not on.ready(cols(12.0), users)[0]  # the rule's own verdict
    assert not on.ready(cols(12.0, change_s=120.0), users, p)[0]
    assert not off.ready(cols(12.0), users, p)[0]
