#!/usr/bin/env python
"""Text binding of the synthetic world's trained network along its training (docs/world.md, "Training").

For each weights file (the shipped one, or the checkpoints `python -m bench.models.synthetic.train
--checkpoints DIR` writes), it generates the default run's vanilla images — the first 48 prompts of the
world's prompt set × seeds 0 and 1, 16 steps, CFG 3, in batches of 16, exactly as the runner does — and
scores them with the world's exact posteriors (`TokenWorld`):

- ``alignment``: mean P(the image shows a scene its prompt describes) (the ``world-alignment`` metric);
- ``faithfulness``: per attribute, over the images whose prompt names it, the mean posterior
  probability that the image shows the named value (1 − the ``world-error-*`` rate among those prompts);
- ``loglik``: mean log p(x | prompt) per token;
- ``step`` and ``loss``: the last entry of the file's recorded loss curve (the training batches' mean);
- ``heldout_loss``: the training objective (masked cross-entropy, nats per masked token) on a fixed set
  of fresh training draws (``--draws``, drawn as training draws them but from another seed), next to
  ``floor``: the exact denoiser's loss on the same draws, which no network can beat.

Prints one JSON line per file; docs/world.md quotes them.

    python benchmarks/world_training_curve.py --threads 1                 # the shipped weights
    python benchmarks/world_training_curve.py --threads 1 DIR/step*.safetensors PATH.safetensors
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def training_draws(model, count: int, seed: int):
    """``count`` draws of the training distribution (train.py's `Batches`, CFG drop rate 0.1) and their texts."""
    from bench.models.synthetic.train import Batches

    config = model.network.config
    batches = Batches(config, epsilon=model.world.epsilon, cfg_dropout=0.1, seed=seed)
    words = dict(enumerate(config.vocab))
    draws = [batches(256) for _ in range(-(-count // 256))]
    inputs, targets, mask, ids = (torch.cat(parts)[:count] for parts in zip(*draws))
    texts = [" ".join(words[int(i)] for i in row if int(i) > 1) for row in ids]  # ids 0, 1: <pad>, <bos>
    return inputs, targets, mask, ids, texts


@torch.no_grad()
def heldout_losses(model, draws) -> tuple[float, float]:
    """(network, exact denoiser) masked cross-entropy on the draws, nats per masked token."""
    inputs, targets, mask, ids, texts = draws
    network_nats = 0.0
    for start in range(0, len(inputs), 64):
        rows = slice(start, start + 64)
        pooled, hidden = model.network.text_encoder(ids[rows])
        log_q = model.network(inputs[rows], pooled, hidden).double().log_softmax(-1)
        network_nats -= float(log_q.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)[mask[rows]].sum())
    world = model.world
    log_p = world.denoise(inputs, world.log_priors([t or None for t in texts]), model.mask_token_id)
    exact_nats = -float(log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)[mask].sum())
    count = int(mask.sum())
    return network_nats / count, exact_nats / count


def evaluate(weights: str | None, prompts: int, seeds: list[int], steps: int, guidance: float,
             batch_size: int, draws: int, draw_seed: int) -> dict:
    from bench.models.synthetic import TrainedWorldModel
    from samplers.engine import SamplerEngine
    from samplers.variant import build_variant

    model = TrainedWorldModel(weights=weights)
    world, engine, variant = model.world, SamplerEngine(model), build_variant("vanilla")
    texts = [p for _, p, _ in model.grammar.prompt_set(prompts, seed=0)]
    tokens, scored = [], []
    for seed in seeds:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            generation = engine.generate(variant, model.encode(chunk), [seed] * len(chunk), model.token_grid(),
                                         steps, guidance)
            tokens.append(generation.tokens)
            scored += chunk
    tokens = torch.cat(tokens)
    curve = json.loads(model.metadata.get("loss_curve", "[]"))
    heldout, floor = heldout_losses(model, training_draws(model, draws, draw_seed))
    out = {"weights_sha256": model.weights_sha256[:12], "step": curve[-1]["step"] if curve else None,
           "loss": curve[-1]["loss"] if curve else None, "heldout_loss": round(heldout, 4),
           "floor": round(floor, 4), "images": len(scored),
           "alignment": round(float(world.prompt_posterior(tokens, scored).mean()), 4),
           "loglik": round(float(world.log_likelihood(tokens, scored).mean()), 4), "faithfulness": {}}
    for attribute, errors in world.attribute_errors(tokens, scored).items():
        named = ~errors.isnan()
        out["faithfulness"][attribute] = round(float(1 - errors[named].mean()), 4)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="*", help="weights files (default: the shipped one)")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--draws", type=int, default=1024, help="fresh training draws for the held-out loss")
    parser.add_argument("--draw-seed", type=int, default=1000, help="their seed (training uses seed + 1 = 1)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    for weights in args.weights or [None]:
        row = evaluate(weights, args.prompts, seeds, args.steps, args.guidance, args.batch_size, args.draws,
                       args.draw_seed)
        print(json.dumps({"file": weights or "shipped", **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
