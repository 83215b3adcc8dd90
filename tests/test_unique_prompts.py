"""Issue 10: the default prompt set has no repeated text, and planning collapses repeats with a warning."""
from __future__ import annotations

import pytest

from bench.models.synthetic.grammar import SceneGrammar
from bench.plan import DuplicatePromptWarning, collapse_duplicate_prompts
from bench.prompts import Prompt, load_prompts


def test_default_synthetic_prompt_set_is_duplicate_free():
    prompts = load_prompts("synthetic-world", n=48)
    texts = [p.text for p in prompts]
    assert len(prompts) == 48 and len(set(texts)) == 48
    big = SceneGrammar(grid=16).prompt_set(200, seed=1)
    assert len({t for _, t, _ in big}) == 200


def test_a_grammar_too_small_for_n_distinct_prompts_says_so():
    tiny = SceneGrammar(grid=8, colours=("red", "blue"), shapes=("circle",), positions=("center",), sizes=("small",))
    with pytest.raises(ValueError, match="distinct prompts"):
        tiny.prompt_set(10)


def test_plan_collapses_repeated_texts_and_names_them():
    prompts = [Prompt("a", "a red circle"), Prompt("b", "a blue square"), Prompt("c", "a red circle"),
               Prompt("d", "a red circle"), Prompt("e", "x", seed=1), Prompt("f", "x", seed=2)]
    kept, messages = collapse_duplicate_prompts(prompts)
    assert [p.id for p in kept] == ["a", "b", "e", "f"]  # f: same text, another fixed seed — a further seed
    assert any("c, d" in m and "prompt a" in m and "collapsed" in m for m in messages)
    assert any("f" in m and "prompt e" in m and "seeds of one prompt" in m for m in messages)


def test_make_plan_warns(monkeypatch):
    import bench.plan as plan

    monkeypatch.setattr(plan, "unit_key", lambda *a, **k: "k")
    from types import SimpleNamespace

    config = SimpleNamespace(samplers=["vanilla"], seeds=[0], steps=16, guidance=3.0)
    sweep = SimpleNamespace(points=[SimpleNamespace(name="vanilla", steps=16, guidance=3.0)])
    with pytest.warns(DuplicatePromptWarning, match="collapsed"):
        units = plan.make_plan(config, [Prompt("a", "t"), Prompt("b", "t")], {"vanilla": None}, {}, None, sweep=sweep)
    assert [u.prompt.id for u in units] == ["a"]
