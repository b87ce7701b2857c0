"""kiln.data.DistributedSampler against torch.utils.data.distributed.DistributedSampler:
index lists without shuffling, sizes with it, exact coverage, set_epoch, DataLoader use.
No MPI: num_replicas / rank are passed explicitly."""

import numpy as np
import pytest
import torch.utils.data.distributed as tdist

import kiln
from kiln.data import DataLoader, DistributedSampler, TensorDataset

CASES = [(n, r) for n in (0, 1, 2, 5, 10, 11, 12, 17, 64, 101) for r in (1, 2, 3, 4, 7)
         if n > 0 or r == 1]


def _shards(n, r, **kw):
    return [list(DistributedSampler(range(n), num_replicas=r, rank=k, **kw)) for k in range(r)]


def _torch_shards(n, r, **kw):
    return [list(tdist.DistributedSampler(range(n), num_replicas=r, rank=k, **kw))
            for k in range(r)]


@pytest.mark.parametrize("n,r", CASES)
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_matches_torch(n, r, drop_last):
    kw = dict(shuffle=False, drop_last=drop_last)
    ours, ref = _shards(n, r, **kw), _torch_shards(n, r, **kw)
    assert ours == ref
    for k in range(r):
        s = DistributedSampler(range(n), num_replicas=r, rank=k, **kw)
        t = tdist.DistributedSampler(range(n), num_replicas=r, rank=k, **kw)
        assert len(s) == len(t) == len(ours[k])
        assert (s.num_samples, s.total_size) == (t.num_samples, t.total_size)


@pytest.mark.parametrize("n,r", CASES)
@pytest.mark.parametrize("drop_last", [False, True])
def test_shuffled_sizes_match_torch_and_cover(n, r, drop_last):
    ours = _shards(n, r, shuffle=True, seed=3, drop_last=drop_last)
    ref = _torch_shards(n, r, shuffle=True, seed=3, drop_last=drop_last)
    assert [len(s) for s in ours] == [len(s) for s in ref]
    flat = np.concatenate([np.asarray(s, np.int64) for s in ours]) if n else np.zeros(0)
    counts = np.bincount(flat.astype(np.int64), minlength=n) if n else np.zeros(0)
    if n % r == 0:  # disjoint and every index exactly once
        assert (counts == 1).all()
    elif drop_last:  # disjoint, n % r indices left out
        assert counts.max() <= 1 and counts.sum() == n - n % r
    else:  # every index at least once, r - n % r repeats (more when n < r)
        assert counts.min() >= 1 and counts.sum() == r * -(-n // r)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_shards_disjoint_cover_every_epoch(r):
    n = 12 * r
    seen = []
    for epoch in range(4):
        shards = []
        for k in range(r):
            s = DistributedSampler(range(n), num_replicas=r, rank=k, seed=7)
            s.set_epoch(epoch)
            shards.append(list(s))
        flat = sorted(i for sh in shards for i in sh)
        assert flat == list(range(n)), epoch
        assert all(len(sh) == n // r for sh in shards)
        seen.append(shards[0])
    assert len({tuple(s) for s in seen}) == 4  # each epoch a new order


def test_set_epoch_and_seed_define_the_order():
    a = DistributedSampler(range(50), num_replicas=2, rank=1, seed=5)
    b = DistributedSampler(range(50), num_replicas=2, rank=1, seed=5)
    assert list(a) == list(b) and list(a) == list(a)  # deterministic, repeatable
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and a.epoch == 1
    c = DistributedSampler(range(50), num_replicas=2, rank=1, seed=6)
    assert list(a) == list(c)  # the permutation's seed is seed + epoch (documented)
    perm = np.random.default_rng(6).permutation(50)
    assert list(a) == perm[1::2].tolist()


def test_bad_arguments():
    with pytest.raises(ValueError, match="invalid rank 2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="invalid rank -1"):
        DistributedSampler(range(4), num_replicas=2, rank=-1)
    with pytest.raises(ValueError, match="num_replicas must be a positive int"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    import kiln.distributed as dist

    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="not initialized"):
            DistributedSampler(range(4))


def test_dataloader_with_sampler():
    x = kiln.arange(23)
    ds = TensorDataset(x, x * 2)
    seen = []
    for k in range(3):
        s = DistributedSampler(ds, num_replicas=3, rank=k, shuffle=True, seed=1)
        s.set_epoch(2)
        loader = DataLoader(ds, batch_size=4, sampler=s)
        assert len(loader) == 2  # 8 samples each: ceil(23 / 3)
        batches = list(loader)
        xs = np.concatenate([b[0].numpy() for b in batches])
        assert (np.concatenate([b[1].numpy() for b in batches]) == 2 * xs).all()
        assert xs.tolist() == list(s)
        seen += xs.tolist()
    assert sorted(set(seen)) == list(range(23)) and len(seen) == 24
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, batch_size=4, shuffle=True, sampler=s)
