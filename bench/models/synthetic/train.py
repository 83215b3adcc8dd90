"""Train the synthetic world's network with the MaskGIT objective: ``python -m bench.models.synthetic.train``.

Objective (MaskGIT, Chang et al. 2022 §3.1; Meissonic trains the same way, arXiv 2410.08261 §3):

1. a scene s is drawn uniformly from the world's 2240 scenes and an image x from the world's noise
   model around its prototype (`TokenWorld.sample_tokens`' story, token noise ε);
2. a prompt describing s is drawn from the templates of the default prompt set (full, partial, minimal),
   so p(s | prompt) is uniform over the scenes the prompt describes: the world's true conditional;
   with probability ``cfg_dropout`` the prompt is replaced by "" (classifier-free guidance training);
3. a mask ratio γ(r) = cos(π r / 2), r ~ U(0, 1) (the cosine schedule), masks ⌈γ·N⌉ ≥ 1 positions chosen
   uniformly at random;
4. the loss is the cross-entropy of the network's logits against x on the masked positions only.

Every draw comes from one seeded `torch.Generator`, the thread count is fixed, and the weights are
written atomically as safetensors with the config, the command-line arguments and the loss curve in
the file's metadata. The shipped weights (`weights/world-net.safetensors`) come from the default
arguments; docs/world.md gives the command and its wall time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from .grammar import SceneGrammar, article
from .network import NetworkConfig, WordTokenizer, WorldNetwork

#: Where the shipped weights live (package data).
WEIGHTS_PATH = Path(__file__).parent / "weights" / "world-net.safetensors"
#: Template weights: the default prompt set's mix (a third full, a third partial, a sixth each minimal form).
TEMPLATE_WEIGHTS = (2.0, 2.0, 1.0, 1.0)


def template_texts(grammar: SceneGrammar) -> list[list[str]]:
    """For every scene, its prompt under each template (full, partial, "a SIZE SHAPE", "something COLOUR")."""
    return [[s.describe(), f"{article(s.colour)} {s.shape} on {article(s.background)} background",
             f"a {s.size} {s.shape}", f"something {s.colour}"] for s in grammar.scenes]


def cosine_mask(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean ``(batch, n)``: ⌈cos(π r / 2)·n⌉ (at least 1) uniformly placed positions per row, r ~ U(0, 1)."""
    ratio = torch.cos(math.pi / 2 * torch.rand(batch, generator=generator))
    count = (ratio * n).ceil().clamp(1, n).long()
    ranks = torch.rand(batch, n, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < count[:, None]


class Batches:
    """Seeded training batches: (masked tokens, targets, mask, text ids)."""

    def __init__(self, config: NetworkConfig, epsilon: float, cfg_dropout: float, seed: int):
        self.grammar = SceneGrammar(grid=config.grid)
        self.prototypes = torch.from_numpy(self.grammar.prototypes())
        tokenizer = WordTokenizer(config.vocab, config.text_length)
        texts = template_texts(self.grammar)
        self.text_ids = torch.stack([tokenizer(t) for t in texts])  # (K, templates, L)
        self.empty_ids = tokenizer([""])[0]
        self.template_weights = torch.tensor(TEMPLATE_WEIGHTS)
        self.epsilon, self.cfg_dropout = epsilon, cfg_dropout
        self.codebook_size = config.codebook_size
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: int):
        g = self.generator
        scenes = torch.randint(len(self.prototypes), (batch,), generator=g)
        tokens = self.prototypes[scenes].clone()
        noisy = torch.rand(tokens.shape, generator=g) < self.epsilon
        tokens[noisy] = torch.randint(self.codebook_size, (int(noisy.sum()),), generator=g)
        template = torch.multinomial(self.template_weights, batch, replacement=True, generator=g)
        ids = self.text_ids[scenes, template]
        dropped = torch.rand(batch, generator=g) < self.cfg_dropout
        ids[dropped] = self.empty_ids
        mask = cosine_mask(batch, tokens.shape[1], g)
        inputs = tokens.masked_fill(mask, self.codebook_size)  # mask id = codebook size
        return inputs, tokens, mask, ids


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions (MaskGIT's loss)."""
    return torch.nn.functional.cross_entropy(logits[mask], targets[mask])


def train(args: argparse.Namespace) -> tuple[WorldNetwork, list[dict]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # the thread count can change the last bits of the weights
    try:
        return _train(args)
    finally:
        torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> tuple[WorldNetwork, list[dict]]:
    torch.manual_seed(args.seed)  # parameter initialisation
    config = NetworkConfig()
    network = WorldNetwork(config)
    batches = Batches(config, epsilon=args.epsilon, cfg_dropout=args.cfg_dropout, seed=args.seed + 1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    curve, running, start, cpu = [], 0.0, time.time(), time.process_time()
    network.train()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        inputs, targets, mask, ids = batches(args.batch_size)
        pooled, hidden = network.text_encoder(ids)
        loss = masked_cross_entropy(network(inputs, pooled, hidden), targets, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            count = (step % args.log_every) + 1
            entry = {"step": step + 1, "loss": round(running / count, 5), "seconds": round(time.time() - start, 1),
                     "cpu_seconds": round(time.process_time() - cpu, 1)}
            curve.append(entry)
            print(json.dumps(entry), flush=True)
            running = 0.0
        if args.checkpoints and (step + 1) % args.checkpoint_every == 0 and step + 1 < args.steps:
            # Saving reads the weights only: the run (and so the final file) is the same with or without it.
            save_weights(network, args.checkpoints / f"step{step + 1:06d}.safetensors",
                         metadata(network, args, curve))
    network.eval()
    return network, curve


def save_weights(network: WorldNetwork, path: Path, metadata: dict[str, str]) -> None:
    """Atomic safetensors write (temporary file in the same folder, then rename)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; weights are package data
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Arguments that do not change the weights, hence not recorded in the file (where to write, what to log).
UNRECORDED = ("out", "checkpoints", "checkpoint_every")


def metadata(network: WorldNetwork, args: argparse.Namespace, curve: list[dict]) -> dict[str, str]:
    """The file's metadata: network config, the arguments that determine the weights, the loss curve so far."""
    arguments = {k: v for k, v in vars(args).items() if k not in UNRECORDED}
    return {"config": json.dumps(network.config.to_json()), "training": json.dumps(arguments),
            "loss_curve": json.dumps(curve), "torch": torch.__version__}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.models.synthetic.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=WEIGHTS_PATH, help="weights file (default: the shipped one)")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--cfg-dropout", type=float, default=0.1)
    p.add_argument("--epsilon", type=float, default=0.05, help="the world's token noise (must match the backend)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="also write the weights every --checkpoint-every steps to this folder (stepNNNNNN.safetensors)")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.lr <= 0 or not 0 <= args.cfg_dropout < 1 \
            or not 0 < args.epsilon < 1 or args.threads < 1 or args.log_every < 1 or args.warmup < 1 \
            or args.checkpoint_every < 1:
        print("error: steps, batch-size, threads, log-every, warmup, checkpoint-every >= 1; lr > 0; "
              "cfg-dropout in [0, 1); epsilon in (0, 1)", file=sys.stderr)
        return 2
    for folder, flag in ((args.checkpoints, "--checkpoints"), (args.out.parent, "--out's folder")):
        if folder is not None and folder.exists() and not folder.is_dir():
            print(f"error: {flag} {str(folder)!r} is a file, not a folder; name a folder", file=sys.stderr)
            return 2
    network, curve = train(args)
    save_weights(network, args.out, metadata(network, args, curve))
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
