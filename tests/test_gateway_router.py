"""RouteLLM-style model names through the official ``openai`` client: ``router-<kind>-<threshold>``
is the default policy with its learned router's threshold replaced (a kNN router trained on
MiniLM embeddings of the hand-written fixture)."""

from __future__ import annotations

from pathlib import Path

import anyio
import openai
import pytest
from gateway_server import KEY, running
from openai import AsyncOpenAI

from cascade.routing import correctness_data, train_knn
from cascade.server import GatewayConfig

pytestmark = [pytest.mark.anyio, pytest.mark.models]  # loads MiniLM

TOPICS = Path(__file__).parent / "fixtures" / "routing_routerbench.csv"
HISTORY = "Question: Which dynasty built the Forbidden City?\nAnswer:"


def _tier(name: str) -> str:
    return f"  - {{name: {name}, model: {name}-model, provider: {{kind: replay, data: '{TOPICS}'}}}}\n"


async def test_router_model_names_replace_the_default_policys_threshold(tmp_path: Path) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    model = await anyio.to_thread.run_sync(lambda: train_knn(correctness_data(TOPICS), k=3))
    model.save(policies / "knn")
    (policies / "routed.yaml").write_text(
        "tiers:\n" + _tier("cheap") + _tier("mid") + _tier("dear") + "routing:\n  mode: route\n"
        "  router: {kind: knn, artifact: knn, threshold: 0.6, cold_start: false}\n")
    (policies / "plain.yaml").write_text("tiers:\n" + _tier("cheap"))
    with running(policies, GatewayConfig(default_model="routed")) as url:
        async with AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=60) as c:
            async def tier(model: str) -> str:
                reply = await c.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": HISTORY}])
                assert reply.model == model
                return str((reply.model_extra or {})["cascade"]["tier"])

            # the policy's own threshold: history questions start mid (cheap is never right)
            assert await tier("routed") == "mid"
            assert await tier("router-knn-0") == "cheap"  # every tier passes a threshold of 0
            assert await tier("router-knn-0.6") == "mid"
            assert await tier("router-knn-1.5") == "dear"  # none passes: the default tier
            with pytest.raises(openai.NotFoundError, match="routes with knn, not mf"):
                await c.chat.completions.create(model="router-mf-0.5",
                                                messages=[{"role": "user", "content": HISTORY}])
            listed = [m.id for m in (await c.models.list()).data]
    assert listed == ["plain", "routed"]  # variants are not listed
