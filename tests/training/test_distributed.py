"""Global batches under DDP (run.batch_semantics=global), on the CPU with gloo and two processes.

Two processes that each hold half of a global batch must compute the contrastive losses over the
whole batch, and after DDP's gradient averaging train exactly as one process on that batch.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import svllreid
from svllreid.data.samplers import RandomBatchSampler
from svllreid.models.pretrained import build_clip
from svllreid.training.tasks import ContrastiveTask, ImageStageTask, PromptStageTask, Stage2Losses

WORLD = 2
NUM_IDS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stage2_setup() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A tiny ViT (no BatchNorm) whose vision projector is a plain linear map, so that every process's
    projections are exactly the single-process rows; only the NT-Xent term is weighted."""
    torch.manual_seed(0)
    model = svllreid.create_model("svll-tiny-vit", NUM_IDS, image_size=(32, 16), vis_ssl_head=True, ssl_hidden_dim=8)
    model.vis_projector = nn.Linear(128, 16)
    model.train().prepare_stage(2)
    gen = torch.Generator().manual_seed(1)
    batch = {  # P = 4 identities × K = 2, identity-major as the P×K sampler lays it out
        "image": torch.randn(8, 3, 32, 16, generator=gen),
        "views": torch.randn(8, 2, 3, 32, 16, generator=gen),
        "pid": torch.arange(8) // 2,
    }
    return model, batch


def stage2_task(model: nn.Module, global_batch: bool, exclude_same_id: bool) -> ImageStageTask:
    text = torch.randn(NUM_IDS, 64, generator=torch.Generator().manual_seed(2))
    losses = Stage2Losses(
        id_weight=0.0, triplet_weight=0.0, i2t_weight=0.0, vis_ssl_weight=1.0, ssl_exclude_same_id=exclude_same_id
    )
    return ImageStageTask(model, text, losses, global_batch=global_batch)


def stage1_setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = svllreid.create_model("svll-tiny-vit", NUM_IDS, image_size=(32, 16), lang_ssl_head=True, ssl_hidden_dim=32)
    model.train().prepare_stage(1)
    gen = torch.Generator().manual_seed(3)
    return model, torch.randn(24, 64, generator=gen), torch.arange(24) % NUM_IDS


def stage1_task(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, global_batch: bool) -> PromptStageTask:
    # Masking probability 0 makes both prompt views the prompt itself: the loss is deterministic.
    return PromptStageTask(
        model,
        features,
        labels,
        lang_ssl_weight=0.8,
        prompt_mask="element",
        prompt_mask_prob=0.0,
        global_batch=global_batch,
    )


def pretrain_setup() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The tiny CLIP and a batch of 8 (image, tokens) pairs."""
    torch.manual_seed(0)
    clip, _ = build_clip("svll-tiny-vit")
    clip.train()
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(1, 400, (8, 77), generator=gen)
    tokens[:, 0] = 49406
    for row, end in enumerate(range(5, 13)):
        tokens[row, end], tokens[row, end + 1 :] = 49407, 0
    return clip, {"image": torch.randn(8, 3, 64, 32, generator=gen), "tokens": tokens}


def step(
    task: nn.Module, batch: dict[str, torch.Tensor], wrap: bool
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One forward and backward (through DDP when ``wrap``): the loss terms and the gradients."""
    module = DistributedDataParallel(task) if wrap else task
    terms = module(batch)
    sum(terms.values()).backward()
    grads = {name: p.grad.clone() for name, p in task.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in terms.items()}, grads


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    results = {}
    share = slice(rank * 4, (rank + 1) * 4)  # this process's P/W = 2 identities × K = 2
    for global_batch in (True, False):
        for exclude in (False, True):
            model, batch = stage2_setup()
            mine = {key: value[share] for key, value in batch.items()}
            results[("stage2", global_batch, exclude)] = step(stage2_task(model, global_batch, exclude), mine, True)
        model, features, labels = stage1_setup()
        task = stage1_task(model, features, labels, global_batch)
        first = next(task.batches(epoch=1, batch_size=12, seed=5, rank=rank, world_size=WORLD))
        results[("stage1", global_batch)] = (*step(task, first, True), first["pids"])
        clip, batch = pretrain_setup()
        mine = {key: value[share] for key, value in batch.items()}
        results[("pretrain", global_batch)] = step(ContrastiveTask(clip, rank, WORLD, global_batch), mine, True)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(ddp_launch) -> list[dict]:
    """What each process of the folder's DDP launch (tests/training/conftest.py) measured with :func:`_worker`."""
    return [torch.load(ddp_launch.steps / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys() and got
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("exclude_same_id", [False, True])
def test_gathered_nt_xent_trains_as_one_process_on_the_global_batch(ranks, exclude_same_id):
    model, batch = stage2_setup()
    terms, grads = step(stage2_task(model, True, exclude_same_id), batch, wrap=False)
    for rank in ranks:
        got_terms, got_grads = rank[("stage2", True, exclude_same_id)]
        assert got_terms["vis_ssl"] == pytest.approx(terms["vis_ssl"], rel=1e-5)
        assert_same(got_grads, grads)  # DDP-averaged gradients = the single-process gradient
    # Per process, each NT-Xent sees only its own half: neither the loss nor the gradient of one process.
    local = [rank[("stage2", False, exclude_same_id)][0]["vis_ssl"] for rank in ranks]
    assert all(abs(value - terms["vis_ssl"]) > 1e-3 for value in local)


@pytest.mark.slow
def test_stage1_global_batch_trains_as_one_process(ranks):
    """The two slices of a global stage-1 batch are one process's batch; the image-text losses (gathered)
    and the language self-supervision (over the global batch's identities) equal one process's."""
    model, features, labels = stage1_setup()
    task = stage1_task(model, features, labels, True)
    batch = next(task.batches(epoch=1, batch_size=12, seed=5))
    assert torch.equal(torch.cat([rank[("stage1", True)][2] for rank in ranks]), batch["pids"])
    terms, grads = step(task, batch, wrap=False)
    assert set(terms) == {"i2t", "t2i", "lang_ssl"}
    for rank in ranks:
        got_terms, got_grads, _ = rank[("stage1", True)]
        for name, value in terms.items():
            assert got_terms[name] == pytest.approx(value, rel=1e-5), name
        assert_same(got_grads, grads)
    # Per process: each takes a whole batch of 12 from its own half of the features.
    assert all(len(rank[("stage1", False)][2]) == 12 for rank in ranks)


def test_uneven_global_batches_are_refused_with_the_fix():
    from svllreid.config import load_config
    from svllreid.distributed import DistInfo
    from svllreid.training.run import check_batch_semantics

    two = DistInfo(rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"stage1.batch_size=63 is the global batch .* use a multiple of 2, or run\."):
        check_batch_semantics(load_config(None, ["stage1.batch_size=63"]), two)
    with pytest.raises(ValueError, match=r"stage2.ids_per_batch=5 is the global batch .* 1/2 of its identities"):
        check_batch_semantics(load_config(None, ["stage2.ids_per_batch=5"]), two)
    check_batch_semantics(load_config(None, ["stage2.ids_per_batch=5", "run.batch_semantics=per_process"]), two)
    check_batch_semantics(load_config(None, ["stage2.ids_per_batch=5"]), DistInfo())  # one process: any size
    model, features, labels = stage1_setup()
    with pytest.raises(ValueError, match=r"stage1\.batch_size=7 is the global batch"):
        next(stage1_task(model, features, labels, True).batches(1, 7, 0, rank=0, world_size=2))


@pytest.mark.slow
def test_pretraining_gathers_the_global_batch_and_trains_as_one_process(ranks):
    """CLIP's contrastive loss over the gathered features of both processes equals one process's loss on
    the whole batch, and so do the DDP-averaged gradients; per process, each loss sees only its half."""
    clip, batch = pretrain_setup()
    terms, grads = step(ContrastiveTask(clip), batch, wrap=False)
    for rank in ranks:
        got_terms, got_grads = rank[("pretrain", True)]
        assert got_terms["contrastive"] == pytest.approx(terms["contrastive"], rel=1e-5)
        assert_same(got_grads, grads)
    local = [rank[("pretrain", False)][0]["contrastive"] for rank in ranks]
    assert all(abs(value - terms["contrastive"]) > 1e-3 for value in local)


def test_random_batch_sampler_shares_global_batches():
    one = list(RandomBatchSampler(20, 8, seed=3))
    shares = [list(RandomBatchSampler(20, 8, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(one) == 2 and all(len(s) == 2 for s in shares)
    for step_index, batch in enumerate(one):
        assert shares[0][step_index] + shares[1][step_index] == batch  # the two halves are that batch
    per_process = [list(RandomBatchSampler(20, 4, seed=3, rank=r, world_size=2, global_batch=False)) for r in range(2)]
    first, second = ({i for batch in share for i in batch} for share in per_process)
    assert not first & second  # disjoint shares
    sampler = RandomBatchSampler(20, 8, seed=3)
    sampler.set_epoch(2)
    assert list(sampler) != one  # another epoch, another order
    with pytest.raises(ValueError, match=r"pretrain\.batch_size=7 is the global batch"):
        RandomBatchSampler(20, 7, world_size=2)
    with pytest.raises(ValueError, match=r"Lower pretrain\.batch_size"):
        RandomBatchSampler(5, 8)
