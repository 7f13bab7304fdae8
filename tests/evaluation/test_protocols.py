import numpy as np
import pytest
import torch

from retrieval.data.split import GALLERY, QUERY, Split
from retrieval.evaluation import PROTOCOLS, retrieval_metrics
from retrieval.evaluation.protocols import one_per_identity


def at_degrees(*angles) -> torch.Tensor:
    """Unit vectors in the plane: similarity falls with the angle between two items."""
    radians = np.deg2rad(angles)
    return torch.tensor(np.stack([np.cos(radians), np.sin(radians)], 1), dtype=torch.float32)


def split_of(labels, roles=None, groups=None, extra=None) -> Split:
    return Split("test", labels=labels, paths=[f"{i}.jpg" for i in range(len(labels))], roles=roles,
                 groups=groups, extra=extra or {})


def test_registry_names_every_protocol():
    assert PROTOCOLS.names() == ["faces", "leave_one_out", "query_gallery", "revisited", "vehicleid"]


def test_leave_one_out_is_the_retrieval_metrics_of_the_split(clustered, reference_metrics):
    x, labels = clustered(seed=30)
    got = PROTOCOLS.get("leave_one_out")(torch.as_tensor(x), split_of(labels), ks=(1, 10))
    assert got == pytest.approx(reference_metrics(x, labels, ks=(1, 10)), abs=1e-12)


def test_inshop_query_gallery_known_answer():
    # Gallery: item 0 at 0 deg, item 1 at 10 deg, item 2 at 90 deg. Labels are the parser's codes of item ids.
    # Query (item 0) at 8 deg sees item 1 first, its own item second; the other two queries hit at once.
    features = at_degrees(8, 0, 10, 85, 90, 9)
    roles = [QUERY, GALLERY, GALLERY, QUERY, GALLERY, QUERY]
    labels = [0, 0, 1, 2, 2, 1]
    got = PROTOCOLS.get("query_gallery")(features, split_of(labels, roles))
    assert list(got)[:6] == ["recall@1", "recall@10", "recall@20", "recall@30", "recall@40", "recall@50"]
    assert got["recall@1"] == pytest.approx(2 / 3)
    assert got["recall@10"] == got["recall@50"] == 1.0
    assert got["map"] == pytest.approx((1 / 2 + 1 + 1) / 3)


def test_query_gallery_needs_roles():
    with pytest.raises(ValueError, match="no query/gallery roles"):
        PROTOCOLS.get("query_gallery")(at_degrees(0, 1), split_of([0, 0]))
    with pytest.raises(ValueError, match="found \\['train'\\]"):
        PROTOCOLS.get("query_gallery")(at_degrees(0, 1), split_of([0, 0], ["train", QUERY]))


def test_vehicleid_all_against_all_known_answer():
    # id 0 at 0 and 5 deg, id 1 at 3 and 40 deg: each image's nearest neighbour is of the other id, but a
    # same-id image is within the first 5. id 2 (90, 92 deg) is always right. Recall@1 = 2/6, Recall@5 = 1.
    features = at_degrees(0, 5, 3, 40, 90, 92)
    got = PROTOCOLS.get("vehicleid")(features, split_of([0, 0, 1, 1, 2, 2]))
    assert got["recall@1"] == pytest.approx(2 / 6)
    assert got["recall@5"] == 1.0


def test_one_per_identity_draws_one_gallery_image_per_identity():
    labels = np.array([3, 3, 3, 8, 8, 5, 1, 1, 1, 1])
    query, gallery = one_per_identity(labels, seed=0)
    assert sorted(labels[gallery]) == [1, 3, 5, 8]
    assert sorted(np.concatenate([query, gallery])) == list(range(len(labels)))
    draws = {tuple(one_per_identity(labels, seed)[1]) for seed in range(20)}
    assert tuple(gallery) == tuple(one_per_identity(labels, seed=0)[1]) and len(draws) > 1


def test_vehicleid_reidentification_is_labelled_apart(clustered, reference_metrics):
    x, labels = clustered(seed=31)
    got = PROTOCOLS.get("vehicleid")(torch.as_tensor(x), split_of(labels), gallery="one_per_identity", seed=4)
    query, gallery = one_per_identity(labels, seed=4)
    expected = reference_metrics(x[query], labels[query], x[gallery], labels[gallery], ks=(1, 5))
    assert got == pytest.approx({f"reid_{name}": value for name, value in expected.items()}, abs=1e-12)
    # With exact copies inside each identity, every draw gives the same known answer.
    twins = at_degrees(0, 0, 30, 30, 60, 60)
    for seed in range(3):
        got = PROTOCOLS.get("vehicleid")(twins, split_of([0, 0, 1, 1, 2, 2]), gallery="one_per_identity", seed=seed)
        assert got["reid_recall@1"] == 1.0
    with pytest.raises(ValueError, match="one_per_identity"):
        PROTOCOLS.get("vehicleid")(twins, split_of([0, 0, 1, 1, 2, 2]), gallery="random")


def test_faces_without_groups_is_leave_one_out_map(clustered, reference_metrics):
    x, labels = clustered(seed=32)
    got = PROTOCOLS.get("faces")(torch.as_tensor(x), split_of(labels))
    assert got["map"] == pytest.approx(reference_metrics(x, labels, ks=(1,))["map"], abs=1e-12)


def test_faces_averages_groups_and_drops_small_identities(reference_metrics):
    rng = np.random.default_rng(0)
    # Identity 0: 5 instances, identity 1: 6 instances (one a 3-frame video), identity 2: 4 instances (dropped).
    instance_label = np.array([0] * 5 + [1] * 6 + [2] * 4)
    frames = np.array([1] * 5 + [3] + [1] * 5 + [1] * 4)
    item_group = np.repeat(np.arange(len(instance_label)), frames)
    item_features = rng.normal(size=(len(item_group), 6))
    item_features /= np.linalg.norm(item_features, axis=1, keepdims=True)
    split = split_of(instance_label[item_group], groups=item_group + 100)
    got = PROTOCOLS.get("faces")(torch.as_tensor(item_features, dtype=torch.float32), split, min_instances=5)
    means = np.stack([item_features[item_group == g].mean(0) for g in range(len(instance_label))])
    kept = instance_label < 2
    expected = reference_metrics(means[kept], instance_label[kept], ks=(1,))
    assert got == pytest.approx(expected, abs=1e-6)


def test_faces_group_with_two_identities_is_an_error():
    split = split_of([0, 1, 1], groups=[7, 7, 8])
    with pytest.raises(ValueError, match="group 7 holds items of different labels"):
        PROTOCOLS.get("faces")(at_degrees(0, 1, 2), split)


def test_revisited_protocol_flat_keys_known_answer():
    # One query (first item) at 0 deg; database items at increasing angles rank in database order 0..5.
    features = at_degrees(0, 5, 10, 15, 20, 25, 30)
    gnd = [{"easy": np.array([1, 4]), "hard": np.array([3]), "junk": np.array([0, 5]), "bbx": np.zeros(4)}]
    split = split_of([-1] * 7, [QUERY] + [GALLERY] * 6, extra={"gnd": gnd})
    got = PROTOCOLS.get("revisited")(features, split)
    assert set(got) == {f"{s}/{m}" for s in ("easy", "medium", "hard") for m in ("map", "mp@1", "mp@5", "mp@10")}
    # The same ranking as the hand-worked case of test_evaluate_revisited.py.
    assert got["medium/map"] == pytest.approx(((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2 + (2 / 3 + 3 / 4) / 2) / 3)
    assert got["hard/map"] == pytest.approx(1 / 4)
    assert got["easy/mp@5"] == pytest.approx(2 / 3)


def test_feature_rows_must_match_the_split():
    with pytest.raises(ValueError, match="3 items but 2 feature rows"):
        PROTOCOLS.get("leave_one_out")(at_degrees(0, 1), split_of([0, 0, 1]))


def test_protocols_agree_with_retrieval_metrics_on_the_same_items(clustered):
    x, labels = clustered(seed=33)
    roles = np.where(np.arange(len(labels)) % 3 == 0, QUERY, GALLERY)
    got = PROTOCOLS.get("query_gallery")(torch.as_tensor(x), split_of(labels, roles), ks=(1, 2))
    q, g = roles == QUERY, roles == GALLERY
    assert got == retrieval_metrics(x[q], labels[q], x[g], labels[g], ks=(1, 2))
