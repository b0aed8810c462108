"""The online trending model, and the buffer of feature rows waiting for their delayed labels.

:class:`OnlineModel` is a river pipeline (``StandardScaler | LogisticRegression``, plain SGD) over
features squashed by ``sign(x) * log1p(|x|)`` (rates are heavy-tailed).  River learns one label at
a time; :meth:`OnlineModel.score_many` runs every tick over thousands of candidates, so it reads the
scaler's and regression's state out of river and computes the same probability in numpy.  Until
warm it defers to a fallback scorer, and its ``name`` says which one decided.  :class:`LabelBuffer`
holds rows scored at tick ``t`` until ``t + horizon`` has passed; the engine labels them with its
own counters (:func:`label_rows`).  Both checkpoint as plain numbers, never pickles.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError

if TYPE_CHECKING:  # river is imported at a model's first use (_parts: it pulls in scipy.stats)
    from river import metrics

__all__ = [
    "DEFAULT_FEATURES",
    "MAX_CLASS_WEIGHT",
    "MODEL_FORMAT",
    "DueRows",
    "LabelBuffer",
    "OnlineModel",
    "label_rows",
    "load_model",
    "save_model",
]

Columns = Mapping[str, NDArray[np.float64]]
DEFAULT_FEATURES: tuple[str, ...] = (
    "lift",
    "z",
    "velocity",
    "momentum",
    "acceleration",
    "share_rate",
    "cart_rate",
    "purchase_rate",
    "rate_5m_per_h",
    "baseline_per_h",
    "age_s",
)
_T_MAX = 50.0  # bound of a squashed input: log1p(|x|) = 50 at |x| ~ 5e21
MAX_CLASS_WEIGHT = 100.0  # default bound of the online-balanced positive weight (and of its inverse)


class Scorer(Protocol):
    """What the engine scores with: a ``name`` and ``score_many(features) -> float64[m]``."""

    @property
    def name(self) -> str: ...  # noqa: D102

    def score_many(self, features: Columns) -> NDArray[np.float64]: ...  # noqa: D102


def _squash(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sign(x) * log1p(|x|)``, NaN -> 0, clipped to ``[-50, 50]`` (so ``+-inf -> +-50``), float64[f].

    ``x`` float64[f] (one row).  numpy's ``nan_to_num`` then ``clip``, as one compiled pass
    (:func:`_bound`): the same values.
    """
    with np.errstate(invalid="ignore"):
        t = np.sign(x) * np.log1p(np.abs(x))
    return _bound(np.ascontiguousarray(t, np.float64))


@njit(cache=True)
def _bound(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """NaN -> 0, then clipped to ``[-50, 50]`` (``+-inf -> +-50``): a new float64[f]."""
    out = np.empty(t.shape[0])
    for j in range(t.shape[0]):
        v = t[j]
        out[j] = 0.0 if v != v else (_T_MAX if v > _T_MAX else (-_T_MAX if v < -_T_MAX else v))
    return out


@njit(cache=True)
def _bound_and_scale(
    t: NDArray[np.float64], mean: NDArray[np.float64], std: NDArray[np.float64]
) -> NDArray[np.float64]:
    """:func:`_squash`'s last steps and the scaler's, in one pass: float64[m, f] from ``t`` (the log1p's).

    NaN -> 0 and clipped to ``[-50, 50]`` (``nan_to_num`` then ``clip``), then
    ``(x - mean) / std`` where ``std > 0``, else 0 (a zero-variance or NaN ``std``), as
    :meth:`OnlineModel._scaled`'s numpy did: comparisons and one subtraction and division per cell,
    the same bits.  ``log1p`` stays numpy's (its vectorised log may round differently from libm's).
    """
    m, f = t.shape
    out = np.empty((m, f))
    for i in range(m):
        for j in range(f):
            v = t[i, j]
            if v != v:
                v = 0.0
            elif v > _T_MAX:
                v = _T_MAX
            elif v < -_T_MAX:
                v = -_T_MAX
            s = std[j]
            out[i, j] = (v - mean[j]) / s if s > 0.0 else 0.0
    return out


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _cm_to_dict(cm: metrics.ConfusionMatrix) -> dict[str, Any]:
    return {
        "cells": [[t, p, w] for t, row in cm.data.items() for p, w in row.items()],
        "sum_row": list(map(list, cm.sum_row.items())),
        "sum_col": list(map(list, cm.sum_col.items())),
        "n": cm.n_samples,
        "total": cm.total_weight,
        "tp": cm._total_true_positives,
    }


def _cm_restore(cm: metrics.ConfusionMatrix, d: Mapping[str, Any]) -> None:
    for t, p, w in d["cells"]:
        cm.data[t][p] = w
    cm.sum_row.update(d["sum_row"])
    cm.sum_col.update(d["sum_col"])
    cm.n_samples, cm.total_weight, cm._total_true_positives = d["n"], d["total"], d["tp"]


#: What river's fresh ``ROCAUC``, ``LogLoss`` and ``Precision`` give (``get()``) before any update:
#: :meth:`OnlineModel.metrics` of a model that never built river (tests/test_model.py checks them).
_FRESH_METRICS: Final = {"roc_auc": -0.0, "log_loss": 0.0, "precision": 0.0}


@dataclass
class _RiverParts:
    """An :class:`OnlineModel`'s river objects (the pipeline and the progressive metrics)."""

    scaler: Any
    logreg: Any
    pipeline: Any
    roc_auc: Any
    log_loss: Any
    precision: Any

    @classmethod
    def build(cls, learning_rate: float, l2: float) -> _RiverParts:
        from river import compose, linear_model, metrics, optim, preprocessing  # lazy: see the imports

        scaler = preprocessing.StandardScaler()
        logreg = linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
        )
        pipeline = compose.Pipeline(scaler, logreg)
        return cls(scaler, logreg, pipeline, metrics.ROCAUC(), metrics.LogLoss(), metrics.Precision())


class OnlineModel:
    """Online logistic regression on squashed, standardised features, with a cold-start fallback.

    Parameters
    ----------
    features
        Names of the feature columns it uses (keys of ``FeatureReader.read``'s output).
    min_labels
        Cold start: until it has learned this many labels, and ``min_per_class`` of each
        class, :meth:`score_many` returns ``fallback``'s scores.
    fallback
        The scorer used while cold, e.g. :class:`~viraltrend.scoring.RuleScorer`.
    learning_rate
        SGD step size, for the weights and the intercept.
    l2
        L2 penalty on the weights.
    positive_weight
        Class weight of positive rows relative to negatives.  None balances online: the
        weighted mass of negatives seen so far over that of positives, bounded to
        [1/max_class_weight, max_class_weight].
    max_class_weight
        Bound of the online-balanced positive weight (and of its inverse), > 1; 100 by default.
        A lower bound keeps the first few positives from carrying ~100 negatives' weight each.
    min_per_class
        Labels of each class needed before warming up.
    promote_probability, promote_score
        Calibration of the score to the board: a warm model's score is its probability ``p``
        moved on the logit scale so that ``p == promote_probability`` scores exactly
        ``promote_score`` (the board's promote threshold), i.e.
        ``score = sigmoid(logit(p) - logit(promote_probability) + logit(promote_score))``.
        Monotone, so the ranking is the probability's; with ``positive_weight=1`` the
        probability is not inflated by class re-balancing and ``promote_probability`` is the
        chance, at that tick, that the product goes viral within the horizon.  The progressive
        ``precision`` metric counts predictions ``p >= promote_probability`` as positive.
    seed
        Recorded only: the model is deterministic (zero initial weights, plain SGD).

    Notes
    -----
    A missing or NaN input counts as 0; every input is squashed and clipped to [-50, 50], so
    ``+-inf`` becomes ``+-50``.  A zero-variance feature scales to 0 (as in river).  Row
    weights are relative: an update's weight ``w * class_weight`` is divided by the running
    mean effective weight, so ``learning_rate`` stays the step of a typical row even when
    sampled negatives carry ``1 / negative_rate``.  :meth:`learn_many` is a loop of
    :meth:`learn_one` (not river's one mean-gradient step), so batch grouping does not matter.

    Examples
    --------
    >>> from viraltrend.config import ScoreConfig
    >>> from viraltrend.scoring import RuleScorer
    >>> model = OnlineModel(features=("lift", "z"), min_labels=40, min_per_class=5,
    ...                     fallback=RuleScorer(ScoreConfig()))
    >>> model.name
    'rule'
    >>> for i in range(40):
    ...     hot = i % 4 == 0
    ...     model.learn_one({"lift": 20.0 if hot else 1.0 + i % 3, "z": 15.0 if hot else 0.5}, hot)
    >>> model.name, model.metrics()["labels_seen"], model.metrics()["positives_seen"]
    ('model', 40, 10)
    >>> cols = {"lift": np.array([1.0, 30.0]), "z": np.array([0.0, 25.0])}
    >>> p = model.score_many(cols)
    >>> bool(p[0] < 0.5 < p[1])
    True
    >>> [name for name, _ in model.explain(cols, 1, top=2)]
    ['z', 'lift']
    """

    def __init__(
        self,
        *,
        features: tuple[str, ...] = DEFAULT_FEATURES,
        min_labels: int = 200,
        fallback: Scorer,
        learning_rate: float = 0.05,
        l2: float = 1e-4,
        positive_weight: float | None = None,
        max_class_weight: float = MAX_CLASS_WEIGHT,
        min_per_class: int = 10,
        promote_probability: float = 0.5,
        promote_score: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.features = tuple(features)
        self.min_labels = min_labels
        self.fallback = fallback
        self.learning_rate = learning_rate
        self.l2 = l2
        self.positive_weight = positive_weight
        self.max_class_weight = max_class_weight
        self.min_per_class = min_per_class
        self.promote_probability = promote_probability
        self.promote_score = promote_score
        self.seed = seed
        if not self.features or len(set(self.features)) != len(self.features):
            msg = f"features must be one or more distinct names, got {features!r}"
            raise ValueError(msg)
        if positive_weight is not None and not positive_weight > 0:
            msg = f"positive_weight must be > 0, or None to balance online; got {positive_weight}"
            raise ValueError(msg)
        if not max_class_weight >= 1.0:
            msg = f"max_class_weight must be >= 1, got {max_class_weight}"
            raise ValueError(msg)
        for key, v in (("promote_probability", promote_probability), ("promote_score", promote_score)):
            if not 0.0 < v < 1.0:
                msg = f"{key} must be in (0, 1), got {v}"
                raise ValueError(msg)
        self._shift = _logit(promote_score) - _logit(promote_probability)
        self._river: _RiverParts | None = None  # built at the first use (_parts): a replay may never learn
        self._fresh_read = False  # metrics() was read before river was built
        self.labels_seen = 0
        self.positives_seen = 0
        self._pos_mass = 0.0  # sum of the sample weights of positive rows
        self._neg_mass = 0.0
        self._params_copy: tuple[NDArray[np.float64], ...] | None = None  # _params, until a learn

    def _parts(self) -> _RiverParts:
        """River's scaler, regression, pipeline and metrics, built at the first call.

        Building them imports river, which pulls in scipy.stats (~0.5-0.8 CPU s of a process's
        start): a model that never learns (a replay whose labels never come due) scores through its
        fallback and reports the fresh metrics (:meth:`metrics`) without them.
        """
        if self._river is None:
            self._river = _RiverParts.build(self.learning_rate, self.l2)
            if self._fresh_read:  # river's get() fills zero cells in: the state main's eager build had
                self.metrics()
        return self._river

    @property
    def _scaler(self) -> Any:
        return self._parts().scaler

    @property
    def _logreg(self) -> Any:
        return self._parts().logreg

    @property
    def _pipeline(self) -> Any:
        return self._parts().pipeline

    @property
    def _roc_auc(self) -> Any:
        return self._parts().roc_auc

    @property
    def _log_loss(self) -> Any:
        return self._parts().log_loss

    @property
    def _precision(self) -> Any:
        return self._parts().precision  # of predictions >= promote_probability

    @property
    def warm(self) -> bool:
        """Whether the model has learned enough to score (else the fallback scores)."""
        negatives = self.labels_seen - self.positives_seen
        return (
            self.labels_seen >= self.min_labels
            and self.positives_seen >= self.min_per_class
            and negatives >= self.min_per_class
        )

    @property
    def name(self) -> str:
        """``"model"`` when warm, else the fallback's name (e.g. ``"rule"``)."""
        return "model" if self.warm else str(self.fallback.name)

    def _row(self, x: Mapping[str, float]) -> dict[str, float]:
        raw = np.array([x.get(n, math.nan) for n in self.features], dtype=np.float64)
        return dict(zip(self.features, _squash(raw).tolist(), strict=True))

    def _class_weight(self, y: bool) -> float:
        pos = self.positive_weight
        if pos is None:
            ratio = self._neg_mass / self._pos_mass if self._pos_mass > 0 and self._neg_mass > 0 else 1.0
            pos = min(max(ratio, 1 / self.max_class_weight), self.max_class_weight)
        mean_effective = (self._neg_mass + pos * self._pos_mass) / max(self.labels_seen, 1)
        return (pos if y else 1.0) / mean_effective

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        """Probability of trending for one raw feature row, through river (ignores warmth)."""
        return float(self._pipeline.predict_proba_one(self._row(x))[True])

    def learn_one(self, x: Mapping[str, float], y: bool, w: float = 1.0) -> None:
        """Predict raw row ``x`` and update the metrics (progressive validation), then learn ``(x, y)``.

        ``y`` is the delayed label; ``w`` the sample weight (``1 / negative_rate`` for a sampled
        negative), which also weights the metrics so that they estimate the unsampled stream.
        """
        xt, y, w = self._row(x), bool(y), float(w)
        p = float(self._pipeline.predict_proba_one(xt)[True])
        self._roc_auc.update(y, p, w)
        self._log_loss.update(y, p, w)
        self._precision.update(y, p >= self.promote_probability, w)
        self.labels_seen += 1
        self.positives_seen += int(y)
        self._pos_mass += w if y else 0.0
        self._neg_mass += 0.0 if y else w
        self._pipeline.learn_one(xt, y, w=w * self._class_weight(y))
        self._params_copy = None  # the scaler and the weights moved

    def learn_many(
        self,
        rows: Sequence[Mapping[str, float]],
        ys: Sequence[bool] | NDArray[np.bool_],
        ws: Sequence[float] | NDArray[np.float64] | None = None,
    ) -> None:
        """Learn the rows in order, exactly as a loop of :meth:`learn_one` (``ws=None``: weight 1)."""
        weights = np.ones(len(rows)) if ws is None else np.asarray(ws, dtype=np.float64)
        if not len(rows) == len(ys) == len(weights):
            msg = f"rows, ys and ws must have equal lengths, got {len(rows)}, {len(ys)}, {len(weights)}"
            raise ValueError(msg)
        for x, y, w in zip(rows, ys, weights.tolist(), strict=True):
            self.learn_one(x, bool(y), w)

    def _scaled(self, features: Columns, rows: slice | int = slice(None)) -> tuple[NDArray[np.float64], ...]:
        """Squashed, standardised inputs ``float64[m, f]``, weights ``float64[f]`` and intercept."""
        x = self._inputs(features) if rows == slice(None) else None
        if x is None:
            cols = []
            for n in self.features:
                if n not in features:
                    msg = f"feature column {n!r} is missing; the model uses {list(self.features)}"
                    raise KeyError(msg)
                cols.append(np.atleast_1d(np.asarray(features[n], dtype=np.float64)[rows]))
            x = np.stack(cols, axis=1)
        with np.errstate(invalid="ignore"):
            t = np.sign(x) * np.log1p(np.abs(x))
        mean, std, w, b = self._params()
        return _bound_and_scale(t, mean, std), w, b

    def _inputs(self, features: Columns) -> NDArray[np.float64] | None:
        """The raw inputs float64[m, f] of whole 1-d columns (``np.stack``'s array, filled by column).

        None where a column is missing or not a 1-d array of the first one's length (the general path).
        """
        first = features.get(self.features[0])
        if not isinstance(first, np.ndarray) or first.ndim != 1:
            return None
        x = np.empty((first.shape[0], len(self.features)))
        for j, n in enumerate(self.features):
            c = features.get(n)
            if not isinstance(c, np.ndarray) or c.shape != first.shape:
                return None
            x[:, j] = c  # cast to float64 as np.asarray(c, np.float64) does
        return x

    def _params(self) -> tuple[NDArray[np.float64], ...]:
        """The scaler's means and standard deviations, the weights and the intercept, as arrays.

        Read from river's dicts once per state: they change only in :meth:`learn_one` (and a
        restore, :meth:`from_dict`), which drop the copy.
        """
        if self._params_copy is None:
            means, variances, weights = self._scaler.means, self._scaler.vars, self._logreg.weights
            mean = np.array([means.get(n, 0.0) for n in self.features], dtype=np.float64)
            std = np.sqrt(np.array([variances.get(n, 0.0) for n in self.features], dtype=np.float64))
            w = np.array([weights.get(n, 0.0) for n in self.features], dtype=np.float64)
            self._params_copy = (mean, std, w, np.array(float(self._logreg.intercept)))
        return self._params_copy

    def _logits(self, features: Columns) -> NDArray[np.float64]:
        scaled, w, b = self._scaled(features)
        out: NDArray[np.float64] = scaled @ w + b
        return out

    @staticmethod
    def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
        """River's sigmoid: saturates to exactly 0 and 1 beyond +-30."""
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
        out: NDArray[np.float64] = np.where(z < -30.0, 0.0, np.where(z > 30.0, 1.0, p))
        return out

    def predict_proba_many(self, features: Columns) -> NDArray[np.float64]:
        """Probability per candidate (``float64[m]``) in numpy, as river's would be; ignores warmth."""
        return self._sigmoid(self._logits(features))

    def score_many(self, features: Columns) -> NDArray[np.float64]:
        """Score in [0, 1] per candidate (``float64[m]``): the model's if warm, else the fallback's.

        The model's score is its probability moved on the logit scale so that
        ``promote_probability`` lands on ``promote_score`` (see the class docstring); when the
        two are equal it is the probability itself.
        """
        if not self.warm:
            return np.asarray(self.fallback.score_many(features), dtype=np.float64)
        return self._sigmoid(self._logits(features) + self._shift)

    def explain(self, features: Columns, i: int, top: int = 3) -> list[tuple[str, float]]:
        """The features that pushed candidate ``i``'s logit most: ``[(name, w_j * x_j), ...]``.

        Largest absolute contribution first, at most ``top``; e.g. ``[("lift", 2.1)]`` for a
        reason ``"model:lift+2.1"``.  Empty while cold, since the model did not decide.
        """
        if not self.warm:
            return []
        scaled, w, _ = self._scaled(features, i)
        contrib = scaled[0] * w
        order = np.argsort(-np.abs(contrib), kind="stable")[:top]
        return [(self.features[j], float(contrib[j])) for j in order]

    def metrics(self) -> dict[str, Any]:
        """Progressive-validation metrics (weighted by sample weight) and label counts."""
        if self._river is None:  # nothing learned: the fresh metrics' values, without building river
            self._fresh_read = True
            return {**_FRESH_METRICS, "labels_seen": self.labels_seen, "positives_seen": self.positives_seen,
                    "warm": self.warm}  # fmt: skip
        return {
            "roc_auc": float(self._roc_auc.get()),
            "log_loss": float(self._log_loss.get()),
            "precision": float(self._precision.get()),
            "labels_seen": self.labels_seen,
            "positives_seen": self.positives_seen,
            "warm": self.warm,
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-able plain data (never a pickle).

        Constructor arguments (not the fallback); the scaler's counts, means and variances; the
        weights, intercept and SGD step count; ``labels``: labels and positives seen, weighted
        masses of positives and negatives; all three metrics exactly (ROC AUC's and precision's
        confusion matrices, log loss's mean).  Dicts keep river's order, so the sums' order.
        """
        sc, lr = self._scaler, self._logreg
        params = {
            "features": list(self.features),
            "min_labels": self.min_labels,
            "l2": self.l2,
            "learning_rate": self.learning_rate,
            "positive_weight": self.positive_weight,
            **(
                {}
                if self.max_class_weight == MAX_CLASS_WEIGHT
                else {"max_class_weight": self.max_class_weight}
            ),
            "min_per_class": self.min_per_class,
            "promote_probability": self.promote_probability,
            "promote_score": self.promote_score,
            "seed": self.seed,
        }
        return {
            "version": 1,
            "params": params,
            "scaler": {
                "counts": {k: int(v) for k, v in sc.counts.items()},
                "means": {k: float(v) for k, v in sc.means.items()},
                "vars": {k: float(v) for k, v in sc.vars.items()},
            },
            "logreg": {
                "weights": {k: float(v) for k, v in lr.weights.items()},
                "intercept": float(lr.intercept),
                "n_iterations": int(lr.optimizer.n_iterations),
            },
            "labels": [self.labels_seen, self.positives_seen, self._pos_mass, self._neg_mass],
            "metrics": {
                "roc_auc": [_cm_to_dict(cm) for cm in self._roc_auc.cms],
                "precision": _cm_to_dict(self._precision.cm),
                "log_loss": [self._log_loss._mean.n, self._log_loss._mean._mean],
            },
        }

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_dict` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return {}, {"model": self.to_dict()}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> OnlineModel:
        """:meth:`from_dict` of ``meta["model"]`` with this model's fallback (None there: this model)."""
        if meta.get("model") is None:
            return self
        return type(self).from_dict(meta["model"], fallback=self.fallback)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, fallback: Scorer) -> OnlineModel:
        """Rebuild a model from :meth:`to_dict`'s output; it scores and learns as the original did."""
        if d.get("version") != 1:
            msg = f"model checkpoint version must be 1, got {d.get('version')!r}: written by another release"
            raise ValueError(msg)
        p = dict(d["params"], features=tuple(d["params"]["features"]))
        model = cls(fallback=fallback, **p)
        sc, lr = model._scaler, model._logreg
        for key in ("counts", "means", "vars"):  # StandardScaler's public running statistics
            getattr(sc, key).update(d["scaler"][key])
        from river import utils  # lazy, as in __init__

        lr._weights = utils.VectorDict(dict(d["logreg"]["weights"]))
        lr.intercept = d["logreg"]["intercept"]
        lr.optimizer.n_iterations = d["logreg"]["n_iterations"]
        model.labels_seen, model.positives_seen, model._pos_mass, model._neg_mass = d["labels"]
        for cm, cd in zip(model._roc_auc.cms, d["metrics"]["roc_auc"], strict=True):
            _cm_restore(cm, cd)
        _cm_restore(model._precision.cm, d["metrics"]["precision"])
        model._log_loss._mean.n, model._log_loss._mean._mean = d["metrics"]["log_loss"]
        model._params_copy = None
        return model


MODEL_FORMAT = "viraltrend-online-model"  # the "format" key of a model file (save_model / load_model)


def save_model(model: OnlineModel, path: str | Path) -> None:
    """Write ``model`` as one JSON file (plain numbers, never a pickle), atomically.

    The file is :meth:`OnlineModel.to_dict`'s output with ``"format": MODEL_FORMAT``;
    :func:`load_model` reads it back.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"format": MODEL_FORMAT, **model.to_dict()}), encoding="utf-8")
    os.replace(tmp, out)


def load_model(
    path: str | Path,
    *,
    features: tuple[str, ...],
    fallback: Scorer,
    promote_probability: float | None = None,
    promote_score: float | None = None,
) -> OnlineModel:
    """Read a model written by :func:`save_model` (``viraltrend train --out``) to start warm.

    ``features`` are the columns the running config feeds the model; a file trained on other
    columns is refused.  ``promote_probability`` and ``promote_score``, when given, replace the
    file's calibration (they belong to the running board, not to what was learned).

    Raises
    ------
    CheckpointError
        Naming the file, what is wrong with it, and the fix: a missing, unreadable, corrupt or
        foreign file, or one trained on other feature columns.
    """
    fix = (
        f"retrain it with `viraltrend train FILE... --out {path}` under this config, "
        'or start cold without --model (model.checkpoint = "")'
    )
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        msg = f"model file {path}: no such file; {fix}"
        raise CheckpointError(msg) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        msg = f"model file {path} is not a readable model ({type(exc).__name__}: {exc}); {fix}"
        raise CheckpointError(msg) from exc
    if not isinstance(d, dict) or d.get("format") != MODEL_FORMAT:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        msg = f"model file {path} is not a viraltrend model (format {found!r}, not {MODEL_FORMAT!r}); {fix}"
        raise CheckpointError(msg)
    try:
        trained_on = tuple(d["params"]["features"])
        if trained_on != tuple(features):
            msg = (
                f"model file {path} was trained on the features {list(trained_on)} but this config feeds "
                f"{list(features)}; {fix}"
            )
            raise CheckpointError(msg)
        params = dict(d["params"])
        if promote_probability is not None:
            params["promote_probability"] = promote_probability
        if promote_score is not None:
            params["promote_score"] = promote_score
        return OnlineModel.from_dict({**d, "params": params}, fallback=fallback)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"model file {path} is corrupt or incomplete ({type(exc).__name__}: {exc}); {fix}"
        raise CheckpointError(msg) from exc


_ARRAYS = ("t_ms", "slot", "features", "weight", "baseline_per_s", "count_at_t")


@dataclass(frozen=True, slots=True)
class DueRows:
    """``k`` buffered rows, in ``t_ms`` order.

    ``t_ms``, ``slot`` int64[k] (tick and product); ``features`` float64[k, f] (columns named by
    ``feature_names``); ``weight`` float64[k] (1 if hinted, else ``1 / negative_rate``);
    ``baseline_per_s`` and ``count_at_t`` float64[k] (as given to ``add``).
    """

    t_ms: NDArray[np.int64]
    slot: NDArray[np.int64]
    features: NDArray[np.float64]
    weight: NDArray[np.float64]
    baseline_per_s: NDArray[np.float64]
    count_at_t: NDArray[np.float64]
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])

    def rows(self) -> list[dict[str, float]]:
        """Feature rows as dicts, for :meth:`OnlineModel.learn_many`."""
        return [dict(zip(self.feature_names, r, strict=True)) for r in self.features.tolist()]

    def _take(self, rows: slice | NDArray[np.int64]) -> DueRows:
        return DueRows(*(getattr(self, a)[rows] for a in _ARRAYS), feature_names=self.feature_names)  # type: ignore[misc]

    @staticmethod
    def _concat(parts: Sequence[DueRows], feature_names: tuple[str, ...]) -> DueRows:
        empty = DueRows(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, len(feature_names))),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0),
            feature_names,
        )
        cols = (np.concatenate([getattr(p, a) for p in (empty, *parts)]) for a in _ARRAYS)
        return DueRows(*cols, feature_names=feature_names)  # type: ignore[misc, arg-type]


def label_rows(
    due_rows: DueRows,
    count_at_t_plus_h: NDArray[np.float64],
    *,
    min_events: float,
    lift: float,
    horizon_s: float,
) -> NDArray[np.bool_]:
    """Label due rows (``bool[k]``): whether each product gained enough events over the horizon.

    ``count_at_t_plus_h - count_at_t >= max(min_events, lift * baseline_per_s * horizon_s)``:
    at least ``min_events`` new events, and ``lift`` times what the baseline rate predicts over
    the horizon.  ``count_at_t_plus_h`` (float64[k]) must be the same kind of cumulative count
    as ``count_at_t`` (same event weights), read at the tick that released the rows: that tick
    is ``>= t + horizon``, exactly ``t + horizon`` when the tick period divides the horizon.
    """
    after = np.asarray(count_at_t_plus_h, dtype=np.float64)
    if after.shape != (len(due_rows),):
        msg = f"count_at_t_plus_h must hold one value per due row ({len(due_rows)}), got shape {after.shape}"
        raise ValueError(msg)
    need = np.maximum(min_events, lift * due_rows.baseline_per_s * horizon_s)
    return np.asarray(after - due_rows.count_at_t >= need)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser, elementwise (uint64 arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(t_ms: int, slots: NDArray[np.int64], seed: int) -> NDArray[np.float64]:
    """A value in [0, 1) per row, a hash of ``(t_ms, slot, seed)``: no RNG stream, no order dependence."""
    h = _mix(np.full(slots.shape[0], seed, dtype=np.int64).view(np.uint64))
    h = _mix(h ^ np.full(slots.shape[0], t_ms, dtype=np.int64).view(np.uint64))
    h = _mix(h ^ slots.view(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


class LabelBuffer:
    """Bounded buffer of past feature rows waiting for their labels; releases none before ``t + horizon``.

    Parameters
    ----------
    horizon_ms
        Label horizon: a row added at ``t_ms`` is due once ``now_ms >= t_ms + horizon_ms``.
    capacity
        Most rows held; when full the oldest are dropped and counted in ``dropped``.
    negative_rate
        Fraction of unhinted rows kept, weighted ``1 / negative_rate``; a row is kept by a hash
        of ``(t_ms, slot, seed)``, so never depending on how rows are grouped into calls.
    seed
        Salt of that hash.

    Examples
    --------
    >>> buf = LabelBuffer(horizon_ms=60_000, negative_rate=1.0)
    >>> buf.add(0, np.array([3, 4]), {"lift": np.array([1.0, 9.0])},
    ...         baseline_per_s=np.array([0.1, 0.1]), count_at_t=np.array([10.0, 20.0]))
    >>> len(buf.due(59_999)), len(buf)
    (0, 2)
    >>> rows = buf.due(60_000)
    >>> label_rows(rows, np.array([11.0, 60.0]), min_events=5, lift=3.0, horizon_s=60).tolist()
    [False, True]
    """

    label_rows = staticmethod(label_rows)

    def __init__(
        self, *, horizon_ms: int, capacity: int = 50_000, negative_rate: float = 0.05, seed: int = 0
    ) -> None:
        self.horizon_ms = int(horizon_ms)
        self.capacity = int(capacity)
        self.negative_rate = float(negative_rate)
        self.seed = int(seed)
        if self.horizon_ms <= 0 or self.capacity <= 0:
            msg = f"horizon_ms and capacity must be > 0, got {horizon_ms} and {capacity}"
            raise ValueError(msg)
        if not 0.0 <= self.negative_rate <= 1.0:
            msg = f"negative_rate must be in [0, 1], got {negative_rate}"
            raise ValueError(msg)
        self.feature_names: tuple[str, ...] | None = None  # fixed by the first add
        self.dropped = 0
        self.last_t_ms: int | None = None
        self._chunks: deque[DueRows] = deque()  # one per tick, oldest first
        self._n = 0  # rows in _chunks

    def __len__(self) -> int:
        return self._n

    def add(
        self,
        t_ms: int,
        product_slots: NDArray[np.int64],
        features: Columns,
        positive_hint: NDArray[np.bool_] | None = None,
        *,
        baseline_per_s: NDArray[np.float64],
        count_at_t: NDArray[np.float64],
    ) -> None:
        """Keep the hinted and the sampled rows of the ``m`` candidates scored at tick ``t_ms``.

        ``t_ms`` (epoch ms) must not decrease between calls.  ``product_slots`` int64[m];
        ``features`` dict[str, float64[m]] (the first call fixes the names); ``positive_hint``
        bool[m] marks rows always kept with weight 1 (e.g. high short-term lift), None none;
        ``baseline_per_s`` float64[m] is each product's baseline rate at ``t_ms`` in events per
        second and ``count_at_t`` float64[m] its cumulative event count (for :func:`label_rows`).
        """
        t_ms = int(t_ms)
        if self.last_t_ms is not None and t_ms < self.last_t_ms:
            msg = f"t_ms must not decrease: got {t_ms} after {self.last_t_ms}; add ticks in event-time order"
            raise ValueError(msg)
        slots = np.asarray(product_slots)
        if slots.dtype != np.int64:
            msg = f"product_slots must be int64, got {slots.dtype}; convert with .astype(np.int64)"
            raise TypeError(msg)
        names = self.feature_names if self.feature_names is not None else tuple(features)
        if set(features) != set(names):
            msg = f"features must have the columns {list(names)} (set by the first add), got {list(features)}"
            raise ValueError(msg)
        m = slots.shape[0]
        cols = [np.asarray(features[n], dtype=np.float64) for n in names]
        base, count = np.asarray(baseline_per_s, np.float64), np.asarray(count_at_t, np.float64)
        hint = np.zeros(m, np.bool_) if positive_hint is None else np.asarray(positive_hint, np.bool_)
        if any(a.shape != (m,) for a in (*cols, base, count, hint)):
            msg = f"every feature column, baseline_per_s, count_at_t and positive_hint must have shape ({m},)"
            raise ValueError(msg)
        self.feature_names, self.last_t_ms = names, t_ms
        keep = np.flatnonzero(hint | (_uniform(t_ms, slots, self.seed) < self.negative_rate))
        if keep.size == 0:
            return
        mat = np.stack([c[keep] for c in cols], axis=1) if cols else np.zeros((keep.size, 0))
        weight = np.where(hint[keep], 1.0, 1.0 / self.negative_rate if self.negative_rate > 0 else 1.0)
        self._chunks.append(
            DueRows(
                np.full(keep.size, t_ms, np.int64), slots[keep], mat, weight, base[keep], count[keep], names
            )
        )
        self._n += int(keep.size)
        excess = len(self) - self.capacity
        while excess > 0:  # drop the oldest rows
            first = self._chunks.popleft()
            drop = min(len(first), excess)
            if drop < len(first):
                self._chunks.appendleft(first._take(slice(drop, None)))
            excess -= drop
            self.dropped += drop
            self._n -= drop

    def next_due_ms(self) -> int | None:
        """When the oldest row comes due (:meth:`due` returns it from then on); None if empty."""
        return int(self._chunks[0].t_ms[0]) + self.horizon_ms if self._chunks else None

    def due(self, now_ms: int) -> DueRows:
        """Remove and return the rows with ``t_ms + horizon_ms <= now_ms``, in ``t_ms`` order."""
        out = []
        while self._chunks:
            k = int(np.searchsorted(self._chunks[0].t_ms, now_ms - self.horizon_ms, side="right"))
            if k == 0:
                break
            first = self._chunks.popleft()
            if k < len(first):  # a restored chunk may span several ticks
                self._chunks.appendleft(first._take(slice(k, None)))
            out.append(first._take(slice(0, k)))
            self._n -= k
        return DueRows._concat(out, self.feature_names or ())

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The buffer as plain numpy arrays (for ``np.savez``; they load with ``allow_pickle=False``)."""
        rows = DueRows._concat(list(self._chunks), self.feature_names or ())
        out: dict[str, NDArray[Any]] = {a: getattr(rows, a) for a in _ARRAYS}
        out["feature_names"] = np.array(list(self.feature_names or ()), dtype=str)
        out["config"] = np.array([self.horizon_ms, self.capacity, self.seed, self.dropped], dtype=np.int64)
        out["negative_rate"] = np.array(self.negative_rate)
        out["last_t_ms"] = np.array([] if self.last_t_ms is None else [self.last_t_ms], dtype=np.int64)
        return out

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return self.to_arrays(), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> LabelBuffer:
        """:meth:`from_arrays` (none: a checkpoint without a model, this buffer)."""
        return type(self).from_arrays(arrays) if arrays else self

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> LabelBuffer:
        """Rebuild a buffer from :meth:`to_arrays`'s output."""
        horizon_ms, capacity, seed, dropped = (int(v) for v in arrays["config"])
        buf = cls(
            horizon_ms=horizon_ms, capacity=capacity, negative_rate=float(arrays["negative_rate"]), seed=seed
        )
        buf.feature_names, buf.dropped = tuple(str(n) for n in arrays["feature_names"]) or None, dropped
        buf.last_t_ms = int(arrays["last_t_ms"][0]) if len(arrays["last_t_ms"]) else None
        rows = DueRows(*(np.array(arrays[a]) for a in _ARRAYS), feature_names=buf.feature_names or ())  # type: ignore[misc, arg-type]
        if len(rows):
            buf._chunks.append(rows)
            buf._n = len(rows)
        return buf
