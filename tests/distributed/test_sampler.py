"""DistributedSampler: shards disjoint and covering, padding / drop_last identical to PyTorch's,
set_epoch reshuffles (the same permutation on every rank), PyTorch's errors. Shuffled orders
differ from PyTorch's (a different random generator) and are not compared."""
import pytest

from ember.utils.data import DistributedSampler, TensorDataset
import ember

torch = pytest.importorskip("torch")
from torch.utils.data import DistributedSampler as TorchSampler  # noqa: E402


def shards(n, replicas, **kw):
    ds = list(range(n))
    return [list(DistributedSampler(ds, num_replicas=replicas, rank=r, **kw)) for r in range(replicas)]


@pytest.mark.parametrize("n", [1, 7, 10, 12, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_matches_torch(n, replicas, drop_last):
    if drop_last and n < replicas:
        pytest.skip("drop_last with fewer samples than replicas leaves nothing")
    ds = list(range(n))
    for r in range(replicas):
        mine = DistributedSampler(ds, num_replicas=replicas, rank=r, shuffle=False, drop_last=drop_last)
        ref = TorchSampler(ds, num_replicas=replicas, rank=r, shuffle=False, drop_last=drop_last)
        assert list(mine) == list(ref) and len(mine) == len(ref)


@pytest.mark.parametrize("n,replicas", [(10, 2), (10, 3), (7, 4), (64, 2)])
def test_shuffled_shards_disjoint_and_covering(n, replicas):
    parts = shards(n, replicas, seed=3)
    flat = [i for p in parts for i in p]
    assert sorted(set(flat)) == list(range(n))               # every sample is read
    assert len(set(map(len, parts))) == 1                    # equal shard sizes (what DDP needs)
    if n % replicas == 0:
        assert len(flat) == len(set(flat)) == n              # disjoint when nothing is padded
    else:                                                    # else only the padding repeats
        assert len(flat) - len(set(flat)) == replicas - n % replicas
    parts_dl = shards(n, replicas, seed=3, drop_last=True)
    flat_dl = [i for p in parts_dl for i in p]
    assert len(flat_dl) == len(set(flat_dl)) == (n // replicas) * replicas


def test_set_epoch_reshuffles_the_same_way_on_every_rank():
    ds = list(range(50))
    perms = {}
    for epoch in (0, 1, 2):
        got = []
        for r in range(2):
            s = DistributedSampler(ds, num_replicas=2, rank=r, seed=7)
            s.set_epoch(epoch)
            got.append(list(s))
            assert list(s) == got[-1]                        # iterating again gives the same order
        assert sorted(got[0] + got[1]) == ds                 # the ranks agree on one permutation
        perms[epoch] = got[0] + got[1]
    assert perms[0] != perms[1] != perms[2]
    other_seed = DistributedSampler(ds, num_replicas=2, rank=0, seed=8)
    assert list(other_seed) != perms[0][:25]


def test_with_dataloader_and_errors():
    ds = TensorDataset(ember.arange(10))
    s = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    loader = ember.utils.data.DataLoader(ds, batch_size=2, sampler=s)
    assert [b[0].tolist() for b in loader] == [[1, 3], [5, 7], [9]]
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        DistributedSampler(ds, num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(ds)                               # no process group, no explicit rank
