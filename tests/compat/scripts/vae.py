"""PyTorch's VAE example (pytorch/examples, vae/main.py), at toy size, on MNIST.

Written as the example writes it; only the imports name ember. fc1 -> (fc21, fc22) for mu and logvar,
the reparameterisation trick with randn_like, fc3 -> fc4 -> sigmoid decoder, the loss
binary_cross_entropy(reduction='sum') + KL divergence, Adam, a test pass under no_grad, and sampling
from the prior. `noises` (arrays for randn_like, one per batch) and `init` replay the same run under
real PyTorch; `compiled` runs the model through torch.compile.
"""
import gzip
import os

import numpy as np

import ember as torch
import ember.nn as nn
import ember.nn.functional as F
from ember import optim
from ember.utils.data import DataLoader, TensorDataset

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "mnist")


def mnist(prefix, n):
    with gzip.open(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16)[:n * 784].reshape(n, 1, 28, 28)
    return torch.from_numpy(x.astype(np.float32) / 255)     # transforms.ToTensor()


class VAE(nn.Module):
    def __init__(self, hidden=400, latent=20):
        super(VAE, self).__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, 784)
        self.noise = None       # set by the replay to feed the same eps as a PyTorch run

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std) if self.noise is None else self.noise
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


# Reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    # see Appendix B from VAE paper: Kingma and Welling. Auto-Encoding Variational Bayes. ICLR, 2014
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def main(epochs=2, n_train=512, batch_size=64, hidden=64, latent=8, init=None, noises=None, compiled=False,
         shuffle=True, seed=1):
    torch.manual_seed(seed)
    train_loader = DataLoader(TensorDataset(mnist("train", n_train)), batch_size=batch_size, shuffle=shuffle)
    test_loader = DataLoader(TensorDataset(mnist("t10k", 128)), batch_size=batch_size)
    model = VAE(hidden, latent)
    if init is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    net = torch.compile(model) if compiled else model
    optimizer = optim.Adam(model.parameters(), lr=1e-3)

    def test():
        model.eval()
        test_loss = 0
        with torch.no_grad():
            for (data,) in test_loader:
                model.noise = torch.zeros(data.size(0), latent)      # the mean (a deterministic test loss)
                recon_batch, mu, logvar = net(data)
                test_loss += loss_function(recon_batch, data, mu, logvar).item()
        model.noise = None
        return test_loss / len(test_loader.dataset)

    test0 = test()
    losses, step = [], 0
    for epoch in range(1, epochs + 1):
        model.train()
        for batch_idx, (data,) in enumerate(train_loader):
            if noises is not None:
                model.noise = torch.tensor(noises[step])
            optimizer.zero_grad()
            recon_batch, mu, logvar = net(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            optimizer.step()
            losses.append(loss.item() / len(data))
            step += 1
    model.noise = None
    with torch.no_grad():
        sample = model.decode(torch.randn(16, latent)).view(16, 1, 28, 28)
    return dict(losses=losses, test0=test0, test=test(), init=init_state, sample=sample.numpy(), net=net)


if __name__ == "__main__":
    r = main()
    print(f"train loss {r['losses'][0]:.1f} -> {r['losses'][-1]:.1f}; test loss {r['test0']:.1f} -> {r['test']:.1f}")
