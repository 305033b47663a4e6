"""The built-in bench suites: policy YAMLs over ../shared/data, shipped as package data
(read with ``importlib.resources``, so they work from a wheel), with the published c_max each
data set's peers were compared under (../shared/BASELINES.md)."""

from __future__ import annotations

from importlib.resources import files

from cascade.bench._replay import SplitRule, Suite
from verifiers import AnswerKind

HERE = files(__name__)

SUITES: dict[str, Suite] = {
    "arc": Suite("arc", HERE / "arc.yaml", SplitRule.FILES, c_max=2.2894,
                 answer=AnswerKind.CHOICE),
    "winogrande": Suite("winogrande", HERE / "winogrande.yaml", SplitRule.FILES,
                        c_max=1.3418, answer=AnswerKind.CHOICE),
    "mbpp": Suite("mbpp", HERE / "mbpp.yaml", SplitRule.FILES, c_max=0.8958,
                  answer=AnswerKind.CODE),
    "gsm8k": Suite("gsm8k", HERE / "gsm8k.yaml", SplitRule.HALVES, c_max=2.5113,
                   answer=AnswerKind.NUMBER),
    "mot-date": Suite("mot-date", HERE / "mot-date.yaml", SplitRule.HALVES, c_max=3.9391,
                      answer=AnswerKind.EXACT),
}
