"""Recurrent networks: a hidden state h_t = f(x_t, h_{t-1}) carried through time, trained by
back-propagation through time. PyTorch's own nn.LSTM, nn.GRU and nn.RNN (the Elman net, tanh)
compute it (cuDNN on GPUs).

How a sample becomes a sequence of steps (B, T, features) depends on the data:
- signals (C, L): L steps of the C channel values;
- images (C, H, W): H steps, one row each, of C*W values (sequential digits, row by row);
- tokens (T,) of ids: an embedding of `hidden_size` per id; a language model predicts the next
  token at every step (causal by construction: a unidirectional net has only read the past).
Vectors (F,) are not sequences and are refused: F features in some order are not a time.

Classification and regression read the last state (the forward direction's state after the last
step and, when bidirectional, the backward direction's after the first); a regression target of
the input's own length (a field: (C_out, L) for signals, (C_out, H, W) for images) is read from
the state at every step.

`unrolled(x)` computes the same outputs step by step with torch's cell functions on the
modules' own weights, and keeps every state h_t as a tensor of the graph: the gradients probe
asks autograd for dL/dh_t through it (the fused kernels keep their states inside).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.compat import refusal

# Names are the config's (dltrain.config.CELLS); a test keeps the two in step.
CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# The cell functions `unrolled` steps with: (input, state, w_ih, w_hh, b_ih, b_hh) -> state.
_STEP = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}


class RNN(nn.Module):
    """`layers` recurrent layers of `hidden_size` units (`cell` lstm, gru or rnn) and a linear
    head on the last state, or on every state."""

    # no vectorised form (dltrain/vectorised/plan.py says why a recurrent net runs alone)
    unstackable = "a recurrent net's loop over time has no stacked form"

    def __init__(self, spec: DataSpec, *, cell: str, hidden_size: int, layers: int,
                 bidirectional: bool, dropout: float, batchnorm: bool = False) -> None:
        # (conf/model/rnn.yaml has no `batchnorm`: only reg=[batchnorm] sets it, and it is
        # refused here; its absence means false)
        super().__init__()
        if batchnorm:
            raise ConfigError("model=rnn has no batch norm (a batch's statistics change from "
                              "step to step of a sequence); leave out reg=batchnorm or "
                              "model.batchnorm=true.")
        if spec.kind == "vector":
            raise refusal("rnn", spec, "sequences (signals, images read row by row, or text)",
                          "model=mlp, or data=series or data=sine_series for a time series")
        if bidirectional and spec.task == "language_model":
            raise ConfigError(f"model.bidirectional=true would let model=rnn read the very "
                              f"characters it predicts on data={spec.name} (a language model "
                              "predicts each next token from the past alone); use "
                              "model.bidirectional=false.")
        self.cell, self.kind = cell, spec.kind
        self.hidden_size, self.layers = hidden_size, layers
        self.directions = 2 if bidirectional else 1
        if spec.kind == "tokens":
            self.embed: nn.Module = nn.Embedding(int(spec.vocab_size or 0), hidden_size)
            features = hidden_size
        elif spec.kind == "image":
            c, _, w = spec.input_shape
            self.embed, features = nn.Identity(), c * w
        else:  # signal (C, L)
            self.embed, features = nn.Identity(), spec.input_shape[0]
        # torch drops between layers only (and warns when there is one): the head's input
        # gets its own dropout, so that model.dropout acts on a one-layer net too
        self.rnn = CELLS[cell](features, hidden_size, num_layers=layers, batch_first=True,
                               bidirectional=bidirectional,
                               dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # every step's state is read for a language model, and for a target the length of
        # the input (a field); the last state once per sample otherwise
        self.channels_out = _field_channels(spec)
        self.every_step = spec.task == "language_model" or self.channels_out is not None
        self.target_shape = tuple(spec.target_shape)
        width = self.directions * hidden_size
        if self.channels_out is not None:  # per step: the C_out values (of each of W columns)
            per_step = self.channels_out * (spec.input_shape[2] if spec.kind == "image" else 1)
            self.head = nn.Linear(width, per_step)
        else:
            self.head = nn.Linear(width, spec.out_features)

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """The sample as a sequence (B, T, features): see the module's docstring."""
        if self.kind == "tokens":
            return self.embed(x)
        if self.kind == "image":  # (B, C, H, W) -> (B, H, C, W) -> (B, H, C*W)
            b, c, h, w = x.shape
            return x.permute(0, 2, 1, 3).reshape(b, h, c * w)
        return x.transpose(1, 2)  # (B, C, L) -> (B, L, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, state = self.rnn(self.steps(x))  # output: (B, T, directions * hidden)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers * directions, B, H)
        last = torch.cat(list(h_n[-self.directions:]), dim=-1)  # the top layer's, (B, D*H)
        return self.read(output, last)

    def read(self, output: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The head on every state (B, T, D*H), or on the last one (B, D*H)."""
        if not self.every_step:
            out = self.head(self.dropout(last))  # (B, out_features)
            return out.reshape(out.shape[0], *self.target_shape) if self.target_shape else out
        out = self.head(self.dropout(output))  # (B, T, vocab) or (B, T, C_out [* W])
        if self.channels_out is None:
            return out  # a language model's logits at every step
        b, t = out.shape[:2]
        if self.kind == "image":  # (B, H, C_out * W) -> (B, C_out, H, W)
            out = out.reshape(b, t, self.channels_out, -1).permute(0, 2, 1, 3)
        else:  # (B, L, C_out) -> (B, C_out, L)
            out = out.transpose(1, 2)
        return out.reshape(b, *self.target_shape)

    def unrolled(self, x: torch.Tensor) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """The forward pass one step at a time, and the states it went through: states[t] is
        the hidden state h_t (B, H) of every layer and direction after step t, each a tensor
        of the graph (so that autograd gives dL/dh_t). The same outputs as `forward` in eval
        mode (it applies no dropout between layers)."""
        seq = self.steps(x)
        b, t_len = seq.shape[:2]
        inputs = list(seq.unbind(1))
        states: list[list[torch.Tensor]] = [[] for _ in range(t_len)]
        finals: list[torch.Tensor] = []
        for layer in range(self.layers):
            outputs = []
            for direction in range(self.directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                weights = [getattr(self.rnn, f"{name}{suffix}")
                           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                h = seq.new_zeros(b, self.hidden_size)
                state: tuple[torch.Tensor, torch.Tensor] | torch.Tensor = \
                    (h, h) if self.cell == "lstm" else h
                out: list[torch.Tensor] = [h] * t_len
                for t in (reversed(range(t_len)) if direction else range(t_len)):
                    state = _STEP[self.cell](inputs[t], state, *weights)
                    h = state[0] if isinstance(state, tuple) else state
                    out[t] = h
                    states[t].append(h)
                outputs.append(out)
                finals.append(h)
            inputs = [torch.cat([o[t] for o in outputs], dim=-1) for t in range(t_len)]
        return self.read(torch.stack(inputs, dim=1), torch.cat(finals[-self.directions:], -1)), \
            states


def _field_channels(spec: DataSpec) -> int | None:
    """C_out of a regression target the input's own length ((C_out, L) or (L,) for signals,
    (C_out, H, W) or (H, W) for images): read from every state. None otherwise."""
    shape, spatial = tuple(spec.target_shape), tuple(spec.input_shape[1:])
    if spec.task != "regression" or not shape or spec.kind not in ("signal", "image"):
        return None
    if shape[1:] == spatial:
        return shape[0]
    return 1 if shape == spatial else None


def init_recurrent(model: nn.Module, scheme: str, std: float | None = None) -> None:
    """The init scheme (dltrain.models.init) on every recurrent layer of `model`: each gate's
    input weights (hidden, in) and recurrent weights (hidden, hidden) as a layer of its own,
    orthogonal recurrent weights under `orthogonal`, biases zero. `default` keeps PyTorch's."""
    if scheme == "default":
        return
    for module in model.modules():
        if not isinstance(module, nn.RNNBase):
            continue
        for name, param in module.named_parameters():
            if name.startswith("bias"):
                nn.init.zeros_(param)
                continue
            for gate in param.detach().split(module.hidden_size):  # (hidden, fan_in) each
                fan_out, fan_in = gate.shape
                if scheme == "orthogonal":
                    nn.init.orthogonal_(gate)
                    continue
                sd = {"lecun": math.sqrt(1.0 / fan_in),
                      "xavier": math.sqrt(2.0 / (fan_in + fan_out)),
                      "kaiming": math.sqrt(2.0 / fan_in),
                      "normal": std}[scheme]
                nn.init.normal_(gate, 0.0, sd)
