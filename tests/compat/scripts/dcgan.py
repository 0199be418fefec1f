"""PyTorch's DCGAN example (pytorch/examples, dcgan/main.py), at toy size: 16x16 MNIST digits.

Written as the example writes it; only the imports name ember. A generator of ConvTranspose2d
(bias=False) + BatchNorm2d + ReLU layers ending in Tanh, a discriminator of Conv2d (bias=False) +
BatchNorm2d + LeakyReLU(inplace) layers ending in Sigmoid, weights_init through
`classname.find('Conv')`, BCELoss, two Adam optimizers with betas=(0.5, 0.999), torch.full labels
filled in place, and the fake.detach() trick. The digits are padded to 32x32 and 2x2-averaged to
16x16 in numpy (the example's transforms.Resize). `noises` (arrays) and `init` replay the same run
under real PyTorch; `compiled` runs both networks through torch.compile.
"""
import gzip
import os

import numpy as np

import ember as torch
import ember.nn as nn
import ember.optim as optim
from ember.utils.data import DataLoader, TensorDataset

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "mnist")


def mnist16(n):
    with gzip.open(os.path.join(DATA, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16)[:n * 784].reshape(n, 28, 28).astype(np.float32) / 255
    x = np.pad(x, ((0, 0), (2, 2), (2, 2))).reshape(n, 16, 2, 16, 2).mean(axis=(2, 4))
    return ((x - 0.5) / 0.5)[:, None].astype(np.float32)      # Normalize((0.5,), (0.5,))


# custom weights initialization called on netG and netD
def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, nz, ngf, nc):
        super(Generator, self).__init__()
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. (ngf*2) x 4 x 4
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # state size. (ngf) x 8 x 8
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh()
            # state size. (nc) x 16 x 16
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, nc, ndf):
        super(Discriminator, self).__init__()
        self.main = nn.Sequential(
            # input is (nc) x 16 x 16
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 8 x 8
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 4 x 4
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


def main(batches=30, batch_size=16, nz=8, ngf=8, ndf=8, init=None, noises=None, compiled=False, shuffle=True,
         seed=999):
    torch.manual_seed(seed)
    device = torch.device("cpu")
    dataloader = DataLoader(TensorDataset(torch.from_numpy(mnist16(batches * batch_size))), batch_size=batch_size,
                            shuffle=shuffle)
    netG = Generator(nz, ngf, 1).to(device)
    netG.apply(weights_init)
    netD = Discriminator(1, ndf).to(device)
    netD.apply(weights_init)
    if init is not None:
        netG.load_state_dict({k: torch.tensor(v) for k, v in init["G"].items()})
        netD.load_state_dict({k: torch.tensor(v) for k, v in init["D"].items()})
    init_state = {name: {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
                  for name, net in (("G", netG), ("D", netD))}
    G = torch.compile(netG) if compiled else netG
    D = torch.compile(netD) if compiled else netD

    criterion = nn.BCELoss()
    real_label = 1
    fake_label = 0
    optimizerD = optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))

    log = dict(errD=[], errG=[], D_x=[], D_G_z1=[], D_G_z2=[], noise=[])
    for i, data in enumerate(dataloader, 0):
        ############################
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        ###########################
        # train with real
        netD.zero_grad()
        real_cpu = data[0].to(device)
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=device)

        output = D(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        # train with fake
        if noises is not None:
            noise = torch.tensor(noises[i])
        else:
            noise = torch.randn(batch_size, nz, 1, 1, device=device)
        fake = G(noise)
        label.fill_(fake_label)
        output = D(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()

        ############################
        # (2) Update G network: maximize log(D(G(z)))
        ###########################
        netG.zero_grad()
        label.fill_(real_label)  # fake labels are real for generator cost
        output = D(fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()

        for k, v in (("errD", errD.item()), ("errG", errG.item()), ("D_x", D_x), ("D_G_z1", D_G_z1),
                     ("D_G_z2", D_G_z2), ("noise", noise.numpy().copy())):
            log[k].append(v)
    return dict(log, init=init_state, G=G, D=D)


if __name__ == "__main__":
    r = main()
    print(f"Loss_D {r['errD'][0]:.3f} -> {np.mean(r['errD'][-5:]):.3f}  D(x) {r['D_x'][0]:.3f} -> "
          f"{np.mean(r['D_x'][-5:]):.3f}  D(G(z)) {r['D_G_z1'][0]:.3f} -> {np.mean(r['D_G_z1'][-5:]):.3f}")
