"""Models written with ember primitives only (nn composites written out), for fusion tests.

The functions match PyTorch's definitions: layer_norm (biased variance), gelu with the tanh
approximation, cross_entropy (mean nll of log_softmax), conv2d as windows + matmul (im2col),
max_pool2d as windows + amax."""
from __future__ import annotations

import math

import ember as torch
import ember.nn.functional as F
from ember.frontend.dispatch import apply as P


def layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(-1, keepdim=True)
    return xc * torch.rsqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def linear(x, w, b=None):
    y = x @ w.t()
    return y if b is None else y + b


def cross_entropy(logits, target):
    logp = torch.log_softmax(logits, 1)
    picked = logp.gather(1, target.reshape(-1, 1))
    return -picked.mean()


def conv2d(x, w, b):
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    win = P("windows", x, kernel=(k, k), stride=(1, 1), dilation=(1, 1))      # [N,C,oh,ow,k,k]
    oh, ow = win.shape[2], win.shape[3]
    cols = win.permute(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * k * k)
    y = cols @ w.reshape(o, c * k * k).t()                                    # [N*oh*ow, O]
    return y.reshape(n, oh, ow, o).permute(0, 3, 1, 2) + b.reshape(1, o, 1, 1)


def max_pool2d(x, k):
    win = P("windows", x, kernel=(k, k), stride=(k, k), dilation=(1, 1))
    return torch.amax(win, dim=(-2, -1))


def mnist_params(seed=0):
    g = torch.Generator().manual_seed(seed) if hasattr(torch.Generator(), "manual_seed") else None
    torch.manual_seed(seed)
    shapes = {"c1w": (10, 1, 5, 5), "c1b": (10,), "c2w": (20, 10, 5, 5), "c2b": (20,),
              "f1w": (50, 320), "f1b": (50,), "f2w": (10, 50), "f2b": (10,)}
    del g
    return {k: (torch.randn(*s) * 0.1).requires_grad_() for k, s in shapes.items()}


def mnist_loss(x, target, c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, dropout=False):
    """The seed MNIST CNN: conv 1->10 k5, pool 2, relu, conv 10->20 k5, pool 2, relu,
    fc 320->50 relu, fc 50->10, log_softmax, nll_loss.  With dropout: PyTorch's example's
    Dropout2d after conv2 and dropout(0.5) after fc1, in training mode."""
    h = max_pool2d(conv2d(x, c1w, c1b), 2).relu()
    h = conv2d(h, c2w, c2b)
    h = F.dropout2d(h, 0.5) if dropout else h
    h = max_pool2d(h, 2).relu()
    h = h.reshape(h.shape[0], 320)
    h = linear(h, f1w, f1b).relu()
    h = F.dropout(h, 0.5) if dropout else h
    logits = linear(h, f2w, f2b)
    logp = torch.log_softmax(logits, 1)
    return -logp.gather(1, target.reshape(-1, 1)).mean()


def gpt_params(d=32, seed=0):
    torch.manual_seed(seed)
    p = {"ln1w": torch.ones(d), "ln1b": torch.zeros(d), "wqkv": torch.randn(3 * d, d) * 0.1,
         "bqkv": torch.zeros(3 * d), "wo": torch.randn(d, d) * 0.1, "bo": torch.zeros(d),
         "ln2w": torch.ones(d), "ln2b": torch.zeros(d), "w1": torch.randn(4 * d, d) * 0.1,
         "b1": torch.zeros(4 * d), "w2": torch.randn(d, 4 * d) * 0.1, "b2": torch.zeros(d)}
    return {k: v.requires_grad_() for k, v in p.items()}


def mnist_dropout_loss(*args):
    return mnist_loss(*args, dropout=True)


def gpt_block(x, ln1w, ln1b, wqkv, bqkv, wo, bo, ln2w, ln2b, w1, b1, w2, b2, heads=4, dropout=0.0):
    """A pre-norm GPT block: causal multi-head self-attention + gelu MLP, residuals; with dropout,
    nanoGPT's three: on the attention weights and on each residual branch."""
    drop = (lambda t: F.dropout(t, dropout)) if dropout else (lambda t: t)
    B, T, C = x.shape
    hd = C // heads
    h = layer_norm(x, ln1w, ln1b)
    qkv = linear(h, wqkv, bqkv)                                   # [B,T,3C]
    q, k, v = qkv[:, :, :C], qkv[:, :, C:2 * C], qkv[:, :, 2 * C:]
    q = q.reshape(B, T, heads, hd).permute(0, 2, 1, 3)            # [B,H,T,hd]
    k = k.reshape(B, T, heads, hd).permute(0, 2, 1, 3)
    v = v.reshape(B, T, heads, hd).permute(0, 2, 1, 3)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))       # [B,H,T,T]
    mask = torch.ones(T, T).tril() == 0
    att = att.masked_fill(mask, float("-inf"))
    att = drop(torch.softmax(att, -1))
    y = (att @ v).permute(0, 2, 1, 3).reshape(B, T, C)
    x = x + drop(linear(y, wo, bo))
    x = x + drop(linear(gelu_tanh(linear(layer_norm(x, ln2w, ln2b), w1, b1)), w2, b2))
    return x


def gpt_loss(x, *params):
    return gpt_block(x, *params).square().mean()


def gpt_dropout_loss(x, *params):
    return gpt_block(x, *params, dropout=0.1).square().mean()
