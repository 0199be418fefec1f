"""The recurrences behind nn.RNN / nn.LSTM / nn.GRU and their cells, written with ember ops.

In:  PyTorch's weight layout (gates stacked along dim 0: i, f, g, o for LSTM; r, z, n for GRU),
     an input sequence either time-major (T, N, I) or packed (sum of batch sizes, I) with its
     batch sizes as Python ints, and initial states (one (N, H) tensor per state: h, or h and c).
Out: the output sequence in the input's layout, and the final states.

The input projection of every time step is one matrix product (x @ W_ih^T + b) made before the time
loop; the loop does only the hidden projection h @ W_hh^T and the gate arithmetic. For the LSTM and
the Elman RNN, b_hh is folded into that first product (the sum is the same); the GRU keeps b_hn
apart because the reset gate multiplies it.

The time loop is Python. ember.compile traces it like any other code, so a recurrence over a fixed
length unrolls: one copy of the step per time step in a straight-line graph. Unrolling is what a
tracer without loop ops can capture, and it lets the fusion passes work across time steps and the
backward graph reuse forward values with no stack of saved states; its cost is graph size (and
compile time) linear in the sequence length, and a new trace for each new length.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ...frontend import linalg as L
from ...frontend import math_ops as M
from ...frontend import shape_ops as S
from ...frontend.autocast import autocast_op
from ...frontend.tensor import Tensor
from .dropout import dropout as _dropout
from .linear import linear

__all__ = ["GATES", "rnn", "cell", "step_fn"]

# gate blocks per mode: the first dimension of W_ih / W_hh is GATES[mode] * hidden_size
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

State = tuple  # (h,) or (h, c)


def _input_projection(mode: str, x: Tensor, w_ih: Tensor, b_ih, b_hh) -> Tensor:
    """x @ W_ih^T + b for every row of x at once (x: (..., I))."""
    if mode != "GRU" and b_ih is not None:
        # h @ W_hh^T + b_hh + x @ W_ih^T + b_ih: the two biases add once here, not at every step
        return linear(x, w_ih, M.add(b_ih, b_hh))
    return linear(x, w_ih, b_ih)


def step_fn(mode: str, w_hh: Tensor, b_hh, w_hr=None) -> Callable[[Tensor, State], tuple[Tensor, State]]:
    """One time step: (projected input gi (N, G), state) -> (output (N, H_out), new state)."""
    w_hh_t = S.transpose(w_hh, 0, 1)
    if mode == "LSTM":
        w_hr_t = None if w_hr is None else S.transpose(w_hr, 0, 1)

        def lstm(gi, state):
            h, c = state
            gates = M.add(gi, L.matmul(h, w_hh_t))
            i, f, g, o = S.chunk(gates, 4, 1)
            c = M.add(M.mul(M.sigmoid(f), c), M.mul(M.sigmoid(i), M.tanh(g)))
            h = M.mul(M.sigmoid(o), M.tanh(c))
            if w_hr_t is not None:
                h = L.matmul(h, w_hr_t)
            return h, (h, c)
        return lstm
    if mode == "GRU":
        def gru(gi, state):
            (h,) = state
            gh = linear(h, w_hh, b_hh)      # the bias inside the product, as PyTorch's gru_cell (autocast casts it too)
            H = h.shape[-1]
            r, z = S.chunk(M.sigmoid(M.add(gi[:, :2 * H], gh[:, :2 * H])), 2, 1)
            n = M.tanh(M.add(gi[:, 2 * H:], M.mul(r, gh[:, 2 * H:])))
            h = M.add(n, M.mul(z, M.sub(h, n)))          # (1 - z) * n + z * h
            return h, (h,)
        return gru
    act = M.tanh if mode == "RNN_TANH" else M.relu

    def elman(gi, state):
        (h,) = state
        h = act(M.add(gi, L.matmul(h, w_hh_t)))
        return h, (h,)
    return elman


def _run_padded(step, gi: Tensor, state: State, reverse: bool) -> tuple[Tensor, State]:
    T = gi.shape[0]
    outs: list = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        outs[t], state = step(gi[t], state)
    return S.stack(outs, 0), state


def _run_packed(step, gi: Tensor, state0: State, batch_sizes: Sequence[int], reverse: bool):
    """Packed rows: step t covers the first batch_sizes[t] sequences (sorted longest first). Forward,
    a sequence's state stops changing after its last step; backward, it starts from the initial state
    at its last step."""
    offsets = [0]
    for b in batch_sizes:
        offsets.append(offsets[-1] + b)
    T = len(batch_sizes)
    outs: list = [None] * T
    if not reverse:
        state, done, cur = state0, [], batch_sizes[0]
        for t in range(T):
            bs = batch_sizes[t]
            if bs < cur:       # sequences bs..cur-1 have ended: keep their final state
                done.append(tuple(s[bs:cur] for s in state))
                state = tuple(s[:bs] for s in state)
                cur = bs
            outs[t], state = step(gi[offsets[t]:offsets[t + 1]], state)
        done.append(state)
        final = tuple(S.cat([d[k] for d in reversed(done)], 0) for k in range(len(state0)))
    else:
        cur = batch_sizes[-1]
        state = tuple(s[:cur] for s in state0)
        for t in range(T - 1, -1, -1):
            bs = batch_sizes[t]
            if bs > cur:       # sequences cur..bs-1 start here, from their initial state
                state = tuple(S.cat([s, s0[cur:bs]], 0) for s, s0 in zip(state, state0))
                cur = bs
            outs[t], state = step(gi[offsets[t]:offsets[t + 1]], state)
        final = state
    return S.cat(outs, 0), final


def rnn(mode: str, input: Tensor, hx: State, weights: Sequence[Sequence], num_layers: int, dropout: float,
        training: bool, bidirectional: bool, batch_sizes: Sequence[int] | None = None) -> tuple[Tensor, State]:
    """A stacked (bi)directional recurrence (see `_rnn`).  A whole LSTM is one autocast op, as in PyTorch
    (on the CPU it runs in the low dtype: input, states and weights cast, bf16 out)."""
    if mode != "LSTM":
        return _rnn(mode, input, hx, weights, num_layers, dropout, training, bidirectional, batch_sizes)
    if any(layer[4] is not None for layer in weights):      # PyTorch runs a projected LSTM as its composite
        return _rnn(mode, input, hx, weights, num_layers, dropout, training, bidirectional, batch_sizes)
    width = len(weights[0])
    flat = tuple(w for layer in weights for w in layer)
    return _lstm(input, tuple(hx), flat, width, num_layers, dropout, training, bidirectional, batch_sizes)


@autocast_op("lstm")
def _lstm(input, hx, flat_weights, width, num_layers, dropout, training, bidirectional, batch_sizes):
    weights = [flat_weights[i:i + width] for i in range(0, len(flat_weights), width)]
    return _rnn("LSTM", input, hx, weights, num_layers, dropout, training, bidirectional, batch_sizes)


def _rnn(mode: str, input: Tensor, hx: State, weights: Sequence[Sequence], num_layers: int, dropout: float,
         training: bool, bidirectional: bool, batch_sizes: Sequence[int] | None = None) -> tuple[Tensor, State]:
    """A stacked (bi)directional recurrence.

    input: (T, N, I), or packed rows (sum(batch_sizes), I) when batch_sizes is given.
    hx: per state, a (num_layers * num_directions, N, H) tensor.
    weights: per layer and direction (layer-major), (w_ih, w_hh, b_ih, b_hh, w_hr) with None for
    absent biases / projection.
    Returns the last layer's output (T, N, D * H_out) or packed (sum, D * H_out), and the final states
    stacked as hx is.
    """
    D = 2 if bidirectional else 1
    finals: list[list] = [[] for _ in hx]
    x = input
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            w_ih, w_hh, b_ih, b_hh, w_hr = weights[k]
            gi = _input_projection(mode, x, w_ih, b_ih, b_hh)
            step = step_fn(mode, w_hh, b_hh if mode == "GRU" else None, w_hr)
            state0 = tuple(h[k] for h in hx)
            if batch_sizes is None:
                out, state = _run_padded(step, gi, state0, reverse=d == 1)
            else:
                out, state = _run_packed(step, gi, state0, batch_sizes, reverse=d == 1)
            outs.append(out)
            for f, s in zip(finals, state):
                f.append(s)
        x = outs[0] if D == 1 else S.cat(outs, -1)
        if dropout > 0 and training and layer < num_layers - 1:
            x = _dropout(x, dropout, True)
    return x, tuple(S.stack(f, 0) for f in finals)


def cell(mode: str, input: Tensor, state: State, w_ih: Tensor, w_hh: Tensor, b_ih=None, b_hh=None) -> State:
    """One step of an RNNCell / LSTMCell / GRUCell on a batch (input (N, I), states (N, H))."""
    gi = _input_projection(mode, input, w_ih, b_ih, b_hh)
    _, new = step_fn(mode, w_hh, b_hh if mode == "GRU" else None)(gi, state)
    return new
