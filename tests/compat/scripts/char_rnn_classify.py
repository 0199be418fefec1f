"""A character-level GRU classifier over variable-length words, batched with pack_padded_sequence.

The pattern of PyTorch's "classifying names with a character-level RNN" tutorial as it is usually
batched in practice: a Dataset of (word, label), a collate_fn that pads with pad_sequence and returns
the lengths, an Embedding with padding_idx, a bidirectional GRU fed a PackedSequence
(enforce_sorted=False), the last hidden states of both directions concatenated into a Linear layer,
CrossEntropyLoss and Adam. The words come from three synthetic "languages" (each a fixed random
letter-bigram chain), so the classes are learnable without a download. `init` (arrays) replays the
same run under real PyTorch; `compiled` runs the model through torch.compile.
"""
import numpy as np

import ember as torch
import ember.nn as nn
from ember.nn.utils.rnn import pack_padded_sequence, pad_sequence
from ember.utils.data import DataLoader, Dataset

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def make_words(n, n_classes=3, seed=0):
    """n (word, class) pairs: class c draws letters from its own bigram chain, lengths 3..10."""
    rng = np.random.default_rng(seed)
    chains = [rng.dirichlet(np.full(26, 0.15), size=26) for _ in range(n_classes)]
    words = []
    for i in range(n):
        c = i % n_classes
        w = [int(rng.integers(26))]
        for _ in range(int(rng.integers(3, 11)) - 1):
            w.append(int(rng.choice(26, p=chains[c][w[-1]])))
        words.append(("".join(LETTERS[j] for j in w), c))
    return words


class Words(Dataset):
    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        word, label = self.pairs[i]
        return torch.tensor([LETTERS.index(ch) + 1 for ch in word]), label   # 0 is padding


def collate(batch):
    seqs, labels = zip(*batch)
    lengths = torch.tensor([len(s) for s in seqs])
    return pad_sequence(seqs, batch_first=True, padding_value=0), lengths, torch.tensor(labels)


class CharRNNClassifier(nn.Module):
    def __init__(self, n_chars, emb_dim, hidden, n_classes, num_layers=1, bidirectional=True):
        super().__init__()
        self.embedding = nn.Embedding(n_chars, emb_dim, padding_idx=0)
        self.rnn = nn.GRU(emb_dim, hidden, num_layers, batch_first=True, bidirectional=bidirectional)
        self.bidirectional = bidirectional
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), n_classes)

    def forward(self, x, lengths):
        emb = self.embedding(x)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if self.bidirectional:
            hidden = torch.cat([hidden[-2], hidden[-1]], dim=1)
        else:
            hidden = hidden[-1]
        return self.fc(hidden)


def main(epochs=3, n_words=240, batch_size=16, init=None, compiled=False, shuffle=True, seed=0):
    torch.manual_seed(seed)
    pairs = make_words(n_words + 90, seed=seed)
    train_loader = DataLoader(Words(pairs[:n_words]), batch_size=batch_size, shuffle=shuffle, collate_fn=collate)
    test_loader = DataLoader(Words(pairs[n_words:]), batch_size=45, collate_fn=collate)
    model = CharRNNClassifier(len(LETTERS) + 1, 16, 24, 3)
    if init is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    net = torch.compile(model) if compiled else model
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def accuracy():
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, lengths, y in test_loader:
                correct += (net(x, lengths).argmax(1) == y).sum().item()
        model.train()
        return correct / len(test_loader.dataset)

    acc0 = accuracy()
    losses = []
    for _ in range(epochs):
        for x, lengths, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(net(x, lengths), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return dict(losses=losses, acc0=acc0, acc=accuracy(), init=init_state, net=net)


if __name__ == "__main__":
    r = main()
    print(f"loss {np.mean(r['losses'][:5]):.3f} -> {np.mean(r['losses'][-5:]):.3f}; "
          f"accuracy {r['acc0']:.2f} -> {r['acc']:.2f}")
