"""PyTorch's word_language_model example (pytorch/examples), at toy size, on data/shakespeare.

Written as the example writes it; only the imports name ember. Dictionary/Corpus tokenising with
<eos>, batchify into columns, get_batch with bptt, an Embedding -> multi-layer LSTM (or GRU / RNN)
-> Linear model with dropout and tied weights, init_hidden with weight.new_zeros, repackage_hidden
(detach between batches), clip_grad_norm_ and the example's hand-written SGD update
(p.data.add_(p.grad, alpha=-lr)). `compiled` runs the model through torch.compile; `init` (arrays)
replays the same run under real PyTorch.
"""
import math
import os

import ember as torch
import ember.nn as nn
import ember.nn.functional as F

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "shakespeare",
                    "input.txt")


class Dictionary(object):
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus(object):
    def __init__(self, lines):
        self.dictionary = Dictionary()
        n = len(lines)
        self.train = self.tokenize(lines[: int(0.8 * n)])
        self.valid = self.tokenize(lines[int(0.8 * n):])

    def tokenize(self, lines):
        for line in lines:
            for word in line.split() + ["<eos>"]:
                self.dictionary.add_word(word)
        idss = []
        for line in lines:
            ids = [self.dictionary.word2idx[w] for w in line.split() + ["<eos>"]]
            idss.append(torch.tensor(ids).type(torch.int64))
        return torch.cat(idss)


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        else:
            return weight.new_zeros(self.nlayers, bsz, self.nhid)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    data = data.view(bsz, -1).t().contiguous()
    return data


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    else:
        return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].view(-1)
    return data, target


def main(batches=30, lines=400, rnn_type="LSTM", emsize=32, nhid=32, nlayers=2, dropout=0.2, bptt=12,
         batch_size=8, lr=5.0, clip=0.25, init=None, compiled=False, seed=1111):
    torch.manual_seed(seed)
    with open(DATA, encoding="utf-8") as f:
        text = [line for line in f.read().splitlines() if line.strip()][:lines]
    corpus = Corpus(text)
    train_data = batchify(corpus.train, batch_size)
    val_data = batchify(corpus.valid, 4)
    ntokens = len(corpus.dictionary)
    model = RNNModel(rnn_type, ntokens, emsize, nhid, nlayers, dropout, tie_weights=True)
    if init is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    criterion = nn.NLLLoss()
    net = torch.compile(model) if compiled else model

    def evaluate(data_source):
        model.eval()
        total_loss = 0.0
        hidden = model.init_hidden(4)
        with torch.no_grad():
            for i in range(0, data_source.size(0) - 1, bptt):
                data, targets = get_batch(data_source, i, bptt)
                output, hidden = net(data, hidden)
                hidden = repackage_hidden(hidden)
                total_loss += len(data) * criterion(output, targets).item()
        return total_loss / (len(data_source) - 1)

    val0 = evaluate(val_data)
    model.train()
    losses = []
    hidden = model.init_hidden(batch_size)
    starts = list(range(0, train_data.size(0) - 1, bptt))
    for batch in range(batches):
        data, targets = get_batch(train_data, starts[batch % len(starts)], bptt)
        if data.size(0) != bptt:         # keep one shape per run (the example's last batch is shorter)
            continue
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = net(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
    return dict(losses=losses, val0=val0, val=evaluate(val_data), init=init_state, ntokens=ntokens,
                ppl=math.exp(losses[-1]), net=net)


if __name__ == "__main__":
    r = main()
    print(f"{r['ntokens']} words; train loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}; "
          f"valid loss {r['val0']:.3f} -> {r['val']:.3f}")
