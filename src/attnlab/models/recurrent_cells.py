"""Recurrent layers by name: torch's GRU/LSTM, or cells that normalise their pre-activations
(layer norm, Ba et al. 2016; recurrent batch norm, Cooijmans et al. 2016), stepped in Python;
weight norm (Salimans & Kingma 2016) reparameterises torch's W_ih and W_hh instead.

Shared by the recurrent, convolutional and forecasting families; ``init_weights`` is the one
weight init of those families.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from attnlab.models.norms import init_, require_norm, weight_normalize

Cell = Literal["gru", "lstm"]
CELLS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}
BN_GAIN = 0.1  # Cooijmans et al. 2016: a gain of 1 saturates the gates, gradients vanish

# A recurrent state, batch-first: (B, layers, H) for a GRU, the pair (h, c) for an LSTM.
State = Tensor | tuple[Tensor, Tensor]


def map_state(state: State, fn) -> State:
    return tuple(fn(t) for t in state) if isinstance(state, tuple) else fn(state)


class GateNorm(nn.Module):
    """Normalises a cell's pre-activations, ``gates`` blocks of ``hidden`` units: (B, G*H).

    layer: each gate block of each row to mean 0 and variance 1 (Ba et al. 2016 normalise the
        whole G*H vector; per gate, as TensorFlow's LayerNormBasicLSTMCell does, no gate's
        scale can crowd out another's).
    batch: each unit over the real rows of this time step (Cooijmans et al. 2016). One set of
        running estimates serves every step; they move at each training step (momentum 0.1),
        so they track the last steps seen, and are used in eval.
    Then a gain, and a bias if ``bias`` (the gate biases are the cell's own).
    """

    def __init__(self, norm: str, gates: int, hidden: int, bias: bool, momentum: float = 0.1):
        super().__init__()
        self.norm, self.gates, self.hidden = norm, gates, hidden
        self.momentum, self.eps = momentum, 1e-5
        width = gates * hidden
        self.weight = nn.Parameter(torch.full((width,), BN_GAIN if norm == "batch" else 1.0))
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None
        if norm == "batch":
            self.register_buffer("running_mean", torch.zeros(width))
            self.register_buffer("running_var", torch.ones(width))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: (B, G*H), mask: (B,) True on rows still running (None: every row) -> (B, G*H)."""
        if self.norm == "layer":
            blocks = x.unflatten(-1, (self.gates, self.hidden))  # (B, G, H)
            x = F.layer_norm(blocks, (self.hidden,), eps=self.eps).flatten(-2)  # (B, G*H)
        else:
            x = self._batch_norm(x, mask)  # (B, G*H)
        x = x * self.weight
        return x if self.bias is None else x + self.bias

    def _batch_norm(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: (B, F) -> (B, F), standardised over this step's real rows (eval: running ones)."""
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)  # (B, F)
        if mask is None:
            var, mean = torch.var_mean(x, dim=0, unbiased=False)  # (F,) each
            n = x.new_tensor(x.size(0))
        else:
            weights = mask[:, None].to(x.dtype)  # (B, 1)
            n = weights.sum()
            mean = (x * weights).sum(0) / n.clamp(min=1)  # (F,)
            var = ((x - mean) ** 2 * weights).sum(0) / n.clamp(min=1)  # (F,) biased, as BN uses
        with torch.no_grad():  # only a step with two real rows or more has a variance
            step = self.momentum * (n > 1).to(x.dtype)
            self.running_mean.lerp_(mean, step)
            self.running_var.lerp_(var * n / (n - 1).clamp(min=1), step)
        return (x - mean) * torch.rsqrt(var + self.eps)


class NormCell(nn.Module):
    """What a normalised GRU/LSTM cell holds: torch's weight and bias layout (gates x hidden),
    and one GateNorm for the input term W_ih x and one for the recurrent term W_hh h.
    """

    gates: int

    def __init__(self, input_size: int, hidden: int, norm: str):
        super().__init__()
        self.hidden_size = hidden
        width, bound = self.gates * hidden, hidden**-0.5  # torch's default init range
        self.weight_ih = nn.Parameter(torch.empty(width, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(width, hidden).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(width).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(width).uniform_(-bound, bound))
        self.norm_ih = GateNorm(norm, self.gates, hidden, bias=False)
        self.norm_hh = GateNorm(norm, self.gates, hidden, bias=False)


class NormLSTMCell(NormCell):
    """LSTM step with normalised terms (LN-LSTM of Ba et al. 2016; BN-LSTM of Cooijmans et al.
    2016):

        (i, f, g, o) = N(W_ih x) + N(W_hh h) + b,   c' = σ(f) c + σ(i) tanh(g),
        h' = σ(o) tanh(N(c'))

    The recurrence carries the unnormalised c', so the cell path's gradient is untouched.
    """

    gates = 4

    def __init__(self, input_size: int, hidden: int, norm: str):
        super().__init__(input_size, hidden, norm)
        self.norm_c = GateNorm(norm, 1, hidden, bias=True)

    def forward(
        self, x_ih: Tensor, state: tuple[Tensor, Tensor], mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """x_ih: (B, 4H) = W_ih x, state: (h, c) (B, H) each, mask: (B,) -> (h', c')."""
        h, c = state
        gates = self.norm_ih(x_ih, mask) + self.norm_hh(F.linear(h, self.weight_hh), mask)
        i, f, g, o = (gates + self.bias_ih + self.bias_hh).chunk(4, dim=-1)  # (B, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        return torch.sigmoid(o) * torch.tanh(self.norm_c(c, mask)), c


class NormGRUCell(NormCell):
    """GRU step with normalised terms, torch's GRU with N(W_ih x) and N(W_hh h) in place of the
    products:  (r, z) = σ(N(W_ih x) + b_i + N(W_hh h) + b_h) per gate,
    n = tanh(N(W_in x) + b_in + r (N(W_hn h) + b_hn)),   h' = (1 - z) n + z h.
    """

    gates = 3

    def forward(self, x_ih: Tensor, h: Tensor, mask: Tensor | None) -> Tensor:
        """x_ih: (B, 3H) = W_ih x, h: (B, H), mask: (B,) -> h' (B, H)."""
        x_r, x_z, x_n = (self.norm_ih(x_ih, mask) + self.bias_ih).chunk(3, dim=-1)  # (B, H) each
        hh = self.norm_hh(F.linear(h, self.weight_hh), mask) + self.bias_hh  # (B, 3H)
        h_r, h_z, h_n = hh.chunk(3, dim=-1)  # (B, H) each
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        return (1 - z) * torch.tanh(x_n + r * h_n) + z * h


NORM_CELLS: dict[str, type[NormCell]] = {"gru": NormGRUCell, "lstm": NormLSTMCell}


def _reverse(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of x: (B, T, F) within its length; padding stays at the end."""
    t = torch.arange(x.size(1), device=x.device)[None]  # (1, T)
    n = lengths.to(x.device)[:, None]  # (B, 1)
    index = torch.where(t < n, n - 1 - t, t)  # (B, T)
    return x.gather(1, index[..., None].expand_as(x))  # (B, T, F)


class NormRNN(nn.Module):
    """A stand-in for a batch-first nn.GRU / nn.LSTM whose cells are normalised (``norm``:
    layer or batch), stepping through time in Python (no cuDNN).

    Called as torch's: input (B, T, I) or a PackedSequence, an optional state (L*dirs, B, H)
    (LSTM: (h, c)); returns outputs (B, T, dirs*H) (packed if the input was) and the final state,
    same layout. On padded steps of a packed input a sequence's state stands still, its output
    is zero and it stays out of batch statistics; the backward direction reads each sequence
    reversed within its length, as packing does.

    Recurrent BatchNorm here shares statistics over time: each step is normalised with the
    mean and variance of its own batch rows, and one set of running estimates and gains serves
    all steps. Cooijmans et al. 2016 keep separate statistics per step up to T_max and reuse
    T_max's beyond; shared statistics need no T_max, no step counter in a decoder fed one
    token at a time (``decode_step``), and suit right-padded and reversed sequences, whose
    steps are not aligned. The price: eval normalises the first, transient steps with
    statistics that mostly saw later ones. Statistics per step also keep a decoder causal in
    training: step t's mean and variance come from step t only.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden: int,
        layers: int,
        dropout: float,
        bidirectional: bool,
        norm: str,
    ):
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout = hidden, layers, dropout
        self.directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            NORM_CELLS[cell](input_size if layer == 0 else hidden * self.directions, hidden, norm)
            for layer in range(layers)
            for _ in range(self.directions)
        )

    def forward(
        self, x: Tensor | PackedSequence, state: State | None = None
    ) -> tuple[Tensor | PackedSequence, State]:
        """x: (B, T, I) or packed, state: (L*dirs, B, H) -> outputs (B, T, dirs*H), final state."""
        packed = isinstance(x, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(x, batch_first=True)  # (B, T, I), (B,)
        else:
            lengths = torch.full((x.size(0),), x.size(1))  # (B,)
        real = torch.arange(x.size(1))[None] < lengths[:, None]  # (B, T), on the CPU
        masks = [None if step.all() else step.to(x.device) for step in real.T]  # None: all real
        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                cell = self.cells[index]
                start = self._initial(cell, x, state, index)
                inputs = x if direction == 0 else _reverse(x, lengths)  # (B, T, I)
                out, final = self._scan(cell, F.linear(inputs, cell.weight_ih), start, masks)
                outputs.append(out if direction == 0 else _reverse(out, lengths))  # (B, T, H)
                finals.append(final)
            x = torch.cat(outputs, dim=-1)  # (B, T, dirs*H)
            if layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)
        if isinstance(finals[0], tuple):
            final = tuple(torch.stack(parts) for parts in zip(*finals, strict=True))
        else:
            final = torch.stack(finals)  # (L*dirs, B, H)
        if packed:
            x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return x, final

    @staticmethod
    def _initial(cell: NormCell, x: Tensor, state: State | None, index: int) -> State:
        """The starting state (B, H) of cell ``index`` (LSTM: (h, c)); zeros if none given."""
        if state is not None:
            return map_state(state, lambda t: t[index])
        zeros = x.new_zeros(x.size(0), cell.hidden_size)  # (B, H)
        return (zeros, zeros) if isinstance(cell, NormLSTMCell) else zeros

    @staticmethod
    def _scan(
        cell: NormCell, x_ih: Tensor, state: State, masks: list[Tensor | None]
    ) -> tuple[Tensor, State]:
        """x_ih: (B, T, G*H) input terms, masks: per step (B,) or None -> (B, T, H), final state."""
        outputs = []
        for t, mask in enumerate(masks):
            new = cell(x_ih[:, t], state, mask)
            if mask is not None:  # a finished sequence keeps its state
                keep = mask[:, None]  # (B, 1)
                if isinstance(new, tuple):
                    new = tuple(torch.where(keep, n, s) for n, s in zip(new, state, strict=True))
                else:
                    new = torch.where(keep, new, state)
            state = new
            h = state[0] if isinstance(state, tuple) else state  # (B, H)
            outputs.append(h if mask is None else h * mask[:, None])
        return torch.stack(outputs, dim=1), state  # (B, T, H)


def make_rnn(
    cell: str,
    input_size: int,
    hidden: int,
    layers: int,
    dropout: float,
    bidirectional: bool,
    norm: str = "none",
) -> nn.Module:
    """A batch-first GRU or LSTM by name; dropout acts between stacked layers only.

    norm none: torch's nn.GRU / nn.LSTM (cuDNN on GPU); layer or batch: a NormRNN; weight:
    torch's, each gate unit's rows of W_ih and W_hh weight-normalised (the terms LN-LSTM
    normalises; Salimans & Kingma 2016 name LSTMs among WN's uses).
    """
    if cell not in CELLS:
        raise ValueError(f"cell={cell!r}; allowed: {', '.join(CELLS)}")
    require_norm(norm, "recurrent")
    if norm in ("layer", "batch"):
        return NormRNN(cell, input_size, hidden, layers, dropout, bidirectional, norm)
    rnn = CELLS[cell](
        input_size,
        hidden,
        layers,
        batch_first=True,
        dropout=dropout if layers > 1 else 0.0,
        bidirectional=bidirectional,
    )
    if norm == "weight":
        weight_normalize(rnn, *(n for n, _ in rnn.named_parameters() if n.startswith("weight")))
    return rnn


def layer_first(state: State) -> State:
    """(B, L, H) -> (L, B, H), the layout torch's RNNs take and return (and back again)."""
    return map_state(state, lambda t: t.transpose(0, 1).contiguous())


def top_hidden(state: State) -> Tensor:
    """The last layer's hidden state of a layer-first state: (B, H)."""
    return (state[0] if isinstance(state, tuple) else state)[-1]


def init_weights(model: nn.Module) -> None:
    """The one weight init of the recurrent and convolutional families.

    Recurrent matrices orthogonal, other matrices Xavier-uniform, biases zero, the LSTM forget
    gate biased to 1 (remember by default); embeddings keep N(0, 1) with a zero padding row.
    A weight-normalised matrix gets the same values as w, through its g and v.
    """
    for module in model.modules():
        if isinstance(module, nn.Embedding | parametrize.ParametrizationList):
            continue  # weight-normalised tensors are set through the module that holds them
        names = [name for name, _ in module.named_parameters(recurse=False)]
        if parametrize.is_parametrized(module):
            names += list(module.parametrizations)
        for name in names:
            param = getattr(module, name)
            if name.startswith("weight_hh"):
                init_(module, name, nn.init.orthogonal_)
            elif param.dim() > 1:
                init_(module, name, nn.init.xavier_uniform_)
            elif name.startswith("bias"):
                nn.init.zeros_(param)
            if isinstance(module, nn.LSTM | NormLSTMCell) and name.startswith("bias_ih"):
                hidden = module.hidden_size
                nn.init.ones_(param[hidden : 2 * hidden])  # gate order: input, forget, cell, out
