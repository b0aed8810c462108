"""Pinned decisions: a fixed scenario under the default config gives byte-identical decisions.

The hot-path rewrite (issue 11: columns, hashed ids, bounded user state, cheap idle ticks) must
not change a single decision.  The pin is the SHA-256 of the decision messages (every key but
``emitted_at``, keys sorted, one JSON line each) of a small simulated day with every attack
and duplicates, run whole and cut into batches.  A change that is *meant* to change decisions
(detection, trust, board policy) recomputes the pin and says so in its commit message::

    .venv/bin/python -m pytest tests/test_pinned_decisions.py -q -p no:cacheprovider
    # the failure message prints the new digest
"""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from tests.conftest import read_events, run_engine

SCENARIO = dict(
    n_events=60_000,
    n_products=4_000,
    n_viral=2,
    n_steady=3,
    n_spikes=4,
    duration_s=8 * 3600.0,
    seed=7,
    n_users=20_000,
    duplicate_fraction=0.01,
    n_bot_farms=1,
    n_click_farms=1,
    n_lockstep_rings=1,
    n_banned_viral=1,
)
#: SHA-256 of the scenario's events.ndjson: if this moves, the simulator changed, not the engine.
EVENTS_SHA256 = "9d80085c3dbdbca77b6f442917d4be869c97150b08c5dd1a1b3f08bfdf32a661"
#: SHA-256 of the decisions.  First computed on ee7f54b, before the issue 11 rewrite (50d96417...);
#: recomputed for ea85ff7 (audience memory: containment of shared minima, a detection change), with
#: the engine's user releases and idle-tick fast path switched off and on: the same digest; for the
#: detector's ``change_users`` feature column (the decisions, actions, products and times, are the
#: same with detect.min_change_users at 24 and at 1e9: only the messages' features gained a key); and
#: for issue 13 (branch trust): every decision is the same (the same actions, products and times);
#: the 4 ring blocks now also give ``recycled_audience_..._catalogue_...`` among their reasons; and for
#: issue 13 again (branch trust: hot products stay sketched across ticks, catalogue references from the
#: smaller of the trend and baseline windows): the same actions, products and times; the 4 ring blocks'
#: reasons now also name ``lockstep_with_<product>_shared_<n>%``, and the catalogue's figure is 1.0
#: (was 1.2-1.3); and for issue 13 (branch trust4: lockstep shares at their lower bound and beyond
#: chance, co-audience, fresh-account farms from 60 %): the same actions, products and times; the 4 ring
#: blocks' lockstep reasons now give ``..._shared_<n>%_of_<sampled>_sampled_chance_<c>%``, and two name
#: another sibling of the same ring as their partner (the most significant match, not the largest share).
#: Recomputed for the online model on by default (issue 10): the same actions, products and times but one
#: block (p-002623) 140 s earlier; promotions carry the model's probability and vouch among their features.
#: Recomputed for detect.growth_z 4 (issue 10: flat spikes crossed 3 by chance): the same products promoted
#: and blocked; three promotions 60-160 s later, the four ring blocks 50-60 s later.
#: Recomputed for detect.sustain_min_share_ratio (issue 10, branch detect7: a plateau must be shared on to be
#: sustained): the same actions, products and times with the gate at 2 (the default) and at 0; messages gained
#: the ``share_ratio`` feature and promotions the ``shares_per_view_x<r>`` reason.
#: Recomputed for issue 13 (branch trust8: trust.recycled_contrast 2 -> 3): the same actions, products
#: and times; the 4 ring blocks no longer list ``recycled_audience_2.5-3.0_..._catalogue_1.0`` among their
#: reasons.
#: Recomputed for float32 per-product accumulators (issue 11, branch perf9-f32: 240 -> 120 bytes per
#: product, landmark moves at exponent 30): the same 532 messages, actions, products and times; features
#: (printed to 6 significant digits) differ in the sixth digit in 54 values of promote/update/demote/block
#: messages (at most 1.2e-5 relative: z_1m 0.0251424 -> 0.0251427), three board scores in the 6th decimal
#: (0.898768 -> 0.898767, 0.440765 -> 0.440766, 0.733061 -> 0.733062).  Before: c957ddf6c995....
#: Recomputed for model.min_engaged_ratio 0.25 (issue 10, branch detect9: the vouch asks for engagement beyond
#: views): the same actions, products, times and reasons with the gate at 0.25 (the default) and at 0
#: (c957ddf6...); messages gained the ``engaged_ratio`` feature.  Both merged (session 9): the same 39
#: actions, products and times as 614786d1... (checked).
#: Recomputed for model.step_share_ratio 9 (issue 10, branch detect14: the warm model takes a flat step shared
#: on 9 x the catalogue's): the same actions and products; one block (p-002623, fresh accounts 100 %) 80 s
#: earlier (1764221910000 -> 1764221830000), its reasons now from that tick.  Before: 90421188bd75....
#: Recomputed for detect.sustain_share_half_life_s 3600 / sustain_share_long_ratio 4 (issue 10, branch
#: detect16: the sustain path's share test over the hour as well): with the key at 0 the digest is the
#: one before (52fda576...); on, the same 532 messages, actions, products, times and reasons; messages
#: gained the ``sustain_share_ratio`` and ``sustain_shares`` features.
#: Recomputed for detect.joint_growth_z 4 (issue 10, branch detect20b: the growth test over both rings as one
#: series): with the key at 0 the digest is the one before (9009c8bd...); on, the same three products
#: promoted, two of them earlier (p-003556 50 s, p-001505 30 s); messages gained the ``growth_z_joint``
#: feature.
#: Recomputed for trust.no_conversion_expected_buys 3 (issue 13, session 21: no cart where fewer than 3 were
#: due at the catalogue's rate holds rather than blocks): with the new ``expected_buys`` feature removed from
#: every message the digest is the one before (2acc4a5d...): the same 535 messages, decisions and reasons.
#: Recomputed for model.max_class_weight 10 (issue 10, branch model22, on in session 22): with 0 (the
#: built-in 100) the digest is the one before (59e8c210...); at 10 the same 535 messages, the same actions,
#: products and times and board snapshots; the online model's ``model_p`` feature differs in 13 messages and
#: one message's reasons (its vouch's probability).
DECISIONS_SHA256 = "50d8ddea7bed3e226f07fb4bf3efa8de28864a9b7ada8c7dd79e5eaeabadd8da"

_ENCODE = msgspec.json.Encoder(order="sorted")


def decisions_digest(messages: list[dict[str, object]]) -> str:
    """SHA-256 of ``messages`` without ``emitted_at``, one sorted-key JSON line each."""
    h = hashlib.sha256()
    for m in messages:
        h.update(_ENCODE.encode({k: v for k, v in m.items() if k != "emitted_at"}))
        h.update(b"\n")
    return h.hexdigest()


@pytest.fixture(scope="module")
def pinned_events(scenario_factory):
    directory = scenario_factory(**SCENARIO)
    digest = hashlib.sha256((directory / "events.ndjson").read_bytes()).hexdigest()
    assert digest == EVENTS_SHA256, "the simulator's output changed: recompute both pins from main"
    return read_events(directory / "events.ndjson")


def test_pinned_scenario_decisions_are_byte_identical(pinned_events):
    _, messages = run_engine(pinned_events, [])
    assert {m["action"] for m in messages} >= {"promote", "block", "demote", "board"}
    assert decisions_digest(messages) == DECISIONS_SHA256


def test_pinned_scenario_decisions_are_byte_identical_in_small_batches(pinned_events):
    _, messages = run_engine(pinned_events, list(range(0, len(pinned_events), 4_999)))
    assert decisions_digest(messages) == DECISIONS_SHA256
