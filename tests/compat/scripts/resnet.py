"""A residual CNN in the style of the popular pytorch-cifar repository (kuangliu) and torchvision's
ResNet, at toy size, trained on MNIST at 14x14.

Written as those repositories write it; only the imports name ember. BasicBlock (3x3 convs with
bias=False + BatchNorm2d, an identity or 1x1-conv shortcut), _make_layer, F.avg_pool2d over the last
feature map, torchvision's kaiming_normal_(mode='fan_out') / constant_ initialisation with the last
BN of each block zeroed, SGD with momentum, nesterov and weight decay, CosineAnnealingLR, and
CrossEntropyLoss with label smoothing. `init` (arrays) replays the same run under real PyTorch;
`compiled` runs the model through torch.compile.
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


def mnist(prefix, n):
    with gzip.open(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16)[:n * 784].reshape(n, 1, 28, 28)
    with gzip.open(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    x = ((x.astype(np.float32) / 255 - 0.1307) / 0.3081).astype(np.float32)
    x = x.reshape(n, 1, 14, 2, 14, 2).mean(axis=(3, 5))      # transforms.Resize(14): keeps the run short
    return torch.from_numpy(x), torch.from_numpy(y)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super(BasicBlock, self).__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, width=8, zero_init_residual=True):
        super(ResNet, self).__init__()
        self.in_planes = width

        self.conv1 = nn.Conv2d(1, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], stride=2)
        self.linear = nn.Linear(4 * width * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def main(epochs=1, n_train=640, batch_size=32, width=8, lr=0.5, init=None, compiled=False, shuffle=True, seed=0):
    torch.manual_seed(seed)
    trainloader = DataLoader(TensorDataset(*mnist("train", n_train)), batch_size=batch_size, shuffle=shuffle)
    testloader = DataLoader(TensorDataset(*mnist("t10k", 200)), batch_size=100)
    model = ResNet(BasicBlock, [1, 1, 1], width=width)
    if init is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    init_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    net = torch.compile(model) if compiled else model

    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(trainloader))

    def test():
        model.eval()
        correct, total = 0, 0
        with torch.no_grad():
            for inputs, targets in testloader:
                outputs = net(inputs)
                _, predicted = outputs.max(1)
                total += targets.size(0)
                correct += predicted.eq(targets).sum().item()
        return correct / total

    acc0 = test()
    losses, lrs = [], []
    for epoch in range(epochs):
        model.train()
        for batch_idx, (inputs, targets) in enumerate(trainloader):
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            lrs.append(scheduler.get_last_lr()[0])
    running = {k: v.numpy().copy() for k, v in model.state_dict().items() if "running" in k}
    return dict(losses=losses, lrs=lrs, acc0=acc0, acc=test(), init=init_state, running=running, net=net)


if __name__ == "__main__":
    r = main()
    print(f"loss {r['losses'][0]:.3f} -> {np.mean(r['losses'][-5:]):.3f}; accuracy {r['acc0']:.2f} -> {r['acc']:.2f}")
