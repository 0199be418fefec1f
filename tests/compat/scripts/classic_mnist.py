"""PyTorch's classic MNIST example (pytorch/examples, the 2017 Net), trained for a few dozen batches.

Written exactly as a PyTorch user writes it; only the imports name ember. The data is the repository's
MNIST read with numpy and normalised as in the example. `init` (arrays), `dropout` and `shuffle` let a
test replay the same run under real PyTorch.
"""
import gzip
import os

import numpy as np

import ember as torch
import ember.nn as nn
import ember.nn.functional as F
import ember.optim as optim
from ember.utils.data import DataLoader, TensorDataset

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "mnist")


def mnist_arrays(train, n):
    prefix = "train" if train else "t10k"
    with gzip.open(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16)[:n * 784].reshape(n, 1, 28, 28)
    with gzip.open(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return ((x.astype(np.float32) / 255 - 0.1307) / 0.3081).astype(np.float32), y


class Net(nn.Module):
    def __init__(self, p=0.5):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(p)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        self.p = p

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, p=self.p, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def main(batches=100, init=None, dropout=0.5, shuffle=True, seed=1):
    torch.manual_seed(seed)
    x_train, y_train = mnist_arrays(True, 64 * batches)
    x_test, y_test = mnist_arrays(False, 1000)
    train_loader = DataLoader(TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
                              batch_size=64, shuffle=shuffle)
    test_loader = DataLoader(TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test)),
                             batch_size=1000)

    model = Net(dropout)
    if init is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.5)

    def test():
        model.eval()
        test_loss, correct = 0, 0
        with torch.no_grad():
            for data, target in test_loader:
                output = model(data)
                test_loss += F.nll_loss(output, target, reduction="sum").item()
                pred = output.max(1, keepdim=True)[1]
                correct += pred.eq(target.view_as(pred)).sum().item()
        return test_loss / len(test_loader.dataset), correct / len(test_loader.dataset)

    loss0, acc0 = test()
    losses = []
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    test_loss, acc = test()
    return dict(losses=losses, test_loss0=loss0, test_loss=test_loss, acc0=acc0, acc=acc, init=init_state)


if __name__ == "__main__":
    r = main()
    print(f"train loss {r['losses'][0]:.3f} -> {np.mean(r['losses'][-5:]):.3f}; "
          f"test loss {r['test_loss0']:.3f} -> {r['test_loss']:.3f}, accuracy {r['acc0']:.3f} -> {r['acc']:.3f}")
