"""The reference that ``attnlab bench perf`` times ``attnlab train`` against: a bare PyTorch
loop over the same model, data, optimizer, schedule and validation, nothing else.

    python -m attnlab.bench.bare_loop digits_mlp --epochs 3
    python -m attnlab.bench.bare_loop digits_mlp --epochs 3 --lightning

Mirrors ``experiment=digits_mlp`` (MLP 2 x 256, AdamW 1e-3, warmup-cosine, clip 1.0) and
``experiment=digits_resnet`` (ResNet-20, SGD 0.05 momentum 0.9, warmup-multistep): one
validation pass per epoch (loss and accuracy), then one test pass. It imports neither Lightning
nor MLflow: the data comes from the same split with scikit-learn and torch only.

With ``--lightning`` the same steps run in a minimal LightningModule under a Trainer with every
option that costs time off (no logger, checkpoints, progress bar, summary or sanity check): the
floor any Lightning-based loop pays per epoch, which ``attnlab bench perf`` sets beside attnlab's.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

EXPERIMENTS = ("digits_mlp", "digits_resnet")
BATCH = 64


def digits_splits(seed: int = 0) -> dict[str, TensorDataset]:
    """The split of attnlab's digits data (20 % test, 10 % of the rest for validation, both
    stratified with ``seed``), standardised with the training mean and std."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16  # (N, 1, 8, 8)
    labels = torch.from_numpy(digits.target).long()

    def split(y: torch.Tensor, held: float) -> tuple[np.ndarray, np.ndarray]:
        kept, out = train_test_split(
            np.arange(len(y)), test_size=held, stratify=y.numpy(), random_state=seed
        )
        return np.sort(kept), np.sort(out)

    train_idx, test_idx = split(labels, 0.2)
    fit, val = split(labels[train_idx], 0.1)
    parts = {
        "train": train_idx[fit],
        "val": train_idx[val],
        "test": test_idx,
    }
    x_train = images[parts["train"]]
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return {k: TensorDataset((images[i] - mean) / std, labels[i]) for k, i in parts.items()}


def build(experiment: str, steps: int):
    """Model, optimizer and per-step scheduler as the experiment config builds them."""
    from attnlab.models.mlp import MLP
    from attnlab.models.resnet import ResNet
    from attnlab.tasks.regularization import decay_groups
    from attnlab.training.schedules import warmup_cosine, warmup_multistep

    if experiment == "digits_mlp":
        model = MLP(1, 8, 10, width=256, depth=2, dropout=0.1)
        optimizer = torch.optim.AdamW(
            decay_groups(model), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01
        )
        return model, optimizer, warmup_cosine(optimizer, steps, warmup_steps=50), 1.0
    model = ResNet(1, 10, depth=20)
    optimizer = torch.optim.SGD(decay_groups(model), lr=0.05, momentum=0.9, weight_decay=1e-4)
    return model, optimizer, warmup_multistep(optimizer, steps, warmup_steps=100), None


def evaluate(model: torch.nn.Module, loader: DataLoader) -> tuple[float, float]:
    """Mean loss and accuracy over ``loader`` in eval mode."""
    model.eval()
    loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)  # (B, C)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
    return loss / count, correct / count


def epoch_line(epoch: int, val_loss: float, val_acc: float) -> str:
    """The end of the epoch's validation, as attnlab's run records it (its val/loss time)."""
    return f"epoch {epoch}: val/loss {val_loss:.4f} val/acc {val_acc:.4f} at {time.time():.3f}"


def lightning_loop(model, optimizer, scheduler, clip, loaders: dict[str, DataLoader], epochs: int):
    """The loop of :func:`main` as a minimal LightningModule fitted by a bare Trainer."""
    import lightning.pytorch as L

    class Minimal(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model
            self.val_sums = torch.zeros(3)  # loss, correct, count

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.model(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.model(x)  # (B, C)
            loss = F.cross_entropy(logits, y, reduction="sum")
            correct = (logits.argmax(-1) == y).sum()
            self.val_sums += torch.stack([loss, correct, y.new_tensor(len(y))])

        def on_validation_epoch_end(self):
            loss, correct, count = self.val_sums.tolist()
            print(epoch_line(self.current_epoch, loss / count, correct / count))
            self.val_sums.zero_()

        def configure_optimizers(self):
            per_step = {"scheduler": scheduler, "interval": "step"}
            return {"optimizer": optimizer, "lr_scheduler": per_step}

    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=clip,
    )  # fmt: skip
    trainer.fit(Minimal(), train_dataloaders=loaders["train"], val_dataloaders=loaders["val"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnlab.bench.bare_loop")
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lightning", action="store_true", help="the loop under a bare Trainer")
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.manual_seed(opts.seed)
    data = digits_splits()
    train = DataLoader(data["train"], batch_size=BATCH, shuffle=True, drop_last=True)
    val = DataLoader(data["val"], batch_size=BATCH)
    test = DataLoader(data["test"], batch_size=BATCH)
    model, optimizer, scheduler, clip = build(opts.experiment, opts.epochs * len(train))
    start = time.perf_counter()
    if opts.lightning:
        lightning_loop(model, optimizer, scheduler, clip, {"train": train, "val": val}, opts.epochs)
        print(f"test/acc = {evaluate(model, test)[1]:.4f} ({time.perf_counter() - start:.2f} s)")
        return 0
    for epoch in range(opts.epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            scheduler.step()
        print(epoch_line(epoch, *evaluate(model, val)))
    print(f"test/acc = {evaluate(model, test)[1]:.4f} ({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
