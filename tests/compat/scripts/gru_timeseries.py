"""Time-series regression with a GRU, the way the common forecasting tutorials write it: sliding
windows over a series, min-max scaling, a batch_first multi-layer GRU whose last output goes through a
Linear head, MSELoss, Adam with StepLR, and a held-out validation split.

Written as a PyTorch user writes it; only the imports name ember. The series is synthetic (trend +
two seasonal cycles + noise, like the monthly airline-passengers data) so no download is needed.
`init` (arrays) replays the same run under real PyTorch; `compiled` runs the model through
torch.compile.
"""
import numpy as np

import ember as torch
import ember.nn as nn
from ember.utils.data import DataLoader, TensorDataset


def make_series(n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (0.02 * t + np.sin(2 * np.pi * t / 12) + 0.5 * np.sin(2 * np.pi * t / 50)
            + 0.1 * rng.standard_normal(n)).astype(np.float32)


def sliding_windows(data, seq_length):
    x, y = [], []
    for i in range(len(data) - seq_length - 1):
        x.append(data[i:(i + seq_length)])
        y.append(data[i + seq_length])
    return np.array(x), np.array(y)


class GRUNet(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, n_layers, drop_prob=0.2):
        super(GRUNet, self).__init__()
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.gru = nn.GRU(input_dim, hidden_dim, n_layers, batch_first=True, dropout=drop_prob)
        self.fc = nn.Linear(hidden_dim, output_dim)
        self.relu = nn.ReLU()

    def forward(self, x, h=None):
        out, h = self.gru(x, h)
        out = self.fc(self.relu(out[:, -1]))
        return out, h

    def init_hidden(self, batch_size):
        weight = next(self.parameters()).data
        return weight.new(self.n_layers, batch_size, self.hidden_dim).zero_()


def main(epochs=4, seq_length=12, batch_size=32, hidden=16, n_layers=2, dropout=0.1, init=None, compiled=False,
         shuffle=True, seed=0):
    torch.manual_seed(seed)
    series = make_series()
    lo, hi = series.min(), series.max()
    scaled = (series - lo) / (hi - lo)                 # MinMaxScaler
    x, y = sliding_windows(scaled, seq_length)
    train_size = int(len(y) * 0.67)
    trainX = torch.Tensor(x[:train_size]).unsqueeze(-1)
    trainY = torch.Tensor(y[:train_size]).unsqueeze(-1)
    testX = torch.Tensor(x[train_size:]).unsqueeze(-1)
    testY = torch.Tensor(y[train_size:]).unsqueeze(-1)
    train_loader = DataLoader(TensorDataset(trainX, trainY), shuffle=shuffle, batch_size=batch_size, drop_last=True)

    model = GRUNet(1, hidden, 1, n_layers, dropout)
    if init is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    net = torch.compile(model) if compiled else model
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

    def evaluate():
        model.eval()
        with torch.no_grad():
            out, _ = net(testX, model.init_hidden(testX.size(0)))
            return criterion(out, testY).item()

    val0 = evaluate()
    losses = []
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_loader:
            h = model.init_hidden(xb.size(0))
            optimizer.zero_grad()
            out, h = net(xb, h)
            loss = criterion(out, yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
    return dict(losses=losses, val0=val0, val=evaluate(), init=init_state, net=net)


if __name__ == "__main__":
    r = main()
    print(f"train MSE {r['losses'][0]:.4f} -> {r['losses'][-1]:.4f}; validation {r['val0']:.4f} -> {r['val']:.4f}")
