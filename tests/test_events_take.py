"""``EventBatch.take``: a run of events is taken by slicing the lists, the same batch as picking each."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_engine import batch_of
from viraltrend.events import EventBatch


def _rows(n: int) -> list[tuple]:
    events = [None if i % 4 == 1 else f"e\u00e9{i}" for i in range(n)]  # absent ones, non-ASCII ones
    return [(1_000 + i, "view", f"p{i % 7}", f"s{i % 3}", events[i], f"u{i % 5}") for i in range(n)]


def _columns(b: EventBatch) -> dict[str, object]:
    out: dict[str, object] = {f: getattr(b, f) for f in EventBatch.FIELDS}
    out = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}
    out["raw"] = b.raw
    ids = b.ids
    out.update(product_hash=ids.product_hash.tolist(), user_hash=ids.user_hash.tolist())
    out.update(event_h1=ids.event_h1.tolist(), price=[str(p) for p in b.price.tolist()])  # nan != nan
    return out


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_take_of_a_run_equals_picking_each_event(n, data):
    batch = batch_of(_rows(n))
    batch.raw = [f"line {i}".encode() for i in range(n)]
    kind = data.draw(st.sampled_from(["run", "any", "mask"]))
    if kind == "run":
        a = data.draw(st.integers(0, n - 1))
        idx = np.arange(a, data.draw(st.integers(a, n)), dtype=np.intp)
    elif kind == "any":
        idx = np.asarray(data.draw(st.lists(st.integers(0, n - 1), max_size=2 * n)), np.intp)
    else:
        idx = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), np.bool_)
    if data.draw(st.booleans()):
        batch.ids  # noqa: B018  # spans first: take() then decodes the strings only when asked for
    got = batch.take(idx)
    pick = (np.flatnonzero(idx) if idx.dtype == np.bool_ else idx).tolist()
    want = {k: [v[i] for i in pick] if isinstance(v, list) else v for k, v in _columns(batch).items()}
    assert _columns(got) == want
    got.product_id.append("x")  # the lists are the taken batch's own
    assert len(batch.product_id) == n
