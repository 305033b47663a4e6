"""One cost–quality decision per step, routing and cascading unified (after Dekoninck et al.,
"A Unified Approach to Routing and Cascading for LLMs", ICML 2025). Pure decision logic on
numpy; no I/O.

At every step of a run the state is: the router's prior P(good answer) per tier, which tiers
were called, and how their answers group (equal normalised answers share a group). From that,
``UnifiedModel.qualities`` estimates each tier's quality:

- a **called** tier: logistic model on [logit prior, the share of the other called answers
  that agree with it, their prior-weighted support, "some other answer seen", "no answer"],
- a **waiting** tier: logistic model on [logit prior, the plurality share among the called
  answers, "some answer seen", "two or more seen" × plurality share],

each with a per-tier intercept. A plan is a set ``S`` of waiting tiers to call next; its value
is ``E[max quality over called ∪ S] − λ · Σ_{j∈S} cost_j`` (costs relative to the dearest
tier's mean), where the estimates are jointly Normal around their current values with the
spreads and correlations (fitted on train) by which they still move until ``|called ∪ S|``
tiers have answered: calling is worth it when a later answer may beat the best one at hand.
The correlations matter: a weak tier's estimate moves a lot, but up mostly when it agrees with
the others, which adds little to the maximum. The best plan's most promising tier
(highest current estimate; the cheaper on ties) is called next, so a plan can skip tiers and
start anywhere, and the rest of the plan is reconsidered once its answer is in; the empty plan stops, returning
the called tier with the highest estimated quality (its answer, not necessarily the last)."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cascade.errors import RouterArtifactError
from cascade.routing._lookahead import AnswerStats, State, _Scorer, canonical, lookahead
from verifiers import AnswerKind, check_arithmetic, normalise

__all__ = [
    "CALLED_FEATURES",
    "AnswerKey",
    "AnswerStats",
    "DecisionRule",
    "WAITING_FEATURES",
    "Step",
    "UnifiedModel",
    "UnifiedSettings",
    "called_features",
    "fitted_key",
    "fitted_on",
    "load_unified",
    "waiting_features",
]

CALLED_FEATURES = ("logit_prior", "agree_share", "agree_support", "rival_support", "others_seen",
                   "no_answer")
WAITING_FEATURES = ("logit_prior", "plurality_share", "answers_seen", "plurality_if_two")
_DRAWS = 64  # Normal draws for E[max] (fixed, antithetic: the decision is deterministic)
_EPS = 1e-4
_JITTER = 1e-10  # keeps a covariance with zero-spread tiers factorable
FORMAT = "cascade-unified/2"
FORMATS = ("cascade-unified/1", FORMAT)  # /1: no answer statistics, so the spread rule only


class DecisionRule(str, enum.Enum):
    """How a step values calling more tiers (``_unified_train.choose_rule`` picks on train)."""

    SPREAD = "spread"  # sets of calls valued by Normal moves of the estimates (the paper's)
    LOOKAHEAD = "lookahead"  # exact expectation over the next answers' agreement outcomes


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))  # type: ignore[no-any-return]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))  # type: ignore[no-any-return]


def called_features(prior: np.ndarray, called: Sequence[int],
                    groups: Sequence[int | None]) -> np.ndarray:
    """One row per called tier (in call order): ``CALLED_FEATURES``. ``groups[i]`` is the
    answer group of ``called[i]`` (None: no answer could be extracted)."""
    k = len(called)
    rows = np.zeros((k, len(CALLED_FEATURES)))
    weights = np.clip(prior[list(called)], _EPS, 1.0) if k else np.zeros(0)
    for i, (tier, group) in enumerate(zip(called, groups)):
        rows[i, 0] = _logit(prior[tier])
        if group is None:
            rows[i, 5] = 1.0
        if k > 1:
            agree = [j for j in range(k) if j != i and group is not None and groups[j] == group]
            others = float(weights.sum() - weights[i])
            rival: dict[int, float] = {}
            for j in range(k):
                if j != i and groups[j] is not None and groups[j] != group:
                    rival[groups[j]] = rival.get(groups[j], 0.0) + float(weights[j])  # type: ignore[index]
            rows[i, 1] = len(agree) / (k - 1)
            rows[i, 2] = float(weights[agree].sum()) / others if others > 0 else 0.0
            rows[i, 3] = max(rival.values()) / others if rival and others > 0 else 0.0
            rows[i, 4] = 1.0
    return rows


def waiting_features(prior: np.ndarray, waiting: Sequence[int],
                     groups: Sequence[int | None]) -> np.ndarray:
    """One row per waiting tier: ``WAITING_FEATURES`` (the called answers' groups)."""
    k = len(groups)
    counts: dict[int, int] = {}
    for group in groups:
        if group is not None:
            counts[group] = counts.get(group, 0) + 1
    share = max(counts.values()) / k if counts else 0.0
    rows = np.zeros((len(waiting), len(WAITING_FEATURES)))
    rows[:, 0] = _logit(prior[list(waiting)])
    rows[:, 1] = share
    rows[:, 2] = 1.0 if k else 0.0
    rows[:, 3] = share if k >= 2 else 0.0
    return rows


@dataclass(frozen=True, slots=True)
class Step:
    """One decision: ``call`` the tier to call next (None: stop), ``answer`` the called tier
    whose answer is returned when stopping (None before any call), the current quality
    estimate per tier, and the value of the chosen plan (E[max quality] − λ·cost)."""

    call: int | None
    answer: int | None
    quality: tuple[float, ...]
    value: float
    plan: tuple[int, ...] = ()


@dataclass(frozen=True)
class UnifiedModel:
    """The fitted estimator, for ``m`` tiers (in tier order). ``spread[t, k, n]``: how much
    (standard deviation) tier t's estimate still moves between k and n answers seen, while
    waiting (``spread[0]``) or already called (``spread[1]``); ``cost`` is each tier's mean
    cost relative to the dearest's; ``base`` the prior when the router gives none."""

    models: tuple[str, ...]
    w_called: np.ndarray  # (m, len(CALLED_FEATURES)): each tier's own weights
    b_called: np.ndarray  # (m,)
    w_waiting: np.ndarray  # (m, len(WAITING_FEATURES))
    b_waiting: np.ndarray  # (m,)
    spread: np.ndarray  # (2, m, m + 1, m + 1)
    corr: np.ndarray  # (m + 1, m + 1, m, m): correlation of the tiers' moves from k to n answers
    cost: np.ndarray  # (m,) relative expected cost of one call
    base: np.ndarray  # (m,) mean quality on train
    max_calls: int = 3
    rule: DecisionRule = DecisionRule.SPREAD
    answers: AnswerStats | None = None  # needed by the look-ahead rule
    _masks: np.ndarray = field(init=False, repr=False)
    _lists: tuple[list, ...] = field(init=False, repr=False)  # the weights as floats (look-ahead)
    _draws: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m = len(self.models)
        shapes = {"b_called": (self.b_called, (m,)), "b_waiting": (self.b_waiting, (m,)),
                  "w_called": (self.w_called, (m, len(CALLED_FEATURES))),
                  "w_waiting": (self.w_waiting, (m, len(WAITING_FEATURES))),
                  "spread": (self.spread, (2, m, m + 1, m + 1)), "cost": (self.cost, (m,)),
                  "corr": (self.corr, (m + 1, m + 1, m, m)),
                  "base": (self.base, (m,))}
        for name, (value, shape) in shapes.items():
            if np.shape(value) != shape or not np.all(np.isfinite(value)):
                raise RouterArtifactError(f"unified model: {name} must be finite with shape {shape}, "
                                          f"got {np.shape(value)}")
        if m < 1 or m > 8:
            raise RouterArtifactError(f"unified model: 1 to 8 tiers, got {m}")
        if np.any(self.cost < 0) or np.any(self.spread < 0):
            raise RouterArtifactError("unified model: costs and spreads are non-negative")
        if np.any(np.abs(self.corr) > 1 + 1e-9):
            raise RouterArtifactError("unified model: correlations lie in [-1, 1]")
        if not 1 <= self.max_calls <= m:
            raise RouterArtifactError(f"unified model: max_calls must be in 1..{m}, got {self.max_calls}")
        if self.rule is DecisionRule.LOOKAHEAD and self.answers is None:
            raise RouterArtifactError("unified model: the look-ahead rule needs answer statistics "
                                      "(an artifact of format cascade-unified/1 has none: refit it)")
        if self.answers is not None:
            a = self.answers
            values = (a.agree_right, a.agree_wrong, *a.no_answer)
            if len(a.no_answer) != m or not all(0.0 <= v <= 1.0 for v in values):
                raise RouterArtifactError(f"unified model: answer statistics are shares in [0, 1], "
                                          f"no_answer one per tier ({m})")
        bits = np.arange(1 << m)[:, None] >> np.arange(m)[None, :] & 1
        object.__setattr__(self, "_masks", bits.astype(bool))
        object.__setattr__(self, "_lists", (self.w_called.tolist(), self.b_called.tolist(),
                                            self.w_waiting.tolist(), self.b_waiting.tolist(),
                                            self.cost.tolist()))
        half = np.random.default_rng(0).standard_normal((_DRAWS // 2, m))
        object.__setattr__(self, "_draws", np.concatenate([half, -half]))

    # --- estimates ---------------------------------------------------------------------------

    def qualities(self, prior: np.ndarray, called: Sequence[int],
                  groups: Sequence[int | None]) -> np.ndarray:
        """Current quality estimate of every tier (called ones from their answers' agreement,
        waiting ones from the prior and how the called answers agree)."""
        m = len(self.models)
        q = np.empty(m)
        waiting = [t for t in range(m) if t not in called]
        if called:
            c = list(called)
            q[c] = _sigmoid(np.einsum("ij,ij->i", called_features(prior, called, groups),
                                      self.w_called[c]) + self.b_called[c])
        if waiting:
            q[waiting] = _sigmoid(np.einsum("ij,ij->i", waiting_features(prior, waiting, groups),
                                            self.w_waiting[waiting]) + self.b_waiting[waiting])
        return q

    def decide(self, prior: Sequence[float] | np.ndarray, called: Sequence[int],
               groups: Sequence[int | None], cost_weight: float,
               available: Sequence[bool] | None = None,
               cache: dict[State, dict[int, float]] | None = None) -> Step:
        """Stop, or the tier to call next. ``prior``: the router's P(good) per tier;
        ``called`` in call order with their answers' ``groups``; ``available``: tiers that may
        still be called (default: all). Never calls a tier twice. ``cache``: the look-ahead's
        estimates per state for this query (pass the same dict to reuse them across λ)."""
        m = len(self.models)
        p = np.asarray(prior, dtype=float)
        if p.shape != (m,):
            raise ValueError(f"prior has shape {p.shape}, the model has {m} tiers")
        if len(groups) != len(called) or len(set(called)) != len(called):
            raise ValueError("called tiers must be distinct, one answer group each")
        if not cost_weight >= 0:
            raise ValueError(f"cost_weight must be >= 0, got {cost_weight}")
        match self.rule:
            case DecisionRule.LOOKAHEAD:
                return self._look_ahead(p, called, groups, cost_weight, available, cache)
            case DecisionRule.SPREAD:
                return self._spread(p, called, groups, cost_weight, available)
        raise AssertionError(self.rule)

    def _look_ahead(self, p: np.ndarray, called: Sequence[int], groups: Sequence[int | None],
                    cost_weight: float, available: Sequence[bool] | None,
                    cache: dict[State, dict[int, float]] | None) -> Step:
        assert self.answers is not None  # checked at construction
        m = len(self.models)
        free = [True] * m if available is None else [bool(a) for a in available]
        scorer = _Scorer(p.tolist(), self._lists[0], self._lists[1], self._lists[2], self._lists[3])
        state = canonical(called, groups)
        call, value = lookahead(scorer, self.answers, self._lists[4], state, free, self.max_calls,
                                cost_weight, cache if cache is not None else {})
        estimates = scorer.called(state)
        q = tuple(estimates[t] if t in estimates else scorer.waiting(state, t) for t in range(m))
        answer = max(called, key=lambda t: (q[t], -called.index(t))) if called else None
        if call is None and answer is None:  # nothing may be called and nothing was
            return Step(None, None, q, -math.inf)
        return Step(call, answer, q, float(value), () if call is None else (call,))

    def _spread(self, p: np.ndarray, called: Sequence[int], groups: Sequence[int | None],
                cost_weight: float, available: Sequence[bool] | None) -> Step:
        m = len(self.models)
        q = self.qualities(p, called, groups)
        k = len(called)
        done = np.zeros(m, dtype=bool)
        done[list(called)] = True
        allowed = ~done if available is None else ~done & np.asarray(available, dtype=bool)
        masks = self._masks
        sizes = k + masks.sum(axis=1)
        ok = ~np.any(masks & ~allowed, axis=1) & (sizes <= self.max_calls) & (sizes >= 1)
        answer = int(called[int(np.argmax(q[list(called)]))]) if k else None
        if not ok.any():  # nothing may be called: stop with what there is
            return Step(None, answer, tuple(q), float(q[answer]) if answer is not None else -math.inf)
        plans = masks[ok]
        n = sizes[ok]
        include = plans | done
        tiers = np.arange(m)[None, :]
        std = np.where(plans, self.spread[0, tiers, k, n[:, None]],
                       np.where(done, self.spread[1, tiers, k, n[:, None]], 0.0))
        cov = std[:, :, None] * self.corr[k, n] * std[:, None, :] + _JITTER * np.eye(m)
        moves = self._draws @ np.linalg.cholesky(cov).transpose(0, 2, 1)  # correlated (p, r, m)
        moves *= (std > 0)[:, None, :]  # the jitter moves nothing
        draws = np.clip(q[None, None, :] + moves, 0.0, 1.0)
        best = np.where(include[:, None, :], draws, -np.inf).max(axis=2).mean(axis=1)
        value = np.round(best - cost_weight * (plans.astype(float) @ self.cost), 9)
        choice = int(np.argmax(value))  # ties: the first (stopping, else the lowest tiers)
        plan = tuple(int(t) for t in np.flatnonzero(plans[choice]))
        if not plan:
            return Step(None, answer, tuple(q), float(value[choice]))
        nxt = max(plan, key=lambda t: (q[t], -self.cost[t], -t))  # the most promising first
        return Step(nxt, answer, tuple(q), float(value[choice]), plan)

    # --- artifact ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        return {"format": FORMAT, "models": list(self.models), "max_calls": self.max_calls,
                "w_called": self.w_called.tolist(), "b_called": self.b_called.tolist(),
                "w_waiting": self.w_waiting.tolist(), "b_waiting": self.b_waiting.tolist(),
                "spread": self.spread.tolist(), "corr": self.corr.tolist(), "cost": self.cost.tolist(),
                "base": self.base.tolist(), "rule": self.rule.value,
                "answers": None if self.answers is None else {
                    "agree_right": self.answers.agree_right, "agree_wrong": self.answers.agree_wrong,
                    "no_answer": list(self.answers.no_answer)}}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")

    def subset(self, models: Sequence[str]) -> UnifiedModel:
        """The model restricted to (and ordered as) ``models``; a name it was not fitted for is
        a ``RouterArtifactError``."""
        missing = [name for name in models if name not in self.models]
        if missing:
            raise RouterArtifactError(f"the unified model was fitted for {', '.join(self.models)}; "
                                      f"it knows nothing of {', '.join(missing)}")
        idx = [self.models.index(name) for name in models]
        sizes = list(range(len(models) + 1))  # answers seen: 0..len(models)
        spread = self.spread[:, idx][:, :, sizes][:, :, :, sizes]
        corr = self.corr[sizes][:, sizes][:, :, idx][:, :, :, idx]
        rel = self.cost[idx] / max(float(self.cost[idx].max()), 1e-12)
        return UnifiedModel(tuple(models), self.w_called[idx], self.b_called[idx],
                            self.w_waiting[idx], self.b_waiting[idx], spread, corr, rel, self.base[idx],
                            min(self.max_calls, len(models)), self.rule,
                            None if self.answers is None else self.answers.subset(idx))


@dataclass(frozen=True, slots=True)
class AnswerKey:
    """How an answer's text becomes its group key: ``verifiers.normalise`` by ``kind``; None
    (counted as "no answer") when nothing can be extracted — and, with ``check_arithmetic``,
    when the answer's own worked arithmetic is false (``verifiers.check_arithmetic``): an
    answer built on a false step agrees with nothing and vouches for nothing. The check is on
    by default for ``number`` answers (worked arithmetic is their substance) and off for the
    others; a policy sets it with ``unified.check_arithmetic``."""

    kind: AnswerKind
    check_arithmetic: bool

    @classmethod
    def of(cls, kind: AnswerKind, check_arithmetic: bool | None = None) -> AnswerKey:
        default = kind is AnswerKind.NUMBER
        return cls(kind, default if check_arithmetic is None else check_arithmetic)

    def judge(self, text: str) -> tuple[str | None, tuple[str, ...]]:
        """The group key, and the false steps of working that made it None (if any)."""
        if self.check_arithmetic:
            false = check_arithmetic(text).false
            if false:
                return None, false
        return normalise(text, self.kind), ()

    def __call__(self, text: str) -> str | None:
        return self.judge(text)[0]

    def to_json(self) -> dict[str, object]:
        return {"answer": self.kind.value, "check_arithmetic": self.check_arithmetic}

    def describe(self) -> str:
        return f"answer {self.kind.value}, arithmetic check {'on' if self.check_arithmetic else 'off'}"


@dataclass(frozen=True, slots=True)
class UnifiedSettings:
    """What the engine runs with ``routing.mode: unified``: the model bound to the policy's
    tiers, λ, and how an answer's text becomes its group key (None: no answer found)."""

    model: UnifiedModel
    cost_weight: float
    key: AnswerKey

    def prior(self, p_ok: Sequence[float | None]) -> np.ndarray:
        """The router's P(good) per tier; where it gives none (a failed router), the tier's
        mean quality on the training data."""
        base = self.model.base
        if len(p_ok) != base.size:
            return base.copy()
        return np.array([base[i] if v is None else float(v) for i, v in enumerate(p_ok)])

    @staticmethod
    def grouped(keys: Sequence[str | None]) -> list[int | None]:
        """Group ids from group keys: equal keys, equal ids in order of first use; None stays."""
        seen: dict[str, int] = {}
        return [None if k is None else seen.setdefault(k, len(seen)) for k in keys]


def fitted_on(path: str | Path) -> dict[str, object] | None:
    """What the fit recorded about its data (``fitted_on`` written by ``cascade train-router
    --kind unified``); None when the artifact records nothing or cannot be read (``load_unified``
    reports an unreadable artifact)."""
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8")).get("fitted_on")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, dict) else None


def fitted_key(path: str | Path) -> AnswerKey | None:
    """The answer key a unified artifact was fitted with; None when it records none (older or
    hand-made artifacts)."""
    found = (fitted_on(path) or {}).get("key")
    if found is None:
        return None
    try:
        return AnswerKey(AnswerKind(found["answer"]), bool(found["check_arithmetic"]))  # type: ignore[index]
    except (ValueError, KeyError, TypeError) as exc:
        raise RouterArtifactError(f"{path}: malformed fitted_on.key: {exc!r}") from None


def load_unified(path: str | Path, max_calls: int | None = None) -> UnifiedModel:
    """Read a unified model written by ``UnifiedModel.save`` (JSON; nothing is unpickled)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RouterArtifactError(f"{path}: cannot read the unified model: {exc}") from None
    if not isinstance(data, dict) or data.get("format") not in FORMATS:
        raise RouterArtifactError(f"{path}: not a unified model (format {FORMAT!r} expected)")
    try:
        arrays = {k: np.asarray(data[k], dtype=float) for k in
                  ("w_called", "b_called", "w_waiting", "b_waiting", "spread", "corr", "cost", "base")}
        models = tuple(str(m) for m in data["models"])
        calls = int(data["max_calls"]) if max_calls is None else max_calls
        rule = DecisionRule(data.get("rule", DecisionRule.SPREAD.value))
        stats = data.get("answers")
        answers = None if stats is None else AnswerStats(
            float(stats["agree_right"]), float(stats["agree_wrong"]),
            tuple(float(v) for v in stats["no_answer"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RouterArtifactError(f"{path}: malformed unified model: {exc!r}") from None
    return UnifiedModel(models, max_calls=calls, rule=rule, answers=answers, **arrays)
