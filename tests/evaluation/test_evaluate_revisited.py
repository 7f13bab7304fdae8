import numpy as np
import pytest

from retrieval.evaluation import evaluate_revisited

# Query A ranks the database 0, 1, ..., 5. Junk 0 lies above every positive and junk 5 below them.
QUERY_A = {"easy": [1, 4], "hard": [3], "junk": [0, 5], "bbx": [0, 0, 10, 10]}
SCORES_A = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
# Worked by hand from the trapezoid rule: AP = sum_j ((j / r_j, or 1 at r_j = 0) + (j + 1) / (r_j + 1)) / 2m,
# r_j the 0-based place of the j-th positive once the ignored images are out.
EXPECTED_A = {
    # ranking 1 2 4 (junk 0, 5 and hard 3 out): positives at 0 and 2
    "easy": {"map": ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2) / 2, "mp@1": 1.0, "mp@5": 2 / 3, "mp@10": 2 / 3},
    # ranking 1 2 3 4: positives at 0, 2, 3; the last positive is 4th, so mP@5 = mP@10 = precision at 4
    "medium": {"map": ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2 + (2 / 3 + 3 / 4) / 2) / 3,
               "mp@1": 1.0, "mp@5": 3 / 4, "mp@10": 3 / 4},
    # ranking 2 3: the positive at 1
    "hard": {"map": (0 + 1 / 2) / 2, "mp@1": 0.0, "mp@5": 1 / 2, "mp@10": 1 / 2},
}


def assert_close(got, expected):
    assert got.keys() == expected.keys()
    for setup in expected:
        assert got[setup] == pytest.approx(expected[setup], abs=1e-12), setup


def test_junk_above_and_below_positives():
    assert_close(evaluate_revisited(np.array([SCORES_A]), [QUERY_A]), EXPECTED_A)


def test_all_junk_query_is_left_out_of_every_mean():
    all_junk = {"easy": [], "hard": [], "junk": [0, 1, 2, 3, 4, 5]}
    got = evaluate_revisited(np.array([SCORES_A, SCORES_A[::-1]]), [QUERY_A, all_junk])
    assert_close(got, EXPECTED_A)


def test_query_without_easy_positives_counts_in_medium_and_hard_only():
    # Ranking 5 4 3 2 1 0; only hard positive 2 at place 3 of the whole ranking (nothing ignored in Hard).
    hard_only = {"easy": [], "hard": [2], "junk": []}
    got = evaluate_revisited(np.array([SCORES_A, SCORES_A[::-1]]), [QUERY_A, hard_only])
    alone = {"map": (0 / 3 + 1 / 4) / 2, "mp@1": 0.0, "mp@5": 1 / 4, "mp@10": 1 / 4}
    assert got["easy"] == pytest.approx(EXPECTED_A["easy"])
    for setup in ("medium", "hard"):
        assert got[setup] == pytest.approx({k: (EXPECTED_A[setup][k] + alone[k]) / 2 for k in alone}), setup


def test_ties_rank_by_database_index():
    # All scores equal: the ranking is 0, 1, 2, 3. Positive 2 sits at place 2, behind non-positives 0 and 1.
    gnd = [{"easy": [2], "hard": [3], "junk": [1]}]
    got = evaluate_revisited(np.full((1, 4), 0.5), gnd)
    # Easy: 1 and 3 ignored -> ranking 0 2: positive at 1. Medium: 1 ignored -> 0 2 3: positives at 1, 2.
    # Hard: 1 and 2 ignored -> 0 3: positive at 1.
    assert got["easy"] == pytest.approx({"map": 1 / 4, "mp@1": 0.0, "mp@5": 1 / 2, "mp@10": 1 / 2})
    assert got["medium"] == pytest.approx({"map": (1 / 4 + (1 / 2 + 2 / 3) / 2) / 2, "mp@1": 0.0,
                                           "mp@5": 2 / 3, "mp@10": 2 / 3})
    assert got["hard"] == got["easy"]


def revisitop_style_map(scores, gnd, kappas):
    """The benchmark's own formulation, independently: places in the full ranking lowered by the number
    of ignored images ranked above (a loop over positives and junk), then the same AP and mP@k."""
    setups = {"easy": (["easy"], ["junk", "hard"]), "medium": (["easy", "hard"], ["junk"]),
              "hard": (["hard"], ["junk", "easy"])}
    out = {}
    for name, (ok_keys, junk_keys) in setups.items():
        aps, prs = [], []
        for row, entry in zip(scores, gnd):
            ok = np.concatenate([entry[k] for k in ok_keys]).astype(int)
            if not len(ok):
                continue
            junk = np.concatenate([entry[k] for k in junk_keys]).astype(int)
            ranking = np.argsort(-row, kind="stable")
            pos = np.flatnonzero(np.isin(ranking, ok))
            junk_places = np.flatnonzero(np.isin(ranking, junk))
            places, skipped, j = [], 0, 0
            for p in pos:
                while j < len(junk_places) and junk_places[j] < p:
                    skipped, j = skipped + 1, j + 1
                places.append(p - skipped)
            ap = 0.0
            for i, r in enumerate(places):
                ap += ((i / r if r else 1.0) + (i + 1) / (r + 1)) / (2 * len(ok))
            aps.append(ap)
            one_based = np.array(places) + 1
            prs.append([(one_based <= min(one_based.max(), k)).sum() / min(one_based.max(), k) for k in kappas])
        out[name] = {"map": np.mean(aps)} | {f"mp@{k}": v for k, v in zip(kappas, np.mean(prs, axis=0))}
    return out


def test_random_cases_match_the_benchmark_formulation():
    rng = np.random.default_rng(0)
    n_queries, n_database = 12, 60
    scores = rng.integers(0, 8, size=(n_queries, n_database)) / 8.0  # coarse: many ties
    gnd = []
    for _ in range(n_queries):
        kinds = rng.choice(4, size=n_database, p=[0.7, 0.1, 0.1, 0.1])  # none, easy, hard, junk
        gnd.append({key: np.flatnonzero(kinds == i + 1) for i, key in enumerate(["easy", "hard", "junk"])})
    gnd[3] = {"easy": [], "hard": [], "junk": np.arange(10)}
    kappas = (1, 3, 5, 10)
    assert_close(evaluate_revisited(scores, gnd, kappas), revisitop_style_map(scores, gnd, kappas))


@pytest.mark.parametrize("scores, gnd, error, message", [
    (np.zeros((2, 3)), [QUERY_A], ValueError, "2 query rows"),
    (np.zeros(3), [QUERY_A], ValueError, "shape"),
    (np.zeros((1, 3)), [{"easy": [5], "hard": [], "junk": []}], ValueError, "outside the database"),
    (np.zeros((1, 3)), [{"easy": [1], "junk": []}], KeyError, "no 'hard'"),
    (np.zeros((1, 3)), [{"easy": [], "hard": [], "junk": [0]}], ValueError, "no query has a positive"),
    (np.full((1, 3), np.nan), [QUERY_A], ValueError, "NaN"),
])
def test_bad_input_is_named(scores, gnd, error, message):
    with pytest.raises(error, match=message):
        evaluate_revisited(scores, gnd)
