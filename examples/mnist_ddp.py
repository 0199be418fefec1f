"""Train the seed MNIST CNN data-parallel on several processes: DistributedSampler gives each rank
its shard, DistributedDataParallel averages the gradients, rank 0 logs and saves the checkpoint.

    python -m ember.distributed.run --nproc-per-node 2 examples/mnist_ddp.py
    python -m ember.distributed.run --nproc-per-node 2 examples/mnist_ddp.py --dry-run
    python -m ember.distributed.run --nproc-per-node 2 examples/mnist_ddp.py --epochs 1 --limit-batches 100 --save-model

(or `mpiexec -n 2 python -m mpi4py examples/mnist_ddp.py`). --batch-size is per rank, so the
global batch is world size times it; the defaults otherwise follow examples/mnist.py. On GPUs each
rank takes the GPU of its LOCAL_RANK and the gradients travel through NCCL.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember  # noqa: E402
import ember.distributed as dist  # noqa: E402
import ember.nn.functional as F  # noqa: E402
import ember.optim as optim  # noqa: E402
from ember.datasets import MNIST, transforms  # noqa: E402
from ember.nn.parallel import DistributedDataParallel as DDP  # noqa: E402
from ember.utils.data import DataLoader, DistributedSampler  # noqa: E402
from mnist import DATA, REPO, Net  # noqa: E402  (the seed CNN, defined once in examples/mnist.py)


def log(*a):
    if dist.get_rank() == 0:
        print(*a, flush=True)


def train_epoch(args, model, device, loader, optimizer, epoch):
    model.train()
    n = min(len(loader), args.limit_batches) if args.limit_batches else len(loader)
    t0, seen = time.perf_counter(), 0
    for i, (data, target) in enumerate(loader):
        if i >= n:
            break
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()                       # gradients are averaged across the ranks here
        optimizer.step()
        seen += len(data)
        if i % args.log_interval == 0 or i == n - 1:
            log(f"epoch {epoch} [{i + 1}/{n}] loss {loss.item():.4f}")
    return seen * dist.get_world_size(), time.perf_counter() - t0


def evaluate(model, device, loader, limit):
    """Each rank scores its shard of the test set; the sums are all-reduced."""
    model.eval()
    sums = ember.zeros(3, dtype=ember.float64)            # loss, correct, seen
    with ember.no_grad():
        for i, (data, target) in enumerate(loader):
            if limit and i >= limit:
                break
            data, target = data.to(device), target.to(device)
            out = model(data)
            sums += ember.tensor([F.nll_loss(out, target, reduction="sum").item(),
                                  out.argmax(1).eq(target).sum().item(), len(target)], dtype=ember.float64)
    sums = sums.to(device)
    dist.all_reduce(sums)
    loss, correct, seen = sums.tolist()
    acc = 100.0 * correct / max(seen, 1)
    log(f"Test set: Average loss: {loss / max(seen, 1):.4f}, Accuracy: {int(correct)}/{int(seen)} ({acc:.2f}%)")
    return acc


def main(argv=None):
    p = argparse.ArgumentParser(description="ember MNIST, data-parallel")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size per rank (default 64)")
    p.add_argument("--test-batch-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backend", default=None, help="mpi, gloo (= mpi), nccl; default: MPI, plus NCCL with GPUs")
    p.add_argument("--no-cuda", action="store_true")
    p.add_argument("--compile", action="store_true", help="run the model through ember.compile")
    p.add_argument("--log-interval", type=int, default=50)
    p.add_argument("--save-model", action="store_true", help="rank 0 saves checkpoints/mnist_ddp.pt")
    p.add_argument("--dry-run", action="store_true", help="two batches of training and one of testing")
    p.add_argument("--limit-batches", type=int, default=0)
    p.add_argument("--data", default=DATA)
    args = p.parse_args(argv)
    if args.dry_run:
        args.epochs, args.limit_batches = 1, 2

    use_cuda = not args.no_cuda and ember.cuda.is_available()
    dist.init_process_group(args.backend or ("nccl" if use_cuda else "mpi"))
    rank, world = dist.get_rank(), dist.get_world_size()
    if use_cuda:
        local = dist.get_node_local_rank()
        ember.cuda.set_device(local)
        device = ember.device("cuda", local)
    else:
        device = ember.device("cpu")
    ember.manual_seed(args.seed)             # the same initial weights everywhere (DDP broadcasts rank 0's anyway)

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = MNIST(args.data, train=True, transform=tf)
    test_set = MNIST(args.data, train=False, transform=tf)
    train_sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)
    test_sampler = DistributedSampler(test_set, shuffle=False)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=train_sampler)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size, sampler=test_sampler)

    net = Net().to(device)
    model = DDP(ember.compile(net) if args.compile else net, device_ids=[device.index] if use_cuda else None)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)

    log(f"training on {world} rank(s), {device.type}: {len(train_set)} images, {args.epochs} epoch(s), "
        f"batch {args.batch_size} per rank ({args.batch_size * world} in all)")
    acc, samples, busy = 0.0, 0, 0.0
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        train_sampler.set_epoch(epoch)        # a new shuffle each epoch, the same on every rank
        n, s = train_epoch(args, model, device, train_loader, optimizer, epoch)
        samples, busy = samples + n, busy + s
        acc = evaluate(model, device, test_loader, 1 if args.dry_run else 0)
    wall = time.perf_counter() - t0

    if args.save_model:
        if rank == 0:
            path = os.path.join(REPO, "checkpoints", "mnist_ddp.pt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            ember.save(net.state_dict(), path)     # the plain module's keys, loadable by examples/mnist.py
            print(f"saved {path}")
        dist.barrier()                              # nobody exits before the checkpoint is written
    log(f"summary: test accuracy {acc:.2f}% after {args.epochs} epoch(s) on {world} rank(s), "
        f"{samples / max(busy, 1e-9):.0f} training samples/s, wall time {wall:.0f} s")
    dist.destroy_process_group()
    return acc


if __name__ == "__main__":
    main()
