"""Resilience keys in a policy: valid files build live deployments, breakers and budgets;
bad values are policy errors with key path and line."""

from __future__ import annotations

import pytest

from cascade import Cascade, PolicyError, parse_policy
from cascade.policy import LoadBalancing, OnBudgetExhausted, RedisStoreSpec

TIER = """\
tiers:
  - name: small
    model: m
    provider: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
"""

GOOD = """\
resilience:
  retry: {max_attempts: 4, initial_backoff_s: 0.1, max_backoff_s: 2, budget_ratio: 0.1}
  breaker: {window: time, window_size: 60, minimum_calls: 5, failure_rate: 0.4, open_s: 10}
  bulkhead: {max_in_flight: 8, max_queue: 16}
  store: {kind: redis, url: "redis://:hunter2@127.0.0.1:6399/0"}
budgets:
  - {name: daily, period: day, usd: 25}
  - {name: per-user, scope: caller, caller_key: user, period: minute, requests: 60}
on_budget_exhausted: error
tiers:
  - name: small
    model: m
    load_balancing: least_in_flight
    on_unavailable: best_so_far
    hedge: {after_s: 0.5}
    deployments:
      - provider: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
        weight: 3
      - provider: {kind: openai, base_url: "http://127.0.0.2:9/v1"}
        context_window: 4096
"""


def test_a_policy_with_every_resilience_key_builds() -> None:
    policy = parse_policy(GOOD)
    tier = policy.tiers[0]
    assert [d.weight for d in tier.deployment_specs] == [3.0, 1.0]
    assert tier.provider == tier.deployments[0].provider  # the first deployment is the provider
    assert tier.load_balancing is LoadBalancing.LEAST_IN_FLIGHT
    assert policy.on_budget_exhausted is OnBudgetExhausted.ERROR
    assert isinstance(policy.resilience.store, RedisStoreSpec)
    assert "hunter2" not in repr(policy) and "hunter2" not in str(policy.resilience)
    engine = Cascade.from_policy(policy)
    live = engine.tiers[0]
    assert [d.weight for d in live.deployments] == [3.0, 1.0]
    assert live.target.deployments[1].context_window == 4096
    assert live.target.hedge_after_s == 0.5
    assert engine.resilience.budgets is not None and len(engine.resilience.budgets.rules) == 2
    assert engine.resilience.spec.bulkhead.max_in_flight == 8


BROKEN = [
    ("resilience:\n  breaker: {window_size: -1}\n" + TIER,
     [("resilience.breaker.window_size", 2, "Input should be greater than or equal to 1")]),
    ("resilience:\n  breaker: {failure_rate: 1.5}\n" + TIER,
     [("resilience.breaker.failure_rate", 2, "Input should be less than or equal to 1")]),
    ("resilience:\n  breaker: {window: sliding}\n" + TIER,
     [("resilience.breaker.window", 2, "Input should be 'count' or 'time'")]),
    ("resilience:\n  retry: {max_attempts: 0}\n" + TIER,
     [("resilience.retry.max_attempts", 2, "Input should be greater than or equal to 1")]),
    ("resilience:\n  retry: {initial_backoff_s: .inf}\n" + TIER,
     [("resilience.retry.initial_backoff_s", 2, "Input should be a finite number")]),
    ("resilience:\n  bulkhead: {max_in_flight: 0}\n" + TIER,
     [("resilience.bulkhead.max_in_flight", 2, "Input should be greater than or equal to 1")]),
    ("resilience:\n  store: {kind: etcd}\n" + TIER,
     [("resilience.store", 2, "unknown store kind 'etcd' (expected one of: memory, redis)")]),
    (TIER + "    load_balancing: round_robin\n",
     [("tiers[0].load_balancing", 5,
       "Input should be 'weighted_random', 'least_in_flight' or 'lowest_latency'")]),
    ("tiers:\n  - name: small\n    model: m\n    deployments: []\n",
     [("tiers[0]", 2, "`deployments` needs at least one deployment")]),
    ("tiers:\n  - name: small\n    model: m\n    provider: {kind: replay, data: d.csv}\n"
     "    deployments:\n      - provider: {kind: replay, data: d.csv}\n",
     [("tiers[0]", 2, "give `provider` or `deployments`, not both")]),
    ("tiers:\n  - name: small\n    model: m\n    hedge: {after_s: 1}\n"
     "    provider: {kind: replay, data: d.csv}\n",
     [("tiers[0]", 2, "`hedge` needs at least two `deployments`")]),
    ("budgets:\n  - {name: daily, period: week, usd: 1}\n" + TIER,
     [("budgets[0].period", 2, "Input should be 'minute', 'hour', 'day' or 'month'")]),
    ("budgets:\n  - {name: daily, period: day}\n" + TIER,
     [("budgets[0]", 2, "a budget needs `usd` and/or `requests`")]),
    ("budgets:\n  - {name: daily, period: day, usd: -3}\n" + TIER,
     [("budgets[0].usd", 2, "Input should be greater than or equal to 0")]),
    ("on_budget_exhausted: panic\n" + TIER,
     [("on_budget_exhausted", 1, "Input should be 'best_so_far', 'cheapest' or 'error'")]),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_bad_resilience_values_are_policy_errors_with_key_path_and_line(
        text: str, expected: list[tuple[str, int, str]]) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    got = [(i.key_path, i.line, i.message) for i in info.value.issues]
    assert got == expected
