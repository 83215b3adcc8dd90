"""docs/plugins.md covers every decision kind and every method of its contract, and every example on it
registers and runs (in fast mode too where it declares a fused form)."""
from __future__ import annotations

import re

import pytest

from bench.check import run_variant, tiny_model
from helpers import REPO
from mgt_common.registry import load_plugin_file
from samplers.components import KIND_BASES, REGISTRIES, fused_form, list_components
from samplers.contract import engine_methods
from samplers.variant import VARIANT_PRESETS, build_variant

DOC = REPO / "docs" / "plugins.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Import every example as a user's --plugin file; what each one registered, by kind."""
    folder = tmp_path_factory.mktemp("doc_plugins")
    list_components()  # the built-ins first, so that only the examples' own registrations are counted
    registered = []
    for index, block in enumerate(python_blocks()):
        before = {kind: set(registry.names()) for kind, registry in REGISTRIES.items()}
        variants_before = set(VARIANT_PRESETS.names())
        path = folder / f"example_{index}.py"
        path.write_text(block)
        load_plugin_file(path)
        kinds = {kind for kind, registry in REGISTRIES.items() if set(registry.names()) - before[kind]}
        registered.append((kinds, sorted(set(VARIANT_PRESETS.names()) - variants_before)))
    return registered


def test_every_kind_has_a_section_and_an_example(examples):
    text = DOC.read_text()
    covered = set()
    for kinds, variants in examples:
        assert len(kinds) == 1 and len(variants) == 1, "each example registers one component and one variant"
        covered |= kinds
    assert covered == set(KIND_BASES) == set(REGISTRIES)
    for kind, base in KIND_BASES.items():
        heading = {"logits_processor": "logits_processors", "probability_corrector": "probability_correctors",
                   "model_transform": "model_transforms"}.get(kind, kind)
        assert re.search(rf"^### {heading}:", text, re.M), f"docs/plugins.md has no section for {kind}"
        for method, args in engine_methods(base).items():
            signature = f"{method}({', '.join(('self', *args))})"
            assert signature in text, f"docs/plugins.md does not show {kind}.{signature}"


def test_every_example_runs(examples):
    model, prompts = tiny_model(8)
    for kinds, (variant_name,) in examples:
        variant = build_variant(variant_name)
        if kinds == {"model_transform"}:
            check_model_transform(variant.model_transforms, model)
        result = run_variant(variant, model, prompts, steps=8, guidance=3.0)
        assert result.forward_passes >= 1
        if all(fused_form(component) is not None for component in variant.components()):
            fast = build_variant("fast", {"fast": {"base": variant_name, "mode": "fast"}})
            assert run_variant(fast, model, prompts, steps=8, guidance=3.0).forward_passes >= 1


def check_model_transform(transforms, tiny):
    """The harness attaches a model transform to a network backend and restores it after the variant:
    the example refuses the tiny model (no network), changes a backend that has one, and undoes it exactly."""
    import torch

    from mgt_common.errors import ConfigError
    from samplers.model_transforms import apply_model_transforms

    (transform,) = transforms
    with pytest.raises(ConfigError):
        transform.check_model(tiny)

    class Backend:
        transformer = torch.nn.Linear(4, 4)

    backend = Backend()
    original = backend.transformer
    transform.check_model(backend)
    inputs = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with apply_model_transforms(backend, transforms):
        assert backend.transformer is not original
        changed = backend.transformer(inputs)
    assert backend.transformer is original
    assert not torch.equal(changed, original(inputs)) and torch.allclose(changed, original(inputs), atol=0.05)


def test_ctx_table_matches_the_step_context():
    import torch

    from samplers.engine import Generation, StepContext

    model, _ = tiny_model(8)
    tokens = torch.full((1, 25), model.mask_token_id)
    generation = Generation(model=model, variant=build_variant("vanilla"), conditioning={}, generators=[],
                            tokens=tokens, total_steps=8, guidance_scale=3.0, forward_passes=torch.zeros(1),
                            grid=(5, 5))
    ctx = StepContext(generation, 0, tokens == model.mask_token_id)
    public = {name for name in vars(ctx)} | {n for n in vars(StepContext) if not n.startswith("_")}
    documented = set(re.findall(r"`ctx\.(\w+)", DOC.read_text()))
    assert public <= documented, f"StepContext attributes missing from docs/plugins.md: {sorted(public - documented)}"
