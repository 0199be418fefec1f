"""A character-level Transformer language model on data/shakespeare, in the style of PyTorch's
word_language_model TransformerModel and minGPT's trainer.

Written as those write it; only the imports name ember. PositionalEncoding with a sin/cos buffer,
nn.TransformerEncoder of norm_first, batch_first TransformerEncoderLayers with a causal mask from
nn.Transformer.generate_square_subsequent_mask, minGPT's configure_optimizers (weight decay for the
weights of whitelisted module types, none for biases, LayerNorm and Embedding weights, checked to cover
every parameter exactly once), AdamW on the two groups, a LambdaLR warmup, and clip_grad_norm_.
`init` (arrays) and `batch_ix` (start offsets) replay the same run under real PyTorch; `compiled`
runs the model through torch.compile.
"""
import math
import os

import ember as torch
import ember.nn as nn
import ember.nn.functional as F

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "shakespeare",
                    "input.txt")


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super(PositionalEncoding, self).__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        pe = pe.unsqueeze(0)                       # (1, max_len, d_model): batch_first
        self.register_buffer("pe", pe)

    def forward(self, x):
        x = x + self.pe[:, :x.size(1), :]
        return self.dropout(x)


class CharTransformer(nn.Module):
    def __init__(self, ntoken, d_model, nhead, d_hid, nlayers, block_size, dropout=0.1):
        super().__init__()
        self.model_type = "Transformer"
        self.embedding = nn.Embedding(ntoken, d_model)
        self.pos_encoder = PositionalEncoding(d_model, dropout, max_len=block_size)
        layer = nn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, ntoken)
        self.d_model = d_model
        self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(block_size))
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        x = self.embedding(idx) * math.sqrt(self.d_model)
        x = self.pos_encoder(x)
        x = self.transformer_encoder(x, mask=self.causal_mask[:T, :T], is_causal=True)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def configure_optimizers(self, learning_rate, weight_decay, betas):
        decay, no_decay = set(), set()
        whitelist_weight_modules = (torch.nn.Linear, torch.nn.MultiheadAttention)
        blacklist_weight_modules = (torch.nn.LayerNorm, torch.nn.Embedding)
        for mn, m in self.named_modules():
            for pn, p in m.named_parameters(recurse=False):
                fpn = "%s.%s" % (mn, pn) if mn else pn   # full param name
                if pn.endswith("bias"):
                    no_decay.add(fpn)
                elif pn.endswith("weight") and isinstance(m, whitelist_weight_modules):
                    decay.add(fpn)
                elif pn.endswith("weight") and isinstance(m, blacklist_weight_modules):
                    no_decay.add(fpn)
        param_dict = {pn: p for pn, p in self.named_parameters()}
        inter_params = decay & no_decay
        union_params = decay | no_decay
        assert len(inter_params) == 0, \
            "parameters %s made it into both decay/no_decay sets!" % (str(inter_params),)
        assert len(param_dict.keys() - union_params) == 0, \
            "parameters %s were not separated into either decay/no_decay set!" % (str(param_dict.keys() - union_params),)
        optim_groups = [
            {"params": [param_dict[pn] for pn in sorted(list(decay))], "weight_decay": weight_decay},
            {"params": [param_dict[pn] for pn in sorted(list(no_decay))], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)


def main(steps=40, batch_size=16, block_size=24, d_model=32, nhead=4, nlayers=2, dropout=0.1, warmup=10,
         init=None, batch_ix=None, compiled=False, seed=1337):
    torch.manual_seed(seed)
    with open(DATA, encoding="utf-8") as f:
        text = f.read()[:20000]
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)

    def get_batch(step):
        if batch_ix is not None:
            ix = torch.tensor(batch_ix[step])
        else:
            ix = torch.randint(len(data) - block_size - 1, (batch_size,))
        x = torch.stack([data[i:i + block_size] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
        return x, y

    model = CharTransformer(len(chars), d_model, nhead, 4 * d_model, nlayers, block_size, dropout)
    if init is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    optimizer = model.configure_optimizers(learning_rate=3e-3, weight_decay=0.1, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    net = torch.compile(model) if compiled else model

    losses = []
    model.train()
    for step in range(steps):
        xb, yb = get_batch(step)
        _, loss = net(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    groups = [len(g["params"]) for g in optimizer.param_groups]
    return dict(losses=losses, init=init_state, vocab=len(chars), groups=groups, n_train=len(data), net=net)


if __name__ == "__main__":
    r = main()
    print(f"vocab {r['vocab']}, groups {r['groups']}: loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}")
