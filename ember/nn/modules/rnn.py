"""Recurrent layers: RNN (tanh / relu), LSTM (with proj_size), GRU, and RNNCell / LSTMCell / GRUCell.

PyTorch's constructors, parameter names (weight_ih_l0, weight_hh_l0_reverse, bias_ih_l1, weight_hr_l0,
...), shapes, initialisation (every weight uniform in +-1/sqrt(hidden_size)), input layouts
((T, N, I), batch_first (N, T, I), unbatched (T, I), or a PackedSequence), initial states and
return values. The arithmetic is in ember/nn/_functional/rnn.py: the input projections of all time
steps are one matrix product per layer and direction; the time loop is Python, so ember.compile
unrolls it over the (fixed) sequence length, and each new length traces once more.
"""
from __future__ import annotations

import math
import numbers
import warnings

from ...frontend.autocast import is_enabled as autocast_enabled
from ...frontend.creation import empty, zeros
from ...frontend.tensor import Tensor
from .. import init
from .._functional import rnn as R
from ..parameter import Parameter
from ..utils.rnn import PackedSequence
from .module import Module

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


def _check_int(name, v):
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} should be of type int, got: {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name} must be greater than zero")


class RNNBase(Module):
    """The stacked recurrent layer behind RNN, LSTM and GRU (mode 'RNN_TANH' | 'RNN_RELU' | 'LSTM' | 'GRU')."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None) -> None:
        super().__init__()
        if mode not in R.GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          stacklevel=2)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
        _check_int("input_size", input_size)
        _check_int("hidden_size", hidden_size)
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        gate_size = R.GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        D = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(D):
                layer_input = input_size if layer == 0 else real_hidden * D
                suffix = "_reverse" if direction == 1 else ""
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, real_hidden)}
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(empty(*shape, device=device, dtype=dtype)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op: PyTorch packs the weights into one cuDNN buffer; ember has no cuDNN."""

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n, None) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)

    # ------------------------------------------------------------------------------ forward
    def _state_sizes(self) -> list[int]:
        """Feature size of each state: [h] or, for the LSTM, [h, c] (h is proj_size when projecting)."""
        h = self.proj_size if self.proj_size > 0 else self.hidden_size
        return [h, self.hidden_size] if self.mode == "LSTM" else [h]

    def _layer_weights(self) -> list[tuple]:
        out = []
        for names in self._all_weights:
            w = {n.split("_l")[0]: getattr(self, n) for n in names}
            out.append((w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), w.get("weight_hr")))
        return out

    def _check_input(self, x: Tensor, packed: bool) -> None:
        w = getattr(self, self._flat_weights_names[0])
        if x.dtype is not w.dtype and not autocast_enabled(x.device.type):     # autocast casts them (torch)
            raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype ({w.dtype}). Convert input: "
                             f"input.to({w.dtype}), or convert model: model.to({x.dtype})")
        expected = 2 if packed else 3
        if x.ndim != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {x.ndim}")
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {x.shape[-1]}")

    def _hidden(self, hx, x: Tensor, batch: int, is_batched: bool, sorted_indices) -> tuple:
        """The initial states as a tuple of (L * D, N, H) tensors: zeros, or hx checked and reordered."""
        lstm = self.mode == "LSTM"
        rows = self.num_layers * (2 if self.bidirectional else 1)
        sizes = self._state_sizes()
        if hx is None:
            return tuple(zeros(rows, batch, h, dtype=x.dtype, device=x.device) for h in sizes)
        states = tuple(hx) if lstm else (hx,)
        if lstm and len(states) != 2:
            raise RuntimeError(f"LSTM: expected hx to be a tuple (h_0, c_0), got {len(states)} tensors")
        want = 3 if is_batched else 2
        if any(s.ndim != want for s in states):
            dims = ", ".join(f"{s.ndim}-D" for s in states)
            if lstm:
                raise RuntimeError(f"For {'batched 3-D' if is_batched else 'unbatched 2-D'} input, hx and cx should "
                                   f"also be {want}-D but got ({dims}) tensors")
            raise RuntimeError(f"For {'batched 3-D' if is_batched else 'unbatched 2-D'} input, hx should also be "
                               f"{want}-D but got {dims} tensor")
        if not is_batched:
            states = tuple(s.unsqueeze(1) for s in states)
        for i, (s, h) in enumerate(zip(states, sizes)):
            expected = (rows, batch, h)
            if tuple(s.shape) != expected:
                what = f"hidden[{i}] size" if lstm else "hidden size"
                raise RuntimeError(f"Expected {what} {expected}, got {list(s.shape)}")
        if sorted_indices is not None:
            states = tuple(s.index_select(1, sorted_indices) for s in states)
        return states

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        sorted_indices = unsorted_indices = None
        if packed:
            x, batch_sizes_t, sorted_indices, unsorted_indices = input
            batch_sizes = [int(b) for b in batch_sizes_t.tolist()]
            batch, is_batched = batch_sizes[0], True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"{type(self).__name__}: expected a Tensor or a PackedSequence as input, got "
                                f"{type(input).__name__}")
            if input.ndim not in (2, 3):
                name = "RNN" if self.mode.startswith("RNN") else self.mode
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D "
                                 f"{'tensor ' if name == 'RNN' else ''}instead")
            batch_sizes = None
            is_batched = input.ndim == 3
            x = input if is_batched else input.unsqueeze(1 if not self.batch_first else 0)
            if self.batch_first:
                x = x.transpose(0, 1)
            batch = x.shape[1]
        self._check_input(x, packed)
        states = self._hidden(hx, x, batch, is_batched, sorted_indices)
        out, finals = R.rnn(self.mode, x, states, self._layer_weights(), self.num_layers, self.dropout,
                            self.training, self.bidirectional, batch_sizes)
        if packed:
            output = PackedSequence(out, batch_sizes_t, sorted_indices, unsorted_indices)
            if unsorted_indices is not None:
                finals = tuple(f.index_select(1, unsorted_indices) for f in finals)
        else:
            output = out.transpose(0, 1) if self.batch_first else out
            if not is_batched:
                output = output.squeeze(0 if self.batch_first else 1)
                finals = tuple(f.squeeze(1) for f in finals)
        return output, (finals if self.mode == "LSTM" else finals[0])


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu).

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
        dropout=0.0, bidirectional=False, device=None, dtype=None)"""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self_nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self_nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self_nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self_nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{self_nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, *args, **kwargs)
        self.nonlinearity = self_nonlinearity


class LSTM(RNNBase):
    """Long short-term memory; returns output, (h_n, c_n). proj_size > 0 projects h to proj_size.

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
         bidirectional=False, proj_size=0, device=None, dtype=None)"""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit (PyTorch's form: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))).

    GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
        bidirectional=False, device=None, dtype=None)"""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


# ---------------------------------------------------------------------------------- cells
class RNNCellBase(Module):
    """One time step of a recurrent layer: weight_ih (chunks * hidden, input), weight_hh, bias_ih, bias_hh."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(num_chunks * hidden_size, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(empty(num_chunks * hidden_size, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, device=device, dtype=dtype))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if "bias" in self.__dict__ and self.bias is not True:
            s += ", bias={bias}"
        if "nonlinearity" in self.__dict__ and self.nonlinearity != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _step(self, mode: str, input: Tensor, hx, n_states: int):
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        states = None if hx is None else (tuple(hx) if n_states == 2 else (hx,))
        if states is not None:
            for i, s in enumerate(states):
                if s.ndim not in (1, 2):
                    what = f"hx[{i}]" if n_states == 2 else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {s.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[-1]} expected "
                               f"{self.input_size}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if states is None:
            z = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            states = (z,) * n_states
        elif not batched:
            states = tuple(s.unsqueeze(0) for s in states)
        for i, s in enumerate(states):
            if tuple(s.shape) != (x.shape[0], self.hidden_size):
                what = f"hx[{i}]" if n_states == 2 else "hidden"
                raise RuntimeError(f"{name}: Expected {what} of shape {(x.shape[0], self.hidden_size)}, got "
                                   f"{list(s.shape)}")
        out = R.cell(mode, x, states, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if not batched:
            out = tuple(o.squeeze(0) for o in out)
        return out


class RNNCell(RNNCellBase):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return self._step("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", input, hx, 1)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step: returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        return self._step("LSTM", input, hx, 2)


class GRUCell(RNNCellBase):
    """One GRU step: returns h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step("GRU", input, hx, 1)[0]
