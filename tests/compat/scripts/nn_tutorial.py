"""PyTorch's "What is torch.nn really?" tutorial, step by step, on a few hundred MNIST digits.

Written exactly as a PyTorch user writes it; only the imports name ember. Each stage refactors the
previous one (manual weights and SGD -> nn.Module with nn.Parameter -> nn.Linear -> optim,
TensorDataset and DataLoader -> a CNN in nn.Sequential) and returns its losses and accuracies.
`init` (arrays) / `shuffle` let a test replay the same run under real PyTorch.
"""
import gzip
import math
import os

import numpy as np

import ember as torch
import ember.nn as nn
import ember.nn.functional as F
from ember import optim
from ember.utils.data import DataLoader, TensorDataset

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "mnist")


def load_mnist(n_train=512, n_valid=256):
    def images(name, n):
        with gzip.open(os.path.join(DATA, name)) as f:
            return np.frombuffer(f.read(), np.uint8, offset=16)[:n * 784].reshape(n, 784).astype(np.float32) / 255

    def labels(name, n):
        with gzip.open(os.path.join(DATA, name)) as f:
            return np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return (images("train-images-idx3-ubyte.gz", n_train), labels("train-labels-idx1-ubyte.gz", n_train),
            images("t10k-images-idx3-ubyte.gz", n_valid), labels("t10k-labels-idx1-ubyte.gz", n_valid))


def accuracy(out, yb):
    preds = torch.argmax(out, dim=1)
    return (preds == yb).float().mean()


def main(init=None, shuffle=True, epochs=3, cnn_epochs=10, seed=0):
    torch.manual_seed(seed)
    x_train, y_train, x_valid, y_valid = map(torch.tensor, load_mnist())
    n, c = x_train.shape
    bs, lr = 64, 0.5
    results = {}
    inits = {}

    # -- 1. from scratch: manual weights, log_softmax and nll by hand, SGD under no_grad
    weights = torch.randn(784, 10) / math.sqrt(784)
    if init is not None:
        weights = torch.tensor(init["scratch"]["weights"])
    weights.requires_grad_()
    bias = torch.zeros(10, requires_grad=True)
    inits["scratch"] = {"weights": weights.detach().numpy().copy()}

    def log_softmax(x):
        return x - x.exp().sum(-1).log().unsqueeze(-1)

    def model(xb):
        return log_softmax(xb @ weights + bias)

    def nll(input, target):
        return -input[range(target.shape[0]), target].mean()

    loss_func = nll
    losses = []
    acc0 = accuracy(model(x_train[:bs]), y_train[:bs]).item()
    for epoch in range(epochs):
        for i in range((n - 1) // bs + 1):
            start_i = i * bs
            end_i = start_i + bs
            xb = x_train[start_i:end_i]
            yb = y_train[start_i:end_i]
            pred = model(xb)
            loss = loss_func(pred, yb)
            losses.append(loss.item())
            loss.backward()
            with torch.no_grad():
                weights -= weights.grad * lr
                bias -= bias.grad * lr
                weights.grad.zero_()
                bias.grad.zero_()
    results["scratch"] = dict(losses=losses, acc0=acc0, acc=accuracy(model(x_train[:bs]), y_train[:bs]).item())

    # -- 2. nn.Module with nn.Parameter, F.cross_entropy, model.parameters() / zero_grad
    loss_func = F.cross_entropy

    class Mnist_Logistic(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = nn.Parameter(torch.randn(784, 10) / math.sqrt(784))
            self.bias = nn.Parameter(torch.zeros(10))

        def forward(self, xb):
            return xb @ self.weights + self.bias

    def fit_manual(model, stage):
        losses = []
        for epoch in range(epochs):
            for i in range((n - 1) // bs + 1):
                start_i = i * bs
                end_i = start_i + bs
                xb = x_train[start_i:end_i]
                yb = y_train[start_i:end_i]
                loss = loss_func(model(xb), yb)
                losses.append(loss.item())
                loss.backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p -= p.grad * lr
                    model.zero_grad()
        return losses

    def prepared(model, stage):
        if init is not None:
            model.load_state_dict({k: torch.tensor(v) for k, v in init[stage].items()})
        inits[stage] = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        return model

    model = prepared(Mnist_Logistic(), "module")
    acc0 = accuracy(model(x_valid), y_valid).item()
    results["module"] = dict(losses=fit_manual(model, "module"), acc0=acc0,
                             acc=accuracy(model(x_valid), y_valid).item())

    # -- 3. nn.Linear
    class Mnist_Logistic2(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 10)

        def forward(self, xb):
            return self.lin(xb)

    model = prepared(Mnist_Logistic2(), "linear")
    acc0 = accuracy(model(x_valid), y_valid).item()
    results["linear"] = dict(losses=fit_manual(model, "linear"), acc0=acc0,
                             acc=accuracy(model(x_valid), y_valid).item())

    # -- 4. optim + TensorDataset + DataLoader, with a validation pass per epoch
    train_ds = TensorDataset(x_train, y_train)
    valid_ds = TensorDataset(x_valid, y_valid)

    def get_data(train_ds, valid_ds, bs):
        return (DataLoader(train_ds, batch_size=bs, shuffle=shuffle),
                DataLoader(valid_ds, batch_size=bs * 2))

    def loss_batch(model, loss_func, xb, yb, opt=None):
        loss = loss_func(model(xb), yb)
        if opt is not None:
            loss.backward()
            opt.step()
            opt.zero_grad()
        return loss.item(), len(xb)

    def fit(epochs, model, loss_func, opt, train_dl, valid_dl):
        train_losses, val_losses = [], []
        for epoch in range(epochs):
            model.train()
            for xb, yb in train_dl:
                train_losses.append(loss_batch(model, loss_func, xb, yb, opt)[0])
            model.eval()
            with torch.no_grad():
                losses, nums = zip(*[loss_batch(model, loss_func, xb, yb) for xb, yb in valid_dl])
            val_losses.append(np.sum(np.multiply(losses, nums)) / np.sum(nums))
        return train_losses, val_losses

    train_dl, valid_dl = get_data(train_ds, valid_ds, bs)
    model = prepared(Mnist_Logistic2(), "optim")
    opt = optim.SGD(model.parameters(), lr=lr)
    acc0 = accuracy(model(x_valid), y_valid).item()
    tl, vl = fit(epochs, model, loss_func, opt, train_dl, valid_dl)
    results["optim"] = dict(losses=tl, val_losses=vl, acc0=acc0, acc=accuracy(model(x_valid), y_valid).item())

    # -- 5. a CNN: nn.Sequential with a Lambda layer, momentum SGD
    class Lambda(nn.Module):
        def __init__(self, func):
            super().__init__()
            self.func = func

        def forward(self, x):
            return self.func(x)

    def preprocess(x):
        return x.view(-1, 1, 28, 28)

    model = nn.Sequential(
        Lambda(preprocess),
        nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        Lambda(lambda x: x.view(x.size(0), -1)),
    )
    model = prepared(model, "cnn")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    acc0 = accuracy(model(x_valid), y_valid).item()
    tl, vl = fit(cnn_epochs, model, loss_func, opt, train_dl, valid_dl)
    results["cnn"] = dict(losses=tl, val_losses=vl, acc0=acc0, acc=accuracy(model(x_valid), y_valid).item())
    results["init"] = inits
    return results


if __name__ == "__main__":
    for stage, r in main().items():
        if stage != "init":
            print(f"{stage:8s} loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}  acc {r['acc0']:.3f} -> {r['acc']:.3f}")
