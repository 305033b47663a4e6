"""How ``cascade bench --csv`` costs a file that records no costs (pure but for the bundled
price list; no network).

The rule, printed as a note in ``bench.md`` and never a silent $0:

- **price** per model: ``--price 'MODEL=IN,OUT'`` (USD per 1M input, output tokens) when
  given; else the bundled ``genai-prices`` list, looked up by the model's name, then by its
  name after the last ``/`` (``mistralai/Mixtral-8x7B-Instruct-v0.1`` is listed as
  ``Mixtral-8x7B-Instruct-v0.1``); a model found nowhere stops the run (``BenchError``
  naming it and the flag).
- **tokens**: ``⌈characters / 4⌉`` of the prompt (billed once per call) plus the recorded
  answer's; a file with no answer texts bills ``--output-tokens N`` per answer (default
  ``DEFAULT_OUTPUT_TOKENS`` = 1: files of quality columns only are typically multiple-choice
  evaluations whose prompt ends in ``Answer:`` and is answered with one letter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cascade.errors import CascadeError
from cascade.policy import Price

DEFAULT_OUTPUT_TOKENS = 1
_MILLION = 1_000_000


class CostingError(CascadeError):
    """A ``--price`` that does not parse, or a model of a cost-less file with no price."""


@dataclass(frozen=True, slots=True)
class Costing:
    """What the user declared: prices per model name and the output length of absent answers."""

    prices: Mapping[str, Price] = field(default_factory=dict)
    output_tokens: int | None = None  # None: not given (DEFAULT_OUTPUT_TOKENS where needed)

    def check(self, has_costs: bool, has_responses: bool) -> None:
        """A declared setting the file makes moot is an error, not silently dropped."""
        if has_costs and self.prices:
            raise CostingError("--price: the file records its costs (|total_cost columns); "
                               "recorded costs are used as they are")
        if self.output_tokens is not None and (has_costs or has_responses):
            raise CostingError("--output-tokens applies only to a file that records neither "
                               "answers nor costs (this one records "
                               f"{'costs' if has_costs else 'answers'})")


@dataclass(frozen=True, slots=True)
class Priced:
    price: Price
    source: str  # "--price", or the list entry used


def parse_price(text: str) -> tuple[str, Price]:
    """``MODEL=IN,OUT`` (USD per 1M input / output tokens; the model name may hold ``=``,
    the last one separates)."""
    model, sep, numbers = text.rpartition("=")
    parts = numbers.split(",")
    if not sep or not model.strip() or len(parts) != 2:
        raise CostingError(f"--price {text!r}: expected 'MODEL=IN,OUT' (USD per 1M input, output tokens)")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise CostingError(f"--price {text!r}: {numbers!r} are not two numbers") from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise CostingError(f"--price {text!r}: prices must be finite and non-negative")
    return model.strip(), Price(input_per_1m=values[0], output_per_1m=values[1])


def parse_prices(texts: Sequence[str]) -> dict[str, Price]:
    out: dict[str, Price] = {}
    for text in texts:
        model, price = parse_price(text)
        if model in out and out[model] != price:
            raise CostingError(f"--price given twice for {model!r} with different prices")
        out[model] = price
    return out


def listed(model: str) -> Priced | None:
    """The bundled list's price of ``model`` (by name, then by its part after the last '/')."""
    from genai_prices import Usage, __version__, calc_price  # imported only when needed

    usage = Usage(input_tokens=_MILLION, output_tokens=_MILLION)
    for name in dict.fromkeys((model, model.rsplit("/", 1)[-1])):
        try:
            quote = calc_price(usage, name)
        except LookupError:
            continue
        price = Price(input_per_1m=float(quote.input_price), output_per_1m=float(quote.output_price))
        return Priced(price, f"genai-prices {__version__}: {quote.provider.id}/{quote.model.id}")
    return None


def price_models(models: Sequence[str], costing: Costing) -> dict[str, Priced]:
    """Every model's price, from ``--price`` first, else the list; a model without one is a
    ``CostingError`` naming all of them."""
    out: dict[str, Priced] = {}
    missing: list[str] = []
    for model in models:
        if model in costing.prices:
            out[model] = Priced(costing.prices[model], "--price")
            continue
        found = listed(model)
        if found is None:
            missing.append(model)
        else:
            out[model] = found
    unused = [m for m in costing.prices if m not in models]
    if unused:
        raise CostingError(f"--price names model(s) the file does not have: {', '.join(unused)} "
                           f"(models: {', '.join(models)})")
    if missing:
        raise CostingError(f"the file records no costs and the price list does not know "
                           f"{', '.join(missing)}: give --price 'MODEL=IN,OUT' (USD per 1M input, "
                           "output tokens) for each")
    return out


def costing_note(priced: Mapping[str, Priced], output_tokens: int | None) -> str:
    """One line for the console and ``bench.md``: the prices and tokens the costs come from."""
    prices = "; ".join(f"{m} ${p.price.input_per_1m:g} / ${p.price.output_per_1m:g} ({p.source})"
                       for m, p in priced.items())
    tokens = "tokens = ⌈characters / 4⌉ of the prompt and the recorded answer"
    if output_tokens is not None:
        tokens = (f"tokens = ⌈characters / 4⌉ of the prompt + {output_tokens} output token(s) per "
                  "answer (the file records no answers; set --output-tokens N)")
    return f"the file records no costs: costed as {tokens}, at per-1M input / output prices {prices}"
