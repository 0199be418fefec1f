"""Fit y = w*x + b with nn.Linear and SGD, then print the recovered w and b.

    python examples/linear_regression.py [--steps 500] [--lr 0.1]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
import ember  # noqa: E402
import ember.nn as nn  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ember.manual_seed(args.seed)
    true_w, true_b = 3.0, -1.5
    x = ember.rand(256, 1) * 4 - 2                           # inputs in [-2, 2)
    y = true_w * x + true_b + 0.05 * ember.randn(256, 1)     # a little noise

    model = nn.Linear(1, 1)
    opt = ember.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()
    for step in range(args.steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.5f}")

    w, b = model.weight.item(), model.bias.item()
    print(f"recovered w = {w:.4f} (true {true_w}), b = {b:.4f} (true {true_b})")
    return w, b


if __name__ == "__main__":
    main()
