"""What a tier's tokens cost: the policy's ``price:``, else a maintained price list.

Local tiers (llama_cpp) are free by definition and replay tiers use the costs their data
recorded; a remote tier (openai, anthropic) without ``price:`` is looked up in the bundled
list of the ``genai-prices`` package (offline: its data ships inside the package and is never
updated over the network here). A remote tier found nowhere costs $0 and ``cascade validate``
warns about it (``--strict``: an error)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from cascade.policy import (
    AnthropicProvider,
    Defaults,
    LlamaCppProvider,
    OpenAIProvider,
    Price,
    PriceList,
    ReplayProvider,
    TierSpec,
)

__all__ = ["PriceSource", "TierPrice", "listed_price", "tier_price"]

_MILLION = 1_000_000


class PriceSource(enum.Enum):
    POLICY = "policy"  # the tier's `price:`
    LIST = "genai-prices"  # the bundled price list
    LOCAL = "local"  # in-process model: free
    RECORDED = "recorded"  # replay data carries its own costs (else the tier's `price:`)
    MISSING = "missing"  # a remote tier with no price anywhere: $0, validation warning


@dataclass(frozen=True, slots=True)
class TierPrice:
    price: Price
    source: PriceSource
    detail: str = ""  # e.g. which list entry was used


def listed_price(model: str, provider: OpenAIProvider | AnthropicProvider) -> tuple[Price, str] | None:
    """The list price of ``model`` at ``provider`` (matched by its API URL; Anthropic by
    kind), or None when the list does not know the endpoint or the model. No network."""
    from genai_prices import Usage, __version__, calc_price  # imported only when needed

    usage = Usage(input_tokens=_MILLION, output_tokens=_MILLION)
    try:
        match provider:
            case AnthropicProvider():
                quote = calc_price(usage, model, provider_id="anthropic")
            case OpenAIProvider():
                quote = calc_price(usage, model, provider_api_url=provider.base_url)
    except LookupError:
        return None
    price = Price(input_per_1m=float(Decimal(quote.input_price)),
                  output_per_1m=float(Decimal(quote.output_price)))
    return price, f"genai-prices {__version__}: {quote.provider.id}/{quote.model.id}"


def tier_price(spec: TierSpec, defaults: Defaults) -> TierPrice:
    """The prices a tier is billed at, and where they come from (pure but for the list
    lookup). An explicit ``price:`` always wins."""
    if "price" in spec.model_fields_set or (
            spec.members and all(m.price is not None for m in spec.members)):
        return TierPrice(spec.price, PriceSource.POLICY)  # an ensemble's members: their own
    match spec.provider:
        case LlamaCppProvider():
            return TierPrice(Price(), PriceSource.LOCAL)
        case ReplayProvider():
            return TierPrice(Price(), PriceSource.RECORDED)
        case OpenAIProvider() | AnthropicProvider():
            if defaults.price_list is PriceList.GENAI_PRICES and spec.model is not None:
                found = listed_price(spec.model, spec.provider)
                if found is not None:
                    return TierPrice(found[0], PriceSource.LIST, found[1])
            return TierPrice(Price(), PriceSource.MISSING)
    raise TypeError(f"no price rule for provider {spec.provider!r}")  # unreachable: closed union
