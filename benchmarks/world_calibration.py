#!/usr/bin/env python
"""Calibration of the synthetic world's trained network against the world's exact conditional (docs/world.md).

For each prompt of the default prompt set (and the empty prompt, the unconditional branch) it draws
exact samples x ~ p(x | prompt), hides a fraction of their tokens at random, and compares at every
hidden position the network's predicted distribution q with the exact conditional
p(x_j | x_visible, prompt) of `TokenWorld.denoise`:

- per-token cross-entropy of the true token under q and under p (p's is the floor no network can beat),
  and KL(p ‖ q) (the network's excess), per masked fraction; also KL for the unconditional branch
  (empty prompt vs the prior over all scenes) and for CFG-guided logits at a few scales w;
- reliability of the top-1 prediction: confidence bins of q(argmax) against the *exact* probability
  p(argmax) of that token (the expected accuracy; no sampling noise), and the expected calibration error.

Prints a JSON object; docs/world.md quotes its tables.

    python benchmarks/world_calibration.py                 # 48 prompts × 4 samples × 6 masked fractions
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

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
SCALES = (1.0, 3.0, 6.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--samples", type=int, default=4, help="exact samples per prompt and masked fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from bench.models.synthetic import TrainedWorldModel

    model = TrainedWorldModel(weights=args.weights)
    world, mask_id = model.world, model.mask_token_id
    prompts = [p for _, p, _ in model.grammar.prompt_set(args.prompts, seed=0)]
    generator = torch.Generator().manual_seed(args.seed)
    per_fraction, bins = [], torch.zeros(10, 3, dtype=torch.float64)  # count, Σ confidence, Σ exact prob
    for fraction in FRACTIONS:
        sums = {k: 0.0 for k in ("ce_network", "ce_exact", "kl_cond", "kl_uncond", *(f"kl_cfg_{w:g}" for w in SCALES))}
        positions = 0
        for index, prompt in enumerate(prompts):
            clean = world.sample_tokens([prompt], args.samples, seed=args.seed * 100003 + index)
            hidden = torch.rand(clean.shape, generator=generator).argsort(dim=1).argsort(dim=1) < round(
                fraction * world.seq_len)
            tokens = clean.masked_fill(hidden, mask_id)
            texts = [prompt] * len(tokens)
            cond, uncond = model.logits(tokens, model.encode(texts), 0, 1)
            log_q, log_qu = cond.double().log_softmax(-1), uncond.double().log_softmax(-1)
            log_p = world.denoise(tokens, world.log_priors(texts), mask_id)
            log_pu = world.denoise(tokens, world.log_priors([None] * len(tokens)), mask_id)
            truth = clean.unsqueeze(-1)
            sums["ce_network"] += float(-log_q.gather(-1, truth).squeeze(-1)[hidden].sum())
            sums["ce_exact"] += float(-log_p.gather(-1, truth).squeeze(-1)[hidden].sum())
            sums["kl_cond"] += float(_kl(log_p, log_q)[hidden].sum())
            sums["kl_uncond"] += float(_kl(log_pu, log_qu)[hidden].sum())
            for w in SCALES:
                guided = (uncond + w * (cond - uncond)).double().log_softmax(-1)
                sums[f"kl_cfg_{w:g}"] += float(_kl(log_p, guided)[hidden].sum())
            positions += int(hidden.sum())
            confidence, top = log_q.exp().max(dim=-1)
            exact = log_p.exp().gather(-1, top.unsqueeze(-1)).squeeze(-1)
            which = (confidence[hidden] * 10).long().clamp(max=9)
            bins.index_add_(0, which, torch.stack([torch.ones_like(exact[hidden]), confidence[hidden],
                                                   exact[hidden]], dim=1))
        per_fraction.append({"masked_fraction": fraction, "positions": positions,
                             **{k: round(v / positions, 4) for k, v in sums.items()}})
    count = bins[:, 0]
    reliability = [{"confidence_bin": f"{i / 10:.1f}-{(i + 1) / 10:.1f}", "positions": int(count[i]),
                    "mean_confidence": round(float(bins[i, 1] / count[i]), 4),
                    "exact_accuracy": round(float(bins[i, 2] / count[i]), 4)} for i in range(10) if count[i] > 0]
    ece = float((bins[:, 1] - bins[:, 2]).abs().sum() / count.sum())
    print(json.dumps({"weights_sha256": model.weights_sha256, "per_masked_fraction": per_fraction,
                      "reliability": reliability, "expected_calibration_error": round(ece, 4)}, indent=1))
    return 0


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) over the last axis."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


if __name__ == "__main__":
    sys.exit(main())
