"""``attnlab bench perf``: attnlab's speed as ratios against plain PyTorch, taken in one run.

Sections, each a few rows of one table:

- ``cli``: the wall time of commands that answer before any training (``attnlab --help``,
  ``attnlab claim list``, ``attnlab train --help``, ``attnlab train --cfg job``), those of
  ``attnlab train`` beyond a process that only imports Hydra.
- ``models``: a training step (forward, backward, AdamW) of attnlab's Transformer,
  attention seq2seq, RNN encoder-decoder and ResNet-56 against the plain references of
  :mod:`attnlab.bench.references`; tokens (images) per second and the ratio; for the
  Transformer, the achieved FLOP/s as a share of this machine's fp32 GEMM peak, measured here.
- ``decoding``: greedy and beam tokens per second of attnlab's decoders against incremental
  references (a key/value cache, the recurrent state).
- ``platform``: ``attnlab train`` seconds per extra epoch against the bare loop of
  :mod:`attnlab.bench.bare_loop` (same model, data, optimizer, validation), and the fixed cost of
  a short run beyond importing Lightning and MLflow.
- ``threads``: a 2-worker joblib sweep's wall time against the same trials one after the other.
- with ``--device cuda`` instead: the d_model 512 Transformer under bf16 autocast with the flash
  and memory-efficient SDPA kernels, eager and compiled (``benchmarks/perf_gpu.sh``).

The machine is shared and noisy, so the two sides of a ratio are measured alternately
(A, B, B, A, ...) and each side keeps its median: load that comes and goes hits both.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.bench import references as ref
from attnlab.cli import command_parser


@dataclass(frozen=True)
class Sizes:
    """Every size of one run of the bench (default and --quick)."""

    gemm: int  # n of the n x n x n fp32 matmul that measures the peak
    widths: tuple[int, ...]  # Transformer d_model values (2 + 2 layers, heads d / 64)
    batch: int
    length: int  # source and target tokens per example
    vocab: int
    rnn_width: int
    resnet_depth: int
    image: int  # images are 3 x image x image
    image_batch: int
    decode_batch: int
    decode_steps: int
    beam: int
    rounds: int  # alternations of A and B per ratio
    platform: tuple[tuple[str, int, int], ...]  # (experiment, short epochs, long epochs)
    platform_rounds: int
    sweep_steps: int  # training steps of each trial of the thread test
    cli_rounds: int  # runs of each command of the cli section
    claim: tuple[str, ...]  # attnlab claim run ARGS whose overhead the platform section measures


DEFAULT = Sizes(
    gemm=1024, widths=(256, 512), batch=32, length=64, vocab=1000, rnn_width=256,
    resnet_depth=56, image=32, image_batch=32, decode_batch=32, decode_steps=32, beam=4,
    rounds=5, platform=(("digits_mlp", 2, 12), ("digits_resnet", 1, 4)), platform_rounds=3,
    sweep_steps=60, cli_rounds=5, claim=("norm_noniid", "--seeds", "0", "1"),
)  # fmt: skip
QUICK = Sizes(
    gemm=256, widths=(64,), batch=4, length=12, vocab=50, rnn_width=32, resnet_depth=8,
    image=16, image_batch=4, decode_batch=4, decode_steps=8, beam=2, rounds=2,
    platform=(("digits_mlp", 1, 3),), platform_rounds=1, sweep_steps=5, cli_rounds=2,
    claim=("norm_noniid", "--seeds", "0", "1", "trainer.max_epochs=1"),
)  # fmt: skip


@dataclass
class Row:
    """One ratio. ``ratio`` is defined per section so that its goal reads plainly:
    speed ratios (attnlab / reference, goal >= 1) or cost ratios (attnlab / reference, goal <=)."""

    section: str
    case: str
    attnlab: float
    reference: float
    unit: str
    ratio: float
    goal: str  # ">= 1.0", "<= 2", "" (information only)
    note: str = ""

    @property
    def met(self) -> str:
        """yes / no against ``goal``; empty for information rows."""
        if not self.goal or not math.isfinite(self.ratio):
            return ""
        sign, value = self.goal.split()
        ok = self.ratio >= float(value) if sign == ">=" else self.ratio <= float(value)
        return "yes" if ok else "no"


def alternate(
    sides: dict[str, Callable[[], object]], rounds: int, repeats: int = 1
) -> dict[str, float]:
    """Median seconds per call of each side, timed in turns (A B, then B A, ...) after a
    warm-up call of each, ``repeats`` calls per turn."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for round_ in range(rounds):
        for name in order if round_ % 2 == 0 else reversed(order):
            start = time.perf_counter()
            for _ in range(repeats):
                sides[name]()
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(values) for name, values in times.items()}


def gemm_peak(n: int, rounds: int) -> float:
    """This machine's fp32 matrix-multiply FLOP/s: the fastest of several timed n^3 matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(max(rounds, 3) * 2):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def train_step(model: nn.Module, inputs: tuple[Tensor, ...], target: Tensor):
    """A closure: forward, cross-entropy, backward and one AdamW step of ``model``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        logits = model(*inputs)
        loss = F.cross_entropy(logits.flatten(0, -2), target.flatten(), ignore_index=ref.PAD)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def token_batch(sizes: Sizes, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """src, tgt_in, tgt_out (B, L) with random lengths (padding 0) and ids >= 3."""
    g = torch.Generator().manual_seed(seed)
    b, length, vocab = sizes.batch, sizes.length, sizes.vocab
    src = torch.randint(3, vocab, (b, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (b,), generator=g)
    src[torch.arange(length)[None] >= lengths[:, None]] = ref.PAD
    tgt = torch.randint(3, vocab, (b, length + 1), generator=g)
    return src, tgt[:, :-1], tgt[:, 1:]


def transformer_flops(model: nn.Module, src: Tensor, tgt_in: Tensor, layers: int, d: int) -> float:
    """FLOPs of one training step: the matmuls counted by torch's FlopCounterMode (forward and
    backward), plus the attention products QK^T and AV, which it does not count inside CPU
    SDPA kernels: 4 B T S d forward per attention layer, twice that backward."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(src, tgt_in).sum().backward()
    model.zero_grad(set_to_none=True)
    b, s, t = src.size(0), src.size(1), tgt_in.size(1)
    attention = 12 * b * d * layers * (s * s + t * t + t * s)  # enc self, dec self, cross
    return counter.get_total_flops() + attention


def model_rows(sizes: Sizes, peak: float, log: Callable[[str], None]) -> list[Row]:
    from attnlab.models.resnet import ResNet
    from attnlab.models.rnn import AttentionSeq2Seq, RNNEncoderDecoder
    from attnlab.models.transformer import Seq2SeqTransformer

    rows = []
    src, tgt_in, tgt_out = token_batch(sizes)
    tokens = sizes.batch * sizes.length  # target tokens per step
    for d in sizes.widths:
        heads, layers = max(1, d // 64), 2
        torch.manual_seed(0)
        ours = Seq2SeqTransformer(
            sizes.vocab,
            sizes.vocab,
            width=d,
            heads=heads,
            depth=layers,
            ff_width=4 * d,
            dropout=0.1,
        )
        theirs = ref.TorchTransformer(sizes.vocab, d, heads, layers, 4 * d)
        flops = transformer_flops(ours, src, tgt_in, layers, d)
        t = alternate(
            {
                "attnlab": train_step(ours, (src, tgt_in), tgt_out),
                "torch": train_step(theirs, (src, tgt_in), tgt_out),
            },
            sizes.rounds,
        )
        mfu = {side: flops / t[side] / peak for side in t}
        rows.append(
            Row(
                "models",
                f"Transformer d={d} train step",
                tokens / t["attnlab"],
                tokens / t["torch"],
                "tok/s",
                t["torch"] / t["attnlab"],
                ">= 1.05",
                f"vs torch.nn.Transformer; {flops / 1e9:.1f} GFLOP/step",
            )
        )
        rows.append(
            Row(
                "models",
                f"Transformer d={d} share of GEMM peak",
                mfu["attnlab"],
                mfu["torch"],
                "of peak",
                mfu["attnlab"],
                ">= 0.5" if d >= 512 else "",
                f"{flops / t['attnlab'] / 1e9:.0f} of {peak / 1e9:.0f} GFLOP/s",
            )
        )
        log(f"  Transformer d={d}: {t['attnlab'] * 1e3:.0f} vs {t['torch'] * 1e3:.0f} ms/step")
    w, emb = sizes.rnn_width, 64
    for name, ours_cls, theirs_cls in (
        ("attention seq2seq (GRU)", AttentionSeq2Seq, ref.TorchAttentionSeq2Seq),
        ("RNN encoder-decoder (GRU)", RNNEncoderDecoder, ref.TorchRNNSeq2Seq),
    ):
        torch.manual_seed(0)
        ours = ours_cls(sizes.vocab, sizes.vocab, emb_dim=emb, width=w, cell="gru", dropout=0.0)
        theirs = theirs_cls(sizes.vocab, emb, w)
        t = alternate(
            {
                "attnlab": train_step(ours, (src, tgt_in), tgt_out),
                "torch": train_step(theirs, (src, tgt_in), tgt_out),
            },
            sizes.rounds,
        )
        rows.append(
            Row(
                "models",
                f"{name} train step",
                tokens / t["attnlab"],
                tokens / t["torch"],
                "tok/s",
                t["torch"] / t["attnlab"],
                ">= 1.0",
                "vs fused nn.GRU, packed",
            )
        )
        log(f"  {name}: {t['attnlab'] * 1e3:.0f} vs {t['torch'] * 1e3:.0f} ms/step")
    images = torch.randn(sizes.image_batch, 3, sizes.image, sizes.image)
    labels = torch.randint(0, 10, (sizes.image_batch,))
    torch.manual_seed(0)
    ours = ResNet(3, 10, depth=sizes.resnet_depth)
    theirs = ref.PlainResNet(sizes.resnet_depth)
    t = alternate(
        {
            "attnlab": train_step(ours, (images,), labels),
            "torch": train_step(theirs, (images,), labels),
        },
        sizes.rounds,
    )
    n = sizes.image_batch
    rows.append(
        Row(
            "models",
            f"ResNet-{sizes.resnet_depth} train step",
            n / t["attnlab"],
            n / t["torch"],
            "img/s",
            t["torch"] / t["attnlab"],
            ">= 1.0",
            f"{sizes.image}x{sizes.image} images, vs the net written plainly",
        )
    )
    log(f"  ResNet: {t['attnlab'] * 1e3:.0f} vs {t['torch'] * 1e3:.0f} ms/step")
    return rows


def decoding_rows(sizes: Sizes, log: Callable[[str], None]) -> list[Row]:
    """Greedy and beam decoding of ``decode_steps`` tokens (no EOS: every row runs to the end)."""
    from attnlab.models.decoding import beam_search, greedy_decode
    from attnlab.models.rnn import AttentionSeq2Seq, RNNEncoderDecoder
    from attnlab.models.transformer import Seq2SeqTransformer

    d, w, v = sizes.widths[0], sizes.rnn_width, sizes.vocab
    src = token_batch(replace(sizes, batch=sizes.decode_batch))[0]
    bos, never, steps, k = 1, v, sizes.decode_steps, sizes.beam  # eos id outside the vocabulary
    families = {
        "Transformer": (
            Seq2SeqTransformer(v, v, width=d, heads=max(1, d // 64), depth=2, ff_width=4 * d),
            ref.TorchTransformer(v, d, max(1, d // 64), 2, 4 * d),
        ),
        "attention seq2seq": (
            AttentionSeq2Seq(v, v, emb_dim=64, width=w, cell="gru"),
            ref.TorchAttentionSeq2Seq(v, 64, w),
        ),
        "RNN encoder-decoder": (
            RNNEncoderDecoder(v, v, emb_dim=64, width=w, cell="gru"),
            ref.TorchRNNSeq2Seq(v, 64, w),
        ),
    }
    rows = []
    tokens = sizes.decode_batch * steps
    for family, (ours, theirs) in families.items():
        ours.eval(), theirs.eval()
        with torch.no_grad():
            t = alternate(
                {
                    "greedy": lambda o=ours: greedy_decode(o, src, bos, never, ref.PAD, steps),
                    "greedy_ref": lambda m=theirs: ref.greedy(m, src, bos, steps),
                    "beam": lambda o=ours: beam_search(o, src, bos, never, ref.PAD, steps, k),
                    "beam_ref": lambda m=theirs: ref.beam(m, src, bos, steps, k),
                },
                sizes.rounds,
            )
        for kind, label in (("greedy", "greedy"), ("beam", f"beam {k}")):
            rows.append(
                Row(
                    "decoding",
                    f"{family} {label}",
                    tokens / t[kind],
                    tokens / t[f"{kind}_ref"],
                    "tok/s",
                    t[f"{kind}_ref"] / t[kind],
                    ">= 1.0",
                    f"{steps} tokens x {sizes.decode_batch} sources, vs incremental reference",
                )
            )
        log(
            f"  {family}: greedy {t['greedy']:.3f} vs {t['greedy_ref']:.3f} s, "
            f"beam {t['beam']:.3f} vs {t['beam_ref']:.3f} s"
        )
    return rows


def wall(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Seconds from start to exit of ``command`` and its output; a failure stops the bench."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(
            f"{shlex.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    return seconds, done.stdout


def seconds_per_epoch(ends: list[float]) -> float:
    """Steady-state seconds per epoch from the times each epoch's validation ended: the first
    epoch (warm-up, sanity check) is left out by measuring from its end."""
    ends = sorted(ends)
    return (ends[-1] - ends[0]) / (len(ends) - 1)


def attnlab_epoch_ends(tracking_uri: str, experiment: str) -> list[float]:
    """When each epoch's val/loss was logged in the newest run of ``experiment`` (seconds)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    ids = [client.get_experiment_by_name(experiment).experiment_id]
    (run,) = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=1)
    return [m.timestamp / 1000 for m in client.get_metric_history(run.info.run_id, "val/loss")]


def bare_epoch_ends(output: str) -> list[float]:
    """The times the bare loop printed at the end of each epoch's validation."""
    return [float(line.rsplit(" at ", 1)[1]) for line in output.splitlines() if " at " in line]


def platform_rows(sizes: Sizes, log: Callable[[str], None]) -> list[Row]:
    """``attnlab train`` vs the bare loop, each a fresh process, in turns.

    Per epoch: the steady state inside one long run of each, from the times each epoch's
    validation ended (MLflow's val/loss timestamps; the bare loop prints them), so process
    start, imports and testing stay out of it. The fixed cost: a short ``attnlab train`` run's
    wall time minus that of a process that only imports lightning.pytorch and mlflow.
    """
    python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory(prefix="attnlab-bench-") as tmp:
        cwd = Path(tmp)
        uri = f"sqlite:///{cwd / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        for experiment, short, long in sizes.platform:

            def attnlab_run(epochs: int, experiment=experiment) -> list[str]:
                return [
                    python,
                    "-m",
                    "attnlab.cli",
                    "train",
                    f"experiment={experiment}",
                    f"trainer.max_epochs={epochs}",
                    "callbacks.early_stopping=null",
                ]

            bare = [python, "-m", "attnlab.bench.bare_loop", experiment, f"--epochs={long}"]
            runs = {"attnlab": attnlab_run(long), "bare": bare, "lightning": [*bare, "--lightning"]}
            fixed = experiment == sizes.platform[0][0]
            if fixed:
                runs["attnlab_short"] = attnlab_run(short)
                runs["imports"] = [python, "-c", "import lightning.pytorch, mlflow"]
            epoch: dict[str, list[float]] = {"attnlab": [], "bare": [], "lightning": []}
            walls: dict[str, list[float]] = {name: [] for name in runs}
            for round_ in range(sizes.platform_rounds):
                for name in runs if round_ % 2 == 0 else reversed(runs):
                    seconds, output = wall(runs[name], cwd, env)
                    walls[name].append(seconds)
                    if name == "attnlab":
                        epoch[name].append(seconds_per_epoch(attnlab_epoch_ends(uri, experiment)))
                    elif name in epoch:
                        epoch[name].append(seconds_per_epoch(bare_epoch_ends(output)))
                log(f"  {experiment} round {round_ + 1}: per epoch "
                    + ", ".join(f"{n} {v[-1] * 1e3:.0f} ms" for n, v in epoch.items()) + "; "
                    + ", ".join(f"{n} {v[-1]:.1f} s" for n, v in walls.items()))  # fmt: skip
            ours, bare, floor = (statistics.median(times) for times in epoch.values())
            goal = "<= 1.5" if experiment == "digits_mlp" else "<= 1.05"
            rows.append(Row("platform", f"{experiment}: seconds per epoch", ours, bare, "s/epoch",
                            ours / bare, goal, f"steady state of {long}-epoch runs; MLflow, "
                            "progress bar, checkpoints on"))  # fmt: skip
            floor_note = "the same loop, every Trainer option that costs time off: the floor"
            rows.append(Row("platform", f"{experiment}: a bare Lightning Trainer per epoch",
                            floor, bare, "s/epoch", floor / bare, "", floor_note))  # fmt: skip
            if fixed:
                t = {name: statistics.median(values) for name, values in walls.items()}
                cost = t["attnlab_short"] - t["imports"]
                rows.append(Row("platform", f"{experiment}: {short}-epoch run beyond imports",
                                cost, t["imports"], "s", cost, "<= 1.5",
                                f"whole run {t['attnlab_short']:.1f} s; reference: importing "
                                "lightning.pytorch + mlflow"))  # fmt: skip
        rows.append(claim_row(sizes.claim, cwd, env, log))
    return rows


CLAIM_SUMMARY = re.compile(
    r"done in (\d+) s .*trained for (\d+) s: wall time / training time ([\d.]+)"
)


def claim_row(args: tuple[str, ...], cwd: Path, env: dict[str, str], log) -> Row:
    """``attnlab claim run ARGS`` once, in a fresh store: its wall time over the summed
    duration of its runs (MLflow start to end), as the command itself reports it. The rest is
    each variant's process start, imports and Hydra, and each run's data and store setup."""
    command = [sys.executable, "-m", "attnlab.cli", "claim", "run", *args]
    seconds, output = wall(command, cwd, env)
    found = CLAIM_SUMMARY.search(output)
    if not found:
        raise RuntimeError(f"{shlex.join(command)} printed no summary:\n{output[-3000:]}")
    wall_s, trained_s, ratio = (float(x) for x in found.groups())
    log(f"  claim {shlex.join(args)}: {seconds:.0f} s in all, runs trained {trained_s:.0f} s")
    return Row("platform", f"claim {args[0]}: wall time / its runs' time", wall_s, trained_s,
               "s", ratio, "<= 1.2", f"attnlab claim run {shlex.join(args)}; runs timed "
               "from MLflow start to end")  # fmt: skip


# (command, its arguments, goal in seconds, whether it is measured beyond importing Hydra)
CLI_COMMANDS = (
    ("attnlab --help", ["--help"], 0.3, False),
    ("attnlab claim list", ["claim", "list"], 0.3, False),
    ("attnlab train --help", ["train", "--help"], 1.5, True),
    ("attnlab train --cfg job", ["train", "--cfg", "job"], 1.5, True),
)


def cli_rows(sizes: Sizes, log: Callable[[str], None]) -> list[Row]:
    """Commands that answer before any training, each a fresh process, in turns with a bare
    ``python -c pass`` and ``python -c "import hydra"`` (after a warm-up run of each). The
    commands without Hydra are held to their goal whole, Python's start included; those of
    ``attnlab train`` beyond the process that imports Hydra."""
    python = sys.executable
    runs = {case: [python, "-m", "attnlab.cli", *args] for case, args, _, _ in CLI_COMMANDS}
    runs["python"] = [python, "-c", "pass"]
    runs["import hydra"] = [python, "-c", "import hydra"]
    walls: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory(prefix="attnlab-bench-") as tmp:
        cwd, env = Path(tmp), dict(os.environ)
        for command in runs.values():
            wall(command, cwd, env)
        for round_ in range(sizes.cli_rounds):
            for name in runs if round_ % 2 == 0 else reversed(runs):
                walls[name].append(wall(runs[name], cwd, env)[0])
            last = ", ".join(f"{name} {values[-1]:.2f} s" for name, values in walls.items())
            log(f"  round {round_ + 1}: {last}")
    t = {name: statistics.median(values) for name, values in walls.items()}
    rows = []
    for case, _, goal, beyond_hydra in CLI_COMMANDS:
        if beyond_hydra:
            cost = t[case] - t["import hydra"]
            rows.append(Row("cli", f"{case} beyond import hydra", cost, t["import hydra"], "s",
                            cost, f"<= {goal}", f"whole command {t[case]:.2f} s; reference: "
                            "python -c 'import hydra'"))  # fmt: skip
        else:
            rows.append(Row("cli", case, t[case], t["python"], "s", t[case], f"<= {goal}",
                            "whole command; reference: python -c pass"))  # fmt: skip
    return rows


def sweep_trial(seed: int, steps: int, processes: int) -> float:
    """One trial of the thread test: a small bi-GRU trained ``steps`` steps with this process's
    thread budget (attnlab.training.threads, as ``attnlab train`` sets it); returns its seconds."""
    from attnlab.training.threads import set_thread_budget

    set_thread_budget(processes)
    torch.manual_seed(seed)
    model = nn.GRU(64, 128, batch_first=True, bidirectional=True)
    optimizer = torch.optim.AdamW(model.parameters())
    x = torch.randn(32, 64, 64)
    start = time.perf_counter()
    for _ in range(steps):
        loss = model(x)[0].square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def thread_rows(sizes: Sizes, log: Callable[[str], None]) -> list[Row]:
    """Two trials on a 2-worker joblib pool (each worker cores / 2 threads) against the same two
    trials one after the other in this process (all cores); the pool is started beforehand."""
    from joblib import Parallel, delayed

    from attnlab.training.threads import set_thread_budget

    trials = (1, 2)
    pool = Parallel(n_jobs=2, backend="loky")
    pool(delayed(sweep_trial)(seed, 1, 2) for seed in trials)  # start and warm the workers

    def parallel() -> None:
        pool(delayed(sweep_trial)(seed, sizes.sweep_steps, 2) for seed in trials)

    def sequential() -> None:
        for seed in trials:
            sweep_trial(seed, sizes.sweep_steps, 1)

    try:
        t = alternate({"parallel": parallel, "sequential": sequential}, sizes.rounds)
    finally:
        set_thread_budget(1)  # this process's own budget again
    log(f"  joblib 2 workers {t['parallel']:.2f} s, one after the other {t['sequential']:.2f} s")
    return [
        Row(
            "threads",
            "2-worker joblib sweep vs sequential",
            t["parallel"],
            t["sequential"],
            "s",
            t["parallel"] / t["sequential"],
            "<= 1.0",
            f"2 trials x {sizes.sweep_steps} bi-GRU steps; workers get cores / 2 threads",
        )
    ]


def bf16_step(
    model: nn.Module, batch: tuple[Tensor, ...], kernels: list, device: torch.device
) -> Callable[[], None]:
    """A CUDA training step under bf16 autocast with SDPA limited to ``kernels`` (read at each
    call), synchronised so that wall-clock time covers its kernels."""
    from torch.nn.attention import sdpa_kernel

    step = train_step(model, batch[:2], batch[2])

    def run() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(kernels):
            step()
        torch.cuda.synchronize(device)

    return run


def accelerator_rows(device: torch.device, quick: bool, log: Callable[[str], None]) -> list[Row]:
    """The d_model 512 Transformer (2 + 2 layers, 8 heads) trained under bf16 autocast with SDPA
    limited to the flash and memory-efficient kernels, eager and ``torch.compile``d (what
    ``trainer.compile=true`` does: ``model.compile()``), attnlab's against torch.nn.Transformer;
    the share of the bf16 GEMM peak measured here."""
    from torch.nn.attention import SDPBackend

    from attnlab.models.transformer import Seq2SeqTransformer

    d, heads, layers = 512, 8, 2
    sizes = replace(QUICK if quick else DEFAULT, batch=4 if quick else 64, vocab=8000,
                    length=16 if quick else 256)  # fmt: skip
    n = 512 if quick else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    torch.mm(a, b)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(10):
        torch.mm(a, b)
    torch.cuda.synchronize(device)
    peak = 10 * 2 * n**3 / (time.perf_counter() - start)
    log(f"  bf16 GEMM ({n}^3): {peak / 1e12:.0f} TFLOP/s")
    src, tgt_in, tgt_out = (t.to(device) for t in token_batch(sizes))
    tokens = sizes.batch * sizes.length
    one = Seq2SeqTransformer(
        sizes.vocab, sizes.vocab, width=d, heads=heads, depth=layers, ff_width=4 * d
    )
    flops = sizes.batch * transformer_flops(one, src[:1].cpu(), tgt_in[:1].cpu(), layers, d)
    rows = []
    for compiled in (False, True):
        torch.manual_seed(0)
        ours = Seq2SeqTransformer(
            sizes.vocab, sizes.vocab, width=d, heads=heads, depth=layers, ff_width=4 * d
        ).to(device)
        theirs = ref.TorchTransformer(sizes.vocab, d, heads, layers, 4 * d).to(device)
        if compiled:
            ours.compile()
            theirs.compile()

        kernels = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
        batch = (src, tgt_in, tgt_out)
        sides = {
            "attnlab": bf16_step(ours, batch, kernels, device),
            "torch": bf16_step(theirs, batch, kernels, device),
        }
        try:
            t = alternate(sides, 5, repeats=10)
        except RuntimeError as error:  # a mask or shape neither fused kernel takes
            log(f"  flash / memory-efficient SDPA refused ({str(error).splitlines()[0]}); "
                "timing with every SDPA backend")  # fmt: skip
            kernels.append(SDPBackend.MATH)  # the list the steps read
            t = alternate(sides, 5, repeats=10)
        label = "compiled" if compiled else "eager"
        rows.append(
            Row(
                "gpu",
                f"Transformer d=512 bf16-mixed {label} train step",
                tokens / t["attnlab"],
                tokens / t["torch"],
                "tok/s",
                t["torch"] / t["attnlab"],
                ">= 1.0",
                f"{torch.cuda.get_device_name(device)}; batch {sizes.batch} x "
                f"{sizes.length} tokens; SDPA {', '.join(k.name.lower() for k in kernels)}",
            )
        )
        rows.append(
            Row(
                "gpu",
                f"Transformer d=512 bf16-mixed {label} share of bf16 peak",
                flops / t["attnlab"] / peak,
                flops / t["torch"] / peak,
                "of peak",
                flops / t["attnlab"] / peak,
                "",
                f"{flops / t['attnlab'] / 1e12:.0f} of {peak / 1e12:.0f} TFLOP/s",
            )
        )
        log(f"  {label}: {t['attnlab'] * 1e3:.1f} vs {t['torch'] * 1e3:.1f} ms/step")
    gpus = torch.cuda.device_count()
    log(
        f"  {gpus} GPU(s): "
        + (
            "a 2-process DDP run is not part of this script yet"
            if gpus > 1
            else "no 2-process DDP run (it needs 2 GPUs)"
        )
    )
    return rows


SECTIONS = ("cli", "models", "decoding", "platform", "threads")


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| section | case | attnlab | reference | unit | ratio | goal | met | note |",
        "|---|---|---:|---:|---|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.section} | {r.case} | {_num(r.attnlab)} | {_num(r.reference)} | {r.unit} | "
            f"{r.ratio:.2f} | {r.goal} | {r.met} | {r.note} |"
        )
    return "\n".join(lines)


def _num(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def metric_name(row: Row) -> str:
    """An MLflow key for the row's ratio: section/case, with characters MLflow allows."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789_-./ ")
    case = "".join(c if c in allowed else "_" for c in row.case.lower().replace("=", ""))
    return f"{row.section}/{case.replace(' ', '_').replace(':', '')}"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        "attnlab bench perf", __doc__.split("\n\n")[0] + " Sections: " + ", ".join(SECTIONS) + "."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one round: a smoke test (< 1 min), ratios say little",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run these sections only (default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/perf"),
        help="folder for perf.md and perf.json (default: %(default)s)",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cuda: the bf16 / SDPA / compile rows of the GPU section instead of the CPU sections",
    )  # fmt: skip
    argv = sys.argv[1:] if argv is None else argv
    opts = parser.parse_args(argv)
    if opts.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    sizes = QUICK if opts.quick else DEFAULT
    from attnlab.training.threads import set_thread_budget

    threads = set_thread_budget(1)

    def log(line: str) -> None:
        print(line, flush=True)

    load = os.getloadavg()
    header = (
        f"attnlab bench perf{' --quick' if opts.quick else ''}: "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, "
        f"torch {torch.__version__}, {threads} torch threads on {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min) at the start"
    )
    log(header)
    start, started_ms = time.perf_counter(), int(time.time() * 1000)
    rows: list[Row] = []
    if opts.device == "cuda":
        opts.only = ["gpu"]
        rows = accelerator_rows(torch.device("cuda"), opts.quick, log)
    peak = gemm_peak(sizes.gemm, sizes.rounds)
    log(f"fp32 GEMM peak ({sizes.gemm}^3 matmul): {peak / 1e9:.1f} GFLOP/s")
    builders = {
        "cli": lambda: cli_rows(sizes, log),
        "models": lambda: model_rows(sizes, peak, log),
        "decoding": lambda: decoding_rows(sizes, log),
        "platform": lambda: platform_rows(sizes, log),
        "threads": lambda: thread_rows(sizes, log),
    }
    for section in SECTIONS:
        if section in opts.only:
            log(f"{section} ...")
            rows += builders[section]()
    end_load = os.getloadavg()[0]
    text = (
        f"{header}\n\n{table(rows)}\n\nratio: speed (attnlab / reference) in models and "
        "decoding; cost (attnlab / reference) in platform and threads; seconds in cli. "
        f"{time.perf_counter() - start:.0f} s in all; load average {end_load:.2f} at the end."
    )
    print("\n" + text)
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "perf.md").write_text(text + "\n")
    (opts.out / "perf.json").write_text(
        json.dumps([{**asdict(r), "met": r.met} for r in rows], indent=1) + "\n"
    )
    if not opts.no_mlflow:
        params = {
            "quick": str(opts.quick),
            "threads": str(threads),
            "torch": torch.__version__,
            "peak_gflops": f"{peak / 1e9:.1f}",
            "sections": ",".join(opts.only),
        }
        from attnlab.tracking.mlflow_run import record_finished_run

        metrics = {metric_name(r): r.ratio for r in rows if math.isfinite(r.ratio)}
        command = ["attnlab", "bench", "perf", *argv]
        with contextlib.redirect_stdout(sys.stderr):
            run_id = record_finished_run("perf", command, params, metrics, opts.out, started_ms)
        print(f"MLflow run {run_id} in experiment 'bench'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
