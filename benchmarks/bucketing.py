"""Padding and training throughput with and without length bucketing (notes §3.3).

    python benchmarks/bucketing.py [--steps 60] [--min-len 5] [--max-len 60]

Trains the same Transformer on the reverse task (source lengths min..max) for the same number of
batches from a plain shuffled loader and from the bucketed one, in this one process and in
alternating rounds, and prints real (non-pad) tokens per second and the padding fraction.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from attnlab.data.symbols import SymbolsDataModule
from attnlab.models.transformer import Seq2SeqTransformer


def padding(batch) -> tuple[int, int]:
    """(real tokens, all token slots) over source and target of one batch."""
    real = int((batch.src != 0).sum() + (batch.tgt_out != 0).sum())
    return real, batch.src.numel() + batch.tgt_out.numel()


def train_steps(model, optimizer, loader, steps: int) -> tuple[float, int, int]:
    """Seconds, real tokens and token slots for ``steps`` optimizer steps."""
    seconds, real, slots = 0.0, 0, 0
    batches = iter(loader)
    for _ in range(steps):
        batch = next(batches)
        start = time.perf_counter()
        logits = model(batch.src, batch.tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds += time.perf_counter() - start
        batch_real, batch_slots = padding(batch)
        real, slots = real + batch_real, slots + batch_slots
    return seconds, real, slots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-len", type=int, default=5)
    parser.add_argument("--max-len", type=int, default=60)
    args = parser.parse_args()
    loaders = {}
    for bucketing in (False, True):
        data = SymbolsDataModule(
            task="reverse", min_len=args.min_len, max_len=args.max_len, n_train=20000,
            n_val=10, n_test=10, batch_size=64, bucketing=bucketing,
        )  # fmt: skip
        data.setup("fit")
        loaders["bucketed" if bucketing else "plain"] = data.train_dataloader()
    dims = data.dims
    totals = {name: [0.0, 0, 0] for name in loaders}
    for _ in range(args.rounds):
        for name, loader in loaders.items():
            torch.manual_seed(0)
            model = Seq2SeqTransformer(
                dims.src_vocab_size, dims.tgt_vocab_size, width=64, heads=4, ff_width=256
            )
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            train_steps(model, optimizer, loader, 3)  # warm-up
            for i, value in enumerate(train_steps(model, optimizer, loader, args.steps)):
                totals[name][i] += value
    threads = torch.get_num_threads()
    print(f"reverse, source lengths {args.min_len}-{args.max_len}, batch 64, ", end="")
    print(f"{args.rounds} x {args.steps} steps each, torch threads {threads}")
    rate = {}
    for name, (seconds, real, slots) in totals.items():
        rate[name] = real / seconds
        print(f"{name:9} tokens/s {rate[name]:9.0f}   padding {1 - real / slots:6.1%}")
    print(f"bucketing speed-up: {rate['bucketed'] / rate['plain']:.2f}x")


if __name__ == "__main__":
    main()
