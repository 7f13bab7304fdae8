"""Class-balanced and random batch samplers: structure, coverage, determinism, sharding, resumption."""
from collections import Counter

import numpy as np
import pytest

from retrieval.data.samplers import ClassBalancedBatchSampler, RandomBatchSampler

LABELS = np.repeat(np.arange(12), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])


def indices(batch):
    return [i for i, _ in batch]


def test_batches_are_p_classes_of_k_contiguous_samples():
    sampler = ClassBalancedBatchSampler(LABELS, samples_per_class=4, batch_size=16, seed=3)
    for batch in sampler:
        labels = LABELS[indices(batch)]
        blocks = labels.reshape(4, 4)
        assert (blocks == blocks[:, :1]).all(), "each block of K is one class"
        assert len(set(blocks[:, 0])) == 4, "P distinct classes"


def test_single_image_classes_are_never_sampled_and_drop_policy_excludes_small_classes():
    repeat = ClassBalancedBatchSampler(LABELS, 4, 16, seed=0, batches_per_epoch=50)
    seen = {LABELS[i] for b in repeat for i in indices(b)}
    assert 0 not in seen and seen == set(range(1, 12))
    drop = ClassBalancedBatchSampler(LABELS, 4, 16, seed=0, batches_per_epoch=50, small_classes="drop")
    assert {LABELS[i] for b in drop for i in indices(b)} == set(range(3, 12))


def test_small_classes_repeat_their_images_to_fill_k():
    sampler = ClassBalancedBatchSampler(LABELS, 4, 16, seed=0, batches_per_epoch=30)
    for batch in sampler:
        for block in np.asarray(indices(batch)).reshape(4, 4):
            size = int((LABELS == LABELS[block[0]]).sum())
            assert len(set(block)) == min(size, 4)


def test_every_image_of_a_large_class_is_served_before_any_repeats():
    labels = np.repeat(np.arange(4), 8)
    sampler = ClassBalancedBatchSampler(labels, samples_per_class=4, batch_size=8, seed=1, batches_per_epoch=8)
    served = Counter(i for b in sampler for i in indices(b))
    assert set(served) == set(range(32)) and set(served.values()) == {2}


def test_same_seed_same_batches_and_epochs_differ():
    a = ClassBalancedBatchSampler(LABELS, 4, 16, seed=5)
    b = ClassBalancedBatchSampler(LABELS, 4, 16, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_resuming_mid_epoch_gives_the_remaining_batches():
    sampler = ClassBalancedBatchSampler(LABELS, 4, 16, seed=2)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start_batch=2)
    assert list(sampler) == full[2:]


@pytest.mark.parametrize("world_size", [2, 4])
def test_shards_concatenate_to_the_single_process_global_batch(world_size):
    single = list(ClassBalancedBatchSampler(LABELS, 4, 16, seed=7))
    shards = [list(ClassBalancedBatchSampler(LABELS, 4, 16, seed=7, rank=r, world_size=world_size))
              for r in range(world_size)]
    for n, batch in enumerate(single):
        assert sum((shard[n] for shard in shards), []) == batch


def test_random_sampler_is_a_permutation_per_epoch():
    sampler = RandomBatchSampler(50, batch_size=10, seed=0)
    served = [i for b in sampler for i in indices(b)]
    assert sorted(served) == list(range(50))


def test_impossible_requests_are_clear_errors():
    with pytest.raises(ValueError, match="not a multiple"):
        ClassBalancedBatchSampler(LABELS, 4, 18)
    with pytest.raises(ValueError, match="only 11 classes"):
        ClassBalancedBatchSampler(LABELS, 2, 24)
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        ClassBalancedBatchSampler(LABELS, 4, 16, world_size=3)
