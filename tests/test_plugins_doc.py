"""docs/plugins.md covers every decision kind and every method of its contract, and every example on it
registers and runs (in fast mode too where it declares a fused form); its metric examples score
images, re-weight exactly, and run through a whole run."""
from __future__ import annotations

import re

import pytest

from bench.check import run_variant, tiny_model
from helpers import REPO
from mgt_common.registry import load_plugin_file
from samplers.components import KIND_BASES, REGISTRIES, fused_form, list_components
from samplers.contract import engine_methods
from samplers.variant import VARIANT_PRESETS, build_variant
from metrics.base import METRICS

DOC = REPO / "docs" / "plugins.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Import every example as a user's --plugin file; what each one registered, by kind."""
    folder = tmp_path_factory.mktemp("doc_plugins")
    list_components()  # the built-ins first, so that only the examples' own registrations are counted
    registered, metrics = [], []
    for index, block in enumerate(python_blocks()):
        before = {kind: set(registry.names()) for kind, registry in REGISTRIES.items()}
        variants_before = set(VARIANT_PRESETS.names())
        metrics_before = set(METRICS.names())
        path = folder / f"example_{index}.py"
        path.write_text(block)
        load_plugin_file(path)
        new_metrics = sorted(set(METRICS.names()) - metrics_before)
        if new_metrics:
            metrics.append((path, new_metrics))
            continue
        kinds = {kind for kind, registry in REGISTRIES.items() if set(registry.names()) - before[kind]}
        registered.append((kinds, sorted(set(VARIANT_PRESETS.names()) - variants_before)))
    return registered, metrics


@pytest.fixture(scope="module")
def component_examples(examples):
    return examples[0]


@pytest.fixture(scope="module")
def metric_examples(examples):
    return examples[1]


def test_every_kind_has_a_section_and_an_example(component_examples):
    examples = component_examples
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


def test_every_example_runs(component_examples):
    examples = component_examples
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


# -- metrics ------------------------------------------------------------------------------------------

def test_one_example_of_each_metric_kind(metric_examples):
    from metrics.base import PerImageMetric, SetMetric

    classes = [METRICS.get(name) for _, names in metric_examples for name in names]
    assert len(classes) == 2
    assert sum(issubclass(c, PerImageMetric) for c in classes) == 1 and sum(issubclass(c, SetMetric) for c in classes) == 1
    text = DOC.read_text()
    for method in ("score(self, batch)", "features(self, images, prompts, world, prompt_ids)",
                   "compute_from_features(self, features)", "resampled(self, features, weights)"):
        assert method in text, f"docs/plugins.md does not show {method}"


def test_metric_examples_keep_their_contract(metric_examples):
    """The per-image example returns a finite float per image and checks its parameter; the set metric's
    `resampled` re-weights exactly (leaving an image out equals computing without it)."""
    import numpy as np
    import torch

    from metrics.base import PerImageMetric, ScoreBatch, checked_scores, checked_set_results
    from mgt_common.errors import ConfigError

    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images[0] = 0.5  # a grey image has no colour
    prompts = [f"prompt {i}" for i in range(5)]
    for _, (name,) in metric_examples:
        cls = METRICS.get(name)
        if issubclass(cls, PerImageMetric):
            metric = cls(device="cpu")
            scores = checked_scores(metric, metric.score(ScoreBatch(images, prompts)), prompts)
            assert scores[0] == 0 and (scores[1:] > 0).all()
            with pytest.raises(ConfigError):
                cls(weight=-1.0)
            assert cls(weight=0.5).cache_id != metric.cache_id
        else:
            metric = cls(device="cpu")
            features = metric.features(iter([images[:2], images[2:]]), prompts)
            value = checked_set_results(metric, metric.compute_from_features(features))
            (result,) = value.values()
            weights = np.ones((5, 5)) - np.eye(5)  # leave image r out
            (resampled,) = metric.resampled(features, weights).values()
            for r in range(5):
                (left_out,) = metric.compute_from_features(features.select([i for i in range(5) if i != r])).values()
                assert resampled[r] == pytest.approx(left_out.value)
            (one,) = checked_set_results(metric, metric.compute_from_features(features.select([0]))).values()
            assert np.isnan(one.value) and one.warnings and result.value > 0


def test_metric_examples_run_in_a_whole_run(metric_examples, tmp_path):
    """As a user would: the examples' file as --plugin, the metrics named in --metrics, a tiny run."""
    import pandas as pd

    from bench.cli import main
    from helpers import write_tiny_config

    config = write_tiny_config(tmp_path / "c.toml", limit=2, steps=3)
    plugins = [str(path) for path, _ in metric_examples]
    names = [name for _, (name,) in metric_examples]
    args = ["--config", str(config), "--out", str(tmp_path / "run"), "--metrics", ",".join(["world-loglik", *names])]
    for plugin in plugins:
        args += ["--plugin", plugin]
    assert main(args) == 0
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    sets = pd.read_csv(tmp_path / "run" / "set_metrics.csv")
    from metrics.base import PerImageMetric

    per_image = next(n for n in names if issubclass(METRICS.get(n), PerImageMetric))
    set_metric = next(n for n in names if n != per_image)
    assert scores[scores["metric"] == per_image]["value"].notna().all()
    assert sets[sets["metric"] == set_metric]["value"].notna().all()
