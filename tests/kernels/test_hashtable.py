from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from tests.kernels import reference
from viraltrend.errors import CheckpointError
from viraltrend.kernels.decay import _prefetch
from viraltrend.kernels.hashtable import (
    _AHEAD,
    _EMPTY,
    _FREE_ROW,
    _LOW32,
    _UNSET,
    UserTable,
    _find,
    _home,
    _row_find,
    _row_rehash,
    _sorted_has_from,
    hash_ids,
    signature_slots,
)
from viraltrend.kernels.users import UserSketches

IDS = st.text(min_size=1, max_size=12)


@settings(max_examples=50, deadline=None)
@given(ids=st.lists(IDS, max_size=30))
def test_hash_ids_match_reference(ids):
    assert hash_ids(ids).tolist() == [reference.user_hash(s) for s in ids]


def test_ids_with_nul_and_non_ascii_hash_like_the_reference():
    ids = ["a\x00b", "é", "", "\x00", "u1"]
    assert hash_ids(ids).tolist() == [reference.user_hash(s) for s in ids]


def test_empty_batch_hashes_to_nothing():
    assert hash_ids([]).shape == (0,)


def test_hashes_are_distinct_on_a_million_ids():
    h = hash_ids([f"user-{i}" for i in range(1_000_000)])
    assert np.unique(h).shape[0] == h.shape[0] and (h != 0).all()


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("intern"), st.lists(st.tuples(st.integers(0, 12), st.integers(0, 400)), max_size=20)
        ),
        st.tuples(st.just("release"), st.none()),
        st.tuples(st.just("recycle"), st.integers(0, 4)),  # 4: recycle_all
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_user_table_matches_reference(ops):
    got = UserTable(idle_ms=50, allowed_lateness_ms=20, capacity=2)
    want = reference.UserTableReference(50, 20)
    clock = 0
    for op, arg in ops:
        if op == "intern":
            users = [f"u{u}" for u, _ in arg]
            ts = [clock + dt for _, dt in arg]
            clock += 100
            slots, back = got.intern(hash_ids(users), np.array(ts, np.int64))
            w_slots, w_back = want.intern([reference.user_hash(u) for u in users], ts)
            assert (slots.tolist(), back.tolist()) == (w_slots, w_back)
        elif op == "release":
            assert got.release_idle().tolist() == want.release_idle()
        else:
            held = got.held_slots()
            assert held.tolist() == sorted(want.held)
            if arg == 4:
                got.recycle_all()
                want.recycle(held.tolist())
            else:
                got.recycle(held[arg::2])
                want.recycle(held[arg::2].tolist())
            assert got.to_arrays()["free"].tolist() == sorted(want.free)
        assert len(got) == len(want.slot_of) and got.high_water == want.high_water


SWEEP_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("intern"), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 400)), max_size=30)
        ),
        st.tuples(st.just("sweep"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(ops=SWEEP_OPS, max_veterans=st.sampled_from([None, 2, 6]), track_held=st.booleans())
def test_release_and_recycle_is_release_idle_then_recycle_all(ops, max_veterans, track_held):
    """The engine's sweep in one compiled call: the same slots, and the same table after (veterans,
    their rotation, free slots, every array of a checkpoint)."""
    kw = {"idle_ms": 50, "allowed_lateness_ms": 20, "capacity": 2, "max_veterans": max_veterans}
    one, two = UserTable(**kw, track_held=track_held), UserTable(**kw, track_held=track_held)
    clock = 0
    for op, arg in ops:
        if op == "intern":
            users = hash_ids([f"u{u}" for u, _ in arg])
            ts = np.array([clock + dt for _, dt in arg], np.int64)
            clock += 100
            a, b = one.intern(users, ts), two.intern(users, ts)
            assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
        else:
            want = one.release_idle()
            one.recycle_all()
            assert two.release_and_recycle().tolist() == want.tolist()
        x, y = one.to_arrays(), two.to_arrays()
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        assert len(one) == len(two) and one.n_veterans == two.n_veterans and one.high_water == two.high_water


def test_batch_of_events_equals_one_event_at_a_time():
    users = [f"u{i % 37}" for i in range(500)]
    ts = np.arange(500, dtype=np.int64) * 7
    whole = UserTable(idle_ms=100, allowed_lateness_ms=0).intern(hash_ids(users), ts)[0]
    one = UserTable(idle_ms=100, allowed_lateness_ms=0)
    each = [int(one.intern(hash_ids([u]), ts[i : i + 1])[0][0]) for i, u in enumerate(users)]
    assert whole.tolist() == each


def test_idle_users_are_released_and_slots_reused_lowest_first():
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0)
    t.intern(hash_ids(["a", "b", "c"]), np.array([0, 0, 5000], np.int64))
    assert t.release_idle().tolist() == [0, 1]
    t.recycle(t.held_slots())
    slots, back = t.intern(hash_ids(["d", "e", "f"]), np.array([5001, 5002, 5003], np.int64))
    assert slots.tolist() == [0, 1, 3] and not back.any() and len(t) == 4


def test_returning_user_takes_its_held_slot_back():
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0)
    t.intern(hash_ids(["a", "b"]), np.array([0, 3000], np.int64))
    t.release_idle()
    slots, back = t.intern(hash_ids(["x", "a"]), np.array([3001, 3002], np.int64))
    assert slots.tolist() == [2, 0] and back.tolist() == [False, True]


def test_returning_user_does_not_take_a_slot_another_user_was_released_from():
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0)
    t.intern(hash_ids(["a", "b"]), np.array([0, 1001], np.int64))
    assert t.release_idle().tolist() == [0]
    t.recycle(t.held_slots())
    t.intern(hash_ids(["c"]), np.array([1002], np.int64))  # slot 0 again, now c's
    t.intern(hash_ids(["d"]), np.array([3000], np.int64))
    assert t.release_idle().tolist() == [0, 1]  # c's and b's slots are held
    slots, back = t.intern(hash_ids(["a"]), np.array([3001], np.int64))
    assert back.tolist() == [True] and slots.tolist() == [3]


def test_late_events_count_at_their_effective_time():
    t = UserTable(idle_ms=100, allowed_lateness_ms=50)
    t.intern(hash_ids(["new", "old"]), np.array([1000, 0], np.int64))  # "old" is effective at 950
    assert t.last_ms[:2].tolist() == [1000, 950]


def test_round_trip_through_plain_arrays_continues_identically():
    t = UserTable(idle_ms=100, allowed_lateness_ms=0)
    t.intern(hash_ids(["a", "b", "c", "d"]), np.array([0, 10, 20, 500], np.int64))
    t.release_idle()
    t.recycle(t.held_slots()[:1])
    t2 = UserTable.from_arrays(t.to_arrays(), idle_ms=100, allowed_lateness_ms=0)
    more = (hash_ids(["b", "e", "f", "d"]), np.array([600, 601, 602, 603], np.int64))
    a, b = t.intern(*more), t2.intern(*more)
    assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()


def test_checkpoint_under_other_windows_is_refused():
    arrays = UserTable(idle_ms=100, allowed_lateness_ms=0).to_arrays()
    with pytest.raises(CheckpointError, match="idle_ms"):
        UserTable.from_arrays(arrays, idle_ms=200, allowed_lateness_ms=0)


def test_corrupt_checkpoint_is_refused():
    t = UserTable(idle_ms=100, allowed_lateness_ms=0)
    t.intern(hash_ids(["a", "b"]), np.array([0, 1], np.int64))
    arrays = t.to_arrays()
    arrays["hash_of"] = np.array([arrays["hash_of"][0]] * 2, np.uint64)
    with pytest.raises(CheckpointError, match="corrupt"):
        UserTable.from_arrays(arrays, idle_ms=100, allowed_lateness_ms=0)


def test_names_of_an_older_checkpoint_become_hashes_in_the_same_slots():
    t = UserTable.from_names(["a", None, "c"], idle_ms=100, allowed_lateness_ms=0, max_ts_ms=50)
    slots, _ = t.intern(hash_ids(["c", "a", "z"]), np.array([60, 61, 62], np.int64))
    assert slots.tolist() == [2, 0, 1]


def test_signature_slots_are_the_slots_a_kept_signature_holds():
    sk = UserSketches(k=8, seed=3)
    sk.watch(np.array([0], np.int64))
    sk.update(np.array([0, 0, 0], np.int64), np.array([4, 9, 700], np.int64))
    got = np.flatnonzero(signature_slots(sk.sig[:1], sk.seeds, 600)).tolist()
    want = [
        u
        for u in (4, 9)
        if any(
            v == m for v, m in zip(reference.minhash_signature([u], 8, 3), sk.sig[0].tolist(), strict=True)
        )
    ]
    assert got == want and got  # slot 700 is beyond high water: not reported


@settings(max_examples=30, deadline=None)
@given(slots=st.lists(st.integers(0, 2**20 - 1), min_size=1, max_size=5), seed=st.integers(0, 2**64 - 1))
def test_signature_slots_invert_the_hash_family(slots, seed):
    sk = UserSketches(k=4, seed=seed)
    values = np.array([reference.minhash_signature([u], 4, seed) for u in slots], np.uint64)
    got = signature_slots(values, sk.seeds, 2**20)
    assert np.flatnonzero(got).tolist() == sorted(set(slots))


def _release_wave(t, names, at_ms):
    """Intern ``names`` at ``at_ms``, then let them go idle and release them (a wave of veterans)."""
    t.intern(hash_ids(names), np.full(len(names), at_ms, np.int64))
    t.intern(hash_ids(["clock"]), np.array([at_ms + 10_000], np.int64))  # moves time past idle_ms
    t.release_idle()
    t.recycle_all()


def test_veterans_are_bounded_in_two_generations_and_the_oldest_return_as_new():
    # generations of 10; each wave releases 5 (4 + the previous wave's clock user), so the newer
    # generation turns older every second or third wave: waves 0-2, then 3-4, then 5
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0, max_veterans=20)
    waves = [[f"w{w}-{i}" for i in range(4)] for w in range(6)]
    for w, names in enumerate(waves):
        _release_wave(t, names, w * 100_000)
        assert t.n_veterans <= 20
    # the newest waves are remembered: a returning user is known, not new
    _, back = t.intern(hash_ids([waves[-1][0], waves[-2][0]]), np.array([700_000, 700_001], np.int64))
    assert back.tolist() == [True, True]
    # the oldest wave was forgotten with its generation: its users come back as new ones
    _, back = t.intern(hash_ids([waves[0][0]]), np.array([700_002], np.int64))
    assert back.tolist() == [False]
    unbounded = UserTable(idle_ms=1000, allowed_lateness_ms=0)
    for w, names in enumerate(waves):
        _release_wave(unbounded, names, w * 100_000)
    _, back = unbounded.intern(hash_ids([waves[0][0]]), np.array([700_002], np.int64))
    assert back.tolist() == [True] and unbounded.n_veterans > 20


def test_memory_stays_flat_under_endless_new_user_ids():
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0, max_veterans=2_000)
    sizes = []
    for w in range(40):
        _release_wave(t, [f"r{w}-{i}" for i in range(500)], w * 100_000)
        sizes.append(t.nbytes)
    assert max(sizes[20:]) == max(sizes[10:20])  # flat once both generations are full


def test_round_trip_keeps_both_generations_of_veterans():
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0, max_veterans=8)
    for w in range(3):
        _release_wave(t, [f"w{w}-{i}" for i in range(4)], w * 100_000)
    t2 = UserTable.from_arrays(t.to_arrays(), idle_ms=1000, allowed_lateness_ms=0, max_veterans=8)
    names = ["w0-0", "w1-0", "w2-0", "new"]
    for w in range(3, 5):  # both keep rotating alike
        _release_wave(t, [f"w{w}-{i}" for i in range(4)], w * 100_000)
        _release_wave(t2, [f"w{w}-{i}" for i in range(4)], w * 100_000)
    more = (hash_ids(names), np.arange(600_000, 600_004, dtype=np.int64))
    a, b = t.intern(*more), t2.intern(*more)
    assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
    assert {k: v.tolist() for k, v in t.to_arrays().items()} == {
        k: v.tolist() for k, v in t2.to_arrays().items()
    }


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 12), st.integers(0, 90)), min_size=1, max_size=12), max_size=25
    )
)
def test_without_held_slots_a_table_recycling_at_every_release_gives_the_same_slots(batches):
    # the engine's use: release_idle then recycle_all; prev_of (8 B per slot) decides nothing then
    kept = UserTable(idle_ms=50, allowed_lateness_ms=20, capacity=2)
    lean = UserTable(idle_ms=50, allowed_lateness_ms=20, capacity=2, track_held=False)
    clock = 0
    for k, batch in enumerate(batches):
        users = hash_ids([f"u{u}" for u, _ in batch])
        ts = np.array([clock + dt for _, dt in batch], np.int64)
        clock += 100
        a, b = kept.intern(users, ts), lean.intern(users, ts)
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
        if k % 2:
            assert kept.release_idle().tolist() == lean.release_idle().tolist()
            kept.recycle_all()
            lean.recycle_all()
        if k % 5 == 4:  # through a checkpoint: the lean one keeps no prev_of, an older one's is dropped
            lean = UserTable.from_arrays(
                kept.to_arrays(), idle_ms=50, allowed_lateness_ms=20, track_held=False
            )
    assert lean.prev_of.shape == (0,) and lean.to_arrays()["prev_of"].shape == (0,)
    assert lean.prev_of.nbytes == 0 and kept.prev_of.nbytes > 0


def test_without_held_slots_a_veteran_does_not_take_its_held_slot_back():
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0, track_held=False)
    t.intern(hash_ids(["a", "b"]), np.array([0, 3000], np.int64))
    t.release_idle()
    slots, back = t.intern(hash_ids(["x", "a"]), np.array([3001, 3002], np.int64))
    assert slots.tolist() == [2, 3] and back.tolist() == [False, True]  # still known, not fresh


def test_hashes_equal_in_their_low_32_bits_are_different_users():
    # the slot table keeps only the low 32 bits in a row: the full hash in hash_of tells them apart
    low = np.uint64(0x9E3779B9)
    hashes = (np.arange(1, 301, dtype=np.uint64) << np.uint64(32)) | low  # 300 users, one low half
    t = UserTable(idle_ms=1000, allowed_lateness_ms=0, capacity=2)
    order = np.concatenate([hashes, hashes[::-1], hashes[::3]])
    slots, _ = t.intern(order, np.zeros(order.shape[0], np.int64))
    first = slots[:300]
    assert sorted(first.tolist()) == list(range(300)) and len(t) == 300
    assert slots[300:600].tolist() == first[::-1].tolist() and slots[600:].tolist() == first[::3].tolist()
    t.intern(hashes[:100], np.full(100, 5000, np.int64))  # the first 100 stay active
    assert t.release_idle().tolist() == sorted(first[100:].tolist())
    t.recycle_all()
    again, back = t.intern(hashes, np.full(300, 5001, np.int64))
    assert again[:100].tolist() == first[:100].tolist() and not back[:100].any() and back[100:].all()
    restored = UserTable.from_arrays(t.to_arrays(), idle_ms=1000, allowed_lateness_ms=0)
    assert restored.intern(hashes, np.full(300, 5002, np.int64))[0].tolist() == again.tolist()


def _release_one_pass(rows, hash_of, prev_of, last_ms, high_water, cutoff_ms):
    """``_release`` as it was before perf14: each idle slot's row deleted as the scan finds it."""
    from viraltrend.kernels import hashtable as ht

    out = []
    for s in range(high_water):
        if hash_of[s] != 0 and last_ms[s] < cutoff_ms:
            ht._row_delete(rows, ht._row_find(rows, hash_of, hash_of[s]))
            if prev_of.shape[0]:
                prev_of[s] = hash_of[s]
            hash_of[s] = 0
            last_ms[s] = np.iinfo(np.int64).min
            out.append(s)
    return np.array(out, np.int64)


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.integers(0, 3000), min_size=1, max_size=400),
    times=st.lists(st.integers(0, 1000), min_size=1, max_size=400),
    cutoff=st.integers(0, 1000),
)
def test_release_deletes_the_rows_in_slot_order_as_one_pass_did(users, times, cutoff):
    """The releases' rows, found first then deleted (with prefetches), leave the one-pass tables.

    The slots, the rows table and every per-slot array must be those of deleting each row as the
    slot scan finds it (the deletions keep that order; many users on a small table make long probe
    runs for the backward-shift deletions to move).
    """
    from viraltrend.kernels import hashtable as ht

    t = UserTable(idle_ms=1, allowed_lateness_ms=0, max_veterans=None)
    ts = np.array([times[i % len(times)] for i in range(len(users))], np.int64)
    t.intern(hash_ids([f"u{u}" for u in users]), np.sort(ts))
    a = [t._rows.copy(), t.hash_of.copy(), t.prev_of.copy(), t.last_ms.copy()]
    b = [x.copy() for x in a]
    got = ht._release(*a, np.int64(t._high_water), np.int64(cutoff))
    want = _release_one_pass(*b, t._high_water, cutoff)
    assert got.tolist() == want.tolist()
    for x, y in zip(a, b, strict=True):
        assert x.tobytes() == y.tobytes()


@njit(cache=False)
def _sorted_has(values, start, x):
    """``x in values[start:]`` for an ascending int32 array: the search the one loop below used."""
    pos = start + np.searchsorted(values[start:], x)
    return pos < values.shape[0] and values[pos] == x


# perf24: the user table's interning before its split into a no-reference-count run and a shell, kept as
# the reference the split must equal (the same loop, one event at a time, arrays regrown in place)
@njit(cache=False)
def _one_loop_intern(
    rows, used, hash_of, prev_of, last_ms, high_water,
    free, free_pos, vet_keys, vet_vals, vet_used, old_keys,
    old_vals, old_used, max_ts_ms, hashes, ts_ms, lateness_ms,
):  # fmt: skip
    """Slots of ``hashes`` in order, new ones from ``free[free_pos:]`` (sorted) then ``high_water``.

    Updates ``last_ms`` with each event's effective time; returns the (possibly regrown)
    slot table ``rows``, ``hash_of``, ``prev_of``, ``last_ms`` and the new ``used``, ``high_water``,
    ``free_pos``, ``max_ts_ms``, plus ``slots`` int64[n] and ``returning`` bool[n] (a new entry
    whose hash is a veteran's).  A veteran takes back its last slot while that slot is held
    (released by it, ``prev_of[slot] == hash``, and not recycled: free slots are ``free[free_pos:]``).
    """
    n = hashes.shape[0]
    slots = np.empty(n, np.int64)
    returning = np.zeros(n, np.bool_)
    for i in range(n):
        if i + _AHEAD < n:  # a hint only (never faults): the rows the lookups below will read
            ha = hashes[i + _AHEAD]
            _prefetch(rows, np.int64(ha & _LOW32 & np.uint64(rows.shape[0] - 1)))
            if vet_used:
                _prefetch(vet_keys, _home(ha, vet_keys.shape[0] - 1))
            if old_used:
                _prefetch(old_keys, _home(ha, old_keys.shape[0] - 1))
        t = ts_ms[i]
        if t > max_ts_ms:
            max_ts_ms = t
        e = max(t, max_ts_ms - lateness_ms)
        h = hashes[i]
        idx = _row_find(rows, hash_of, h)
        if rows[idx] != _FREE_ROW:
            s = np.int64(rows[idx] & _LOW32)
        else:
            if 4 * (used + 1) > 3 * rows.shape[0]:
                rows = _row_rehash(rows, 2 * rows.shape[0])
                idx = _row_find(rows, hash_of, h)
            s = -1
            v = -1
            if vet_used:  # the newer generation of veterans first, then the older one
                j = _find(vet_keys, h)
                if vet_keys[j] == h:
                    v = vet_vals[j]
            if v < 0 and old_used:
                j = _find(old_keys, h)
                if old_keys[j] == h:
                    v = old_vals[j]
            if v >= 0:
                returning[i] = True
                held = (
                    prev_of.shape[0] > 0  # held slots tracked
                    and hash_of[v] == _EMPTY
                    and prev_of[v] == h
                    and not _sorted_has(free, free_pos, v)
                )
                if held:
                    s = v  # held: its MinHash values may be in kept signatures, so keep them its own
            if s < 0 and free_pos < free.shape[0]:
                s = free[free_pos]
                free_pos += 1
            elif s < 0:
                s = high_water
                high_water += 1
                if s >= hash_of.shape[0]:
                    grown_h = np.zeros(2 * hash_of.shape[0], np.uint64)
                    grown_h[: hash_of.shape[0]] = hash_of
                    grown_p = np.zeros(2 * hash_of.shape[0] if prev_of.shape[0] else 0, np.uint64)
                    grown_p[: prev_of.shape[0]] = prev_of
                    grown_l = np.full(2 * hash_of.shape[0], _UNSET, np.int64)
                    grown_l[: hash_of.shape[0]] = last_ms
                    hash_of, prev_of, last_ms = grown_h, grown_p, grown_l
            rows[idx] = ((h & _LOW32) << np.uint64(32)) | np.uint64(s)
            used += 1
            hash_of[s] = h
            last_ms[s] = e
        if e > last_ms[s]:
            last_ms[s] = e
        slots[i] = s
    return rows, used, hash_of, prev_of, last_ms, high_water, free_pos, max_ts_ms, slots, returning


@settings(max_examples=80, deadline=None)
@given(ops=SWEEP_OPS, max_veterans=st.sampled_from([None, 2, 6]), track_held=st.booleans())
def test_the_split_intern_equals_the_one_loop_it_replaced(ops, max_veterans, track_held):
    """``_intern`` (``_intern_run`` without reference counts; the shell only grows the array the run
    stopped for, then the run takes the event) against the one loop it replaced: the same slots,
    returning marks, table and held arrays (sizes included) after every batch, from a table of
    capacity 2 (rehashes and slot growth at once), with released slots and veterans taken back."""
    from viraltrend.kernels import hashtable

    kw = {"idle_ms": 50, "allowed_lateness_ms": 20, "capacity": 2, "max_veterans": max_veterans}
    one, two = UserTable(**kw, track_held=track_held), UserTable(**kw, track_held=track_held)
    split = hashtable._intern
    clock = 0
    for op, arg in ops:
        if op == "intern":
            users = hash_ids([f"u{u}" for u, _ in arg])
            ts = np.array([clock + dt for _, dt in arg], np.int64)
            clock += 100
            hashtable._intern = _one_loop_intern  # UserTable.intern calls the module's _intern
            try:
                a = one.intern(users, ts)
            finally:
                hashtable._intern = split
            b = two.intern(users, ts)
            assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
        else:
            assert one.release_and_recycle().tolist() == two.release_and_recycle().tolist()
        x, y = one.to_arrays(), two.to_arrays()
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        assert len(one) == len(two) and one.high_water == two.high_water
        # dedupe26: and the arrays as held, not only as checkpointed: every growth at the same event
        for name in ("_rows", "hash_of", "prev_of", "last_ms", "_vet_keys", "_vet_vals", "_old_keys"):
            assert getattr(one, name).tobytes() == getattr(two, name).tobytes(), name


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 60), max_size=30, unique=True),
    start=st.integers(0, 32),
    x=st.integers(-1, 62),
)
def test_the_binary_search_without_slices_is_sorted_has(values, start, x):
    a = np.asarray(sorted(values), np.int32)
    start = min(start, a.size)
    assert _sorted_has_from(a, start, x) == _sorted_has(a, start, x) == (x in a[start:].tolist())


@settings(max_examples=80, deadline=None)
@given(
    ops=SWEEP_OPS,
    max_veterans=st.sampled_from([None, 2, 6]),
    track_held=st.booleans(),
    share=st.floats(0.0, 1.0),
    compiled=st.booleans(),
)
def test_the_one_pass_release_and_recycle_equals_the_plain_reference(
    ops, max_veterans, track_held, share, compiled
):
    """perf25: ``_release_recycle`` (one pass over the slots in ``_release_into``, no reference counts,
    the veterans' inserts in ``_add_veterans_run``, the free list merged) against the plain loops of
    ``reference.release_recycle_reference``, on the tables a random history of interning, releases
    and held slots leaves (capacity 2: the veterans' map grows inside the call): the released slots,
    every table array, the veterans and the free list equal."""
    from viraltrend.kernels import hashtable as ht

    t = UserTable(
        idle_ms=50, allowed_lateness_ms=20, capacity=2, max_veterans=max_veterans, track_held=track_held
    )
    clock = sweeps = 0
    for op in ops:
        if op[0] == "intern":
            users = hash_ids([f"u{u}" for u, _ in op[1]])
            t.intern(users, np.array([clock + dt for _, dt in op[1]], np.int64))
            clock += 40
        elif sweeps % 2 == 0:
            sweeps += 1
            t.release_idle()  # slots held until the next sweep's recycle
        else:
            sweeps += 1
            t.recycle_all()
        if t._high_water == 0:
            continue
        live = np.sort(t.last_ms[: t._high_water][t.hash_of[: t._high_water] != 0])
        cutoff = int(live[int(share * (live.size - 1))]) if live.size else clock  # about that share released
        args = [t._rows, t.hash_of, t.prev_of, t.last_ms, t._high_water, cutoff, t._vet_keys, t._vet_vals,
                t._vet_used, t._free, t._free_pos]  # fmt: skip
        want = reference.release_recycle_reference(
            *[a.copy() if isinstance(a, np.ndarray) else a for a in args]
        )
        a = [x.copy() if isinstance(x, np.ndarray) else np.int64(x) for x in args]
        fn = ht._release_recycle if compiled else ht._release_recycle.py_func
        with np.errstate(over="ignore"):
            slots, vk, vv, vu, free, fp = fn(*a)
        assert slots.tolist() == want[0]
        for got, ref in zip(a[:4], want[1:5], strict=True):
            assert [int(x) for x in got] == ref
        assert [int(x) for x in vk] == want[5] and [int(x) for x in vv] == want[6] and int(vu) == want[7]
        assert [int(x) for x in free] == want[8] and int(fp) == want[9]


@settings(max_examples=60, deadline=None)
@given(
    mask=st.lists(st.booleans(), max_size=60),
    at=st.integers(0, 5),
    k=st.integers(0, 5),
    compiled=st.booleans(),
)
def test_the_plan_loops_without_reference_counts_are_numpys_take_and_copy(mask, at, k, compiled):
    """perf25: ``_plan_sweeps``' per-event loops as ``no_refcounts`` helpers: a copy into a slice, the
    count of a mask and the values under it written on from ``k`` equal numpy's."""
    from viraltrend.kernels import hashtable as ht

    m = np.array(mask, np.bool_)
    values = np.arange(m.shape[0], dtype=np.int64) * 7 - 3
    fns = (ht._copy_into, ht._count_true, ht._take_true)
    copy_into, count_true, take_true = fns if compiled else (f.py_func for f in fns)
    dst = np.full(at + m.shape[0] + 2, -9, np.int64)
    copy_into(values, dst, np.int64(at))
    want = np.full_like(dst, -9)
    want[at : at + m.shape[0]] = values
    assert dst.tolist() == want.tolist()
    assert int(count_true(m)) == int(m.sum())
    out = np.full(k + m.shape[0] + 1, -9, np.int64)
    end = take_true(values, m, out, np.int64(k))
    assert int(end) == k + int(m.sum())
    assert out[k:end].tolist() == values[m].tolist() and (out[:k] == -9).all() and (out[end:] == -9).all()
