"""P×K sampler invariants: batch structure, determinism, epoch length, DDP shares."""

from __future__ import annotations

from collections import Counter

import pytest

from svllreid.data.samplers import PKSampler


def make_pids(counts: dict[int, int]) -> list[int]:
    return [pid for pid, n in counts.items() for _ in range(n)]


COUNTS = {pid: 1 + (pid * 7) % 9 for pid in range(40)}  # 1..9 images per identity


def test_every_batch_is_p_identities_times_k_images():
    pids = make_pids(COUNTS)
    sampler = PKSampler(pids, ids_per_batch=8, images_per_id=4, seed=3)
    batches = list(sampler)
    assert batches and len(batches) == len(sampler)
    for batch in batches:
        assert len(batch) == 32
        per_id = Counter(pids[i] for i in batch)
        assert len(per_id) == 8 and set(per_id.values()) == {4}


def test_small_identities_are_sampled_with_replacement():
    pids = make_pids({0: 1, 1: 2, 2: 5, 3: 8})
    sampler = PKSampler(pids, ids_per_batch=2, images_per_id=4, seed=0)
    seen = Counter(pids[i] for batch in sampler for i in batch)
    # Identities 0 and 1 (fewer than K images) appear as one chunk of K repeated indices each.
    assert seen[0] == 4 and seen[1] == 4
    assert all(seen[pid] % 4 == 0 for pid in seen)


def test_epoch_ends_when_fewer_than_p_identities_remain():
    pids = make_pids({0: 8, 1: 4, 2: 4})  # chunks: 2 + 1 + 1
    sampler = PKSampler(pids, ids_per_batch=2, images_per_id=4, seed=0)
    # Two batches at most (4 chunks / 2); the last chunk of id 0 can be left when it is alone.
    assert len(sampler) == 2
    used = [i for batch in sampler for i in batch]
    assert len(used) == len(set(used)) == 16


def test_determinism_and_epoch_dependence():
    pids = make_pids(COUNTS)
    a, b = (
        PKSampler(pids, ids_per_batch=4, images_per_id=4, seed=11),
        PKSampler(pids, ids_per_batch=4, images_per_id=4, seed=11),
    )
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(PKSampler(pids, ids_per_batch=4, images_per_id=4, seed=12)) != list(
        PKSampler(pids, ids_per_batch=4, images_per_id=4, seed=11)
    )


def test_state_dict_round_trip():
    pids = make_pids(COUNTS)
    a = PKSampler(pids, ids_per_batch=4, images_per_id=4, seed=5)
    a.set_epoch(7)
    b = PKSampler(pids, ids_per_batch=4, images_per_id=4, seed=0)
    b.load_state_dict(a.state_dict())
    assert list(a) == list(b)


@pytest.mark.parametrize("world_size", [2, 3])
def test_per_process_batches_come_from_disjoint_identities_with_equal_lengths(world_size):
    pids = make_pids(COUNTS)
    samplers = [
        PKSampler(pids, ids_per_batch=4, images_per_id=4, seed=2, rank=r, world_size=world_size, global_batch=False)
        for r in range(world_size)
    ]
    for epoch in (0, 1):
        ids_per_rank = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            ids_per_rank.append({pids[i] for batch in sampler for i in batch})
            assert all(len(batch) == 16 for batch in sampler)  # a whole P×K on every process
        assert len({len(s) for s in samplers}) == 1  # same number of steps on every rank
        for r in range(world_size):
            for q in range(r + 1, world_size):
                assert not ids_per_rank[r] & ids_per_rank[q]
    samplers[0].set_epoch(0)
    first = {pids[i] for batch in samplers[0] for i in batch}
    samplers[0].set_epoch(1)
    assert first != {pids[i] for batch in samplers[0] for i in batch}  # shares change per epoch


@pytest.mark.parametrize("world_size", [2, 4])
def test_global_batches_are_split_so_the_processes_together_see_one_processs_batches(world_size):
    """run.batch_semantics=global: each process takes P/W identities × K of every P×K batch, and the
    W shares of a step, in rank order, are exactly the batch a single process draws."""
    pids = make_pids(COUNTS)
    single = PKSampler(pids, ids_per_batch=8, images_per_id=4, seed=2)
    shares = [
        PKSampler(pids, ids_per_batch=8, images_per_id=4, seed=2, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for epoch in (0, 3):
        for sampler in (single, *shares):
            sampler.set_epoch(epoch)
        assert all(len(s) == len(single) > 0 for s in shares)
        for step, batch in enumerate(single):
            parts = [list(s)[step] for s in shares]
            assert [i for part in parts for i in part] == batch
            for part in parts:
                per_id = Counter(pids[i] for i in part)
                assert len(per_id) == 8 // world_size and set(per_id.values()) == {4}


def test_global_p_must_divide_among_the_processes():
    expected = r"stage2.ids_per_batch=6 is the global batch .* each of the 4 processes takes 1/4 of its identities"
    with pytest.raises(ValueError, match=expected):
        PKSampler(make_pids(COUNTS), ids_per_batch=6, images_per_id=4, rank=0, world_size=4)
    assert (
        len(PKSampler(make_pids(COUNTS), ids_per_batch=6, images_per_id=4, rank=0, world_size=4, global_batch=False))
        > 0
    )


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(ValueError, match=r"needs at least P=16 identities; the training set has 10\."):
        PKSampler(list(range(10)), ids_per_batch=16, images_per_id=4)
    with pytest.raises(ValueError, match=r"needs at least P=4 identities per process.*has 6 identities for 2"):
        PKSampler(list(range(6)), ids_per_batch=4, images_per_id=2, world_size=2, global_batch=False)
    with pytest.raises(ValueError, match=r"rank 2 is outside 0\.\.1"):
        PKSampler(list(range(10)), ids_per_batch=2, images_per_id=2, rank=2, world_size=2)
