"""Token budgets: required items whole or a clear error, optional context by relevance."""

from __future__ import annotations

import pytest

from agentx.llm.budget import (
    Context,
    EstimateCounter,
    fit_template,
    prompt_budget,
)
from agentx.llm.errors import FailureKind, PromptTooLarge


class Words:
    """One token per word: easy to reason about in assertions."""

    name = "words"

    def count(self, text: str) -> int:
        return len(text.split())


TEMPLATE = "Task: {task}\nCode:\n{code}\nMap:\n{map}"


def test_optional_pieces_are_kept_most_relevant_first_and_the_cut_is_said() -> None:
    pieces = [f"span{i} " + "x " * 9 for i in range(10)]  # 10 words each
    prompt, report = fit_template(
        TEMPLATE,
        {"task": "do it"},
        [Context(name="code", pieces=pieces), Context(name="map", pieces=["a", "b"])],
        budget=45,
        counter=Words(),
    )
    assert Words().count(prompt) <= 45
    assert "span0" in prompt and "span1" in prompt and "span3" not in prompt
    assert "more left out to fit the token budget" in prompt
    assert report.kept["code"][1] == 10 and report.kept["code"][0] < 10
    assert report.cut()["code"] == 10 - report.kept["code"][0]


def test_everything_fits_when_the_budget_allows() -> None:
    prompt, report = fit_template(
        TEMPLATE,
        {"task": "t"},
        [Context(name="code", pieces=["a", "b"]), Context(name="map", pieces=["m"])],
        budget=100,
        counter=Words(),
    )
    assert report.cut() == {} and "left out" not in prompt and prompt.endswith("m")


def test_a_required_item_that_cannot_fit_is_one_clear_error() -> None:
    with pytest.raises(PromptTooLarge, match=r"required items need .* budget is 20 .*task"):
        fit_template(
            TEMPLATE,
            {"task": "word " * 50},
            [Context(name="code", pieces=[]), Context(name="map", pieces=[])],
            budget=20,
            counter=Words(),
        )
    assert PromptTooLarge("x").kind == FailureKind.OVER_BUDGET


def test_a_field_without_a_value_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="map"):
        fit_template(TEMPLATE, {"task": "t", "code": "c"}, [], 100, Words())


def test_the_estimate_errs_high_and_the_budget_leaves_room_for_the_reply() -> None:
    assert EstimateCounter().count("def rerank(scores, k):") >= 7
    assert prompt_budget({"context_tokens": 16384, "max_tokens": 2048}) == 13_619
    assert prompt_budget({"context_tokens": 16384, "prompt_budget_tokens": 4000}) == 4000
    assert prompt_budget({"context_tokens": 4096, "prompt_budget_tokens": 9000}) < 4096
