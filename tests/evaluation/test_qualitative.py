"""Qualitative retrievals: rankings, marks and APs against brute force in float64; query choice; drawing."""
import numpy as np
import pytest
from PIL import Image

from retrieval.data.split import Split
from retrieval.evaluation.protocols import PROTOCOLS
from retrieval.evaluation.qualitative import (
    COLOURS,
    CORRECT,
    JUNK,
    PAD,
    QUERY,
    WRONG,
    Cell,
    cell_origin,
    choose_queries,
    draw_grid,
    rank_split,
)
from retrieval.evaluation.revisited import evaluate_revisited


def unit_rows(n, d=6, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def naive_ap(relevant_in_order) -> float:
    hits = np.flatnonzero(relevant_in_order)
    return float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))) if len(hits) else float("nan")


def test_leave_one_out_matches_brute_force():
    features, labels = unit_rows(40), np.arange(40) % 5
    labels[39] = 99  # a query without any relevant item has no AP
    split = Split("s", labels=labels, images=[np.zeros((2, 2, 3), np.uint8)] * 40)
    found = rank_split(features.astype(np.float32), split, "leave_one_out", k=7)
    scores = features @ features.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :-1]
    np.testing.assert_array_equal(found.queries, np.arange(40))
    np.testing.assert_array_equal(found.retrieved, order[:, :7])
    np.testing.assert_allclose(found.scores, np.take_along_axis(scores, order[:, :7], 1), atol=1e-5)
    np.testing.assert_array_equal(found.marks, np.where(labels[order[:, :7]] == labels[:, None], CORRECT, WRONG))
    expected = [naive_ap(labels[order[q]] == labels[q]) for q in range(40)]
    np.testing.assert_allclose(found.ap, expected, atol=1e-6)
    assert np.isnan(found.ap[39])


def test_query_gallery_ranks_gallery_items_only():
    features, labels = unit_rows(30, seed=1), np.arange(30) % 3
    roles = np.array(["query"] * 6 + ["gallery"] * 24)
    split = Split("s", labels=labels, images=[np.zeros((2, 2, 3), np.uint8)] * 30, roles=roles)
    found = rank_split(features.astype(np.float32), split, "query_gallery", k=5)
    order = 6 + np.argsort(-(features[:6] @ features[6:].T), axis=1, kind="stable")
    np.testing.assert_array_equal(found.retrieved, order[:, :5])
    np.testing.assert_allclose(found.ap, [naive_ap(labels[order[q]] == labels[q]) for q in range(6)], atol=1e-6)


def revisited_split():
    features = unit_rows(23, seed=2).astype(np.float32)
    rng = np.random.default_rng(3)
    gnd = []
    for _ in range(3):
        picked = rng.permutation(20)
        gnd.append({"easy": picked[:3].tolist(), "hard": picked[3:5].tolist(), "junk": picked[5:9].tolist()})
    roles = np.array(["query"] * 3 + ["gallery"] * 20)
    split = Split("r", labels=np.zeros(23), images=[np.zeros((2, 2, 3), np.uint8)] * 23, roles=roles,
                  extra={"gnd": gnd})
    return features, split, gnd


@pytest.mark.parametrize("setup", ["medium", "hard"])
def test_revisited_marks_junk_and_ap_leaves_it_out(setup):
    features, split, gnd = revisited_split()
    found = rank_split(features, split, "revisited", k=20, setup=setup)
    scores = features[:3].astype(np.float64) @ features[3:].T.astype(np.float64)
    for q, entry in enumerate(gnd):
        order = np.argsort(-scores[q], kind="stable")
        np.testing.assert_array_equal(found.retrieved[q], 3 + order)
        positives = set(entry["easy"] + entry["hard"]) if setup == "medium" else set(entry["hard"])
        junk = set(entry["junk"]) | (set(entry["easy"]) if setup == "hard" else set())
        expected = [CORRECT if i in positives else JUNK if i in junk else WRONG for i in order]
        np.testing.assert_array_equal(found.marks[q], expected)
        alone = evaluate_revisited(scores[q:q + 1], [entry], kappas=(1,))[setup]["map"]
        assert found.ap[q] == pytest.approx(alone, abs=1e-9)


def test_revisited_figure_ranks_as_the_protocol_with_alpha_qe():
    """The figure's AP per query, averaged, is the protocol's mAP, α-QE included (the config's protocol args)."""
    features, split, _ = revisited_split()
    args = {"qe_k": 3, "qe_alpha": 3.0}
    found = rank_split(features, split, "revisited", k=20, protocol_args={**args, "kappas": [1]})
    plain = rank_split(features, split, "revisited", k=20)
    assert not np.array_equal(found.retrieved, plain.retrieved)  # the expansion changes the ranking here
    protocol = PROTOCOLS.get("revisited")(features, split, kappas=(1,), **args)
    assert float(np.mean(found.ap)) == pytest.approx(protocol["medium/map"], abs=1e-12)


def test_choose_queries():
    features, labels = unit_rows(30, seed=4), np.arange(30) % 4
    split = Split("s", labels=labels, images=[np.zeros((2, 2, 3), np.uint8)] * 30)
    every = rank_split(features.astype(np.float32), split, k=3)
    by_ap = np.argsort(-every.ap, kind="stable")
    np.testing.assert_array_equal(choose_queries(every, 4, "best").queries, by_ap[:4])
    np.testing.assert_array_equal(choose_queries(every, 4, "worst").queries, np.argsort(every.ap, kind="stable")[:4])
    both = choose_queries(every, 4, "best_worst")
    np.testing.assert_array_equal(both.queries, [*by_ap[:2], *np.argsort(every.ap, kind="stable")[:2]])
    drawn = choose_queries(every, 5, "random", seed=7)
    np.testing.assert_array_equal(drawn.queries, choose_queries(every, 5, "random", seed=7).queries)
    assert len(set(drawn.queries)) == 5 and list(drawn.queries) == sorted(drawn.queries)
    with pytest.raises(ValueError, match="unknown query selection"):
        choose_queries(every, 2, "median")


def test_grid_frames_and_junk_fading():
    white, black = Image.new("RGB", (4, 4), "white"), Image.new("RGB", (4, 4), "black")
    rows = [[Cell(white, "q", QUERY), Cell(black, "ok", CORRECT), Cell(black, "junk", JUNK), Cell(black, "no", WRONG)]]
    grid = np.asarray(draw_grid(rows, thumb=20))
    for column, mark in enumerate([QUERY, CORRECT, JUNK, WRONG]):
        x, y = cell_origin(0, column, 20)
        assert tuple(grid[y + 1, x + 1]) == COLOURS[mark]
        centre = grid[y + PAD + 10, x + PAD + 10]
        if mark == JUNK:  # black blended 60% towards the junk grey
            np.testing.assert_allclose(centre, np.array(COLOURS[JUNK]) * 0.6, atol=1)
        else:
            assert tuple(centre) == ((255, 255, 255) if mark == QUERY else (0, 0, 0))
