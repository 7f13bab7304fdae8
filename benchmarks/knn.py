"""Exact Recall@K and full-ranking mAP at SOP test size: our blocked torch path against faiss.

    python -m retrieval bench knn [--quick] [--block-size N] [--chunk 4096]

Data: 60,502 random 512-d unit embeddings in 11,316 classes of about 5 (the SOP test set's sizes),
each a class centre plus noise, so that Recall@1..1000 are far from 0 and 1. In one process:

- Recall@{1, 10, 100, 1000}, leave-one-out: faiss ``IndexFlatIP`` (k = 1001 neighbours, the query
  dropped) against ours (``recall_at_k``: counting, per query, the items ranked above its best
  positive) and our top-1000 lists (``knn``); the recalls must be identical. The 2 cores are shared
  with other jobs whose load changes from minute to minute, so times are paired: the same searches,
  chunk by chunk of queries against all items, the methods alternating within each chunk, summed.
- Full-ranking mAP (and the other metrics) with ``retrieval_metrics``. faiss has no bounded-memory
  full ranking, so its mAP is a k = N search on a sample of queries, timed and scaled to all
  queries (labelled), and its per-query APs are compared with ours on that sample.
- The similarity GEMM alone, torch.mm against numpy's BLAS (which our CPU path uses).
- Time and peak memory at several sizes, fitted (a n^2 + b n, and c + d n) and extrapolated to
  the VGGFace2 test size (about 169k); extrapolated rows say so.

Times are taken first; peaks afterwards, in separate runs with glibc told to map every block of
64 KiB or more afresh (so the resident-set high-water mark sees it; this slows allocation-heavy
code, hence no timing then). A peak is the rise above what was allocated before the call (the float32
embeddings themselves, 4 bytes x 512 per item, are already there; the float64 grid copy our path makes,
8 bytes x 512 per item, is counted). Results go to
results/benchmarks/knn.{csv,md} (``--quick``: a small run, to knn-quick.{csv,md}).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import nnls

from benchmarks.common import RESULTS, environment_note, make_cpu_peaks_visible, peak_memory_bytes
from retrieval.evaluation.knn import DEFAULT_BLOCK_SIZE, exact_features, knn, matmul_into
from retrieval.evaluation.metrics import per_query_metrics, recall_at_k
from retrieval.io import write_table

# Dataset sizes from docs/sources.md (SOP test split; VGGFace2 test, "about 169k").
SOP_TEST_IMAGES, SOP_TEST_CLASSES = 60_502, 11_316
VGGFACE2_TEST_IMAGES = 169_000
DIM = 512
KS = (1, 10, 100, 1000)
NOISE = 2.6  # noise norm against unit class centres: Recall@1 about 0.3, Recall@1000 just under 1
COLUMNS = ["task", "method", "items", "seconds", "vs_faiss", "cpu_seconds", "cpu_vs_faiss", "peak_mib",
           *[f"recall@{k}" for k in KS], "map", "how"]


def embeddings(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` unit vectors in classes of about five (SOP's ratio), each a class centre plus noise."""
    classes = max(1, round(n * SOP_TEST_CLASSES / SOP_TEST_IMAGES))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(classes).repeat_interleave(n // classes),
                        torch.randint(0, classes, (n - classes * (n // classes),), generator=generator)])
    labels = labels[torch.randperm(n, generator=generator)]
    centres = torch.nn.functional.normalize(torch.randn(classes, DIM, generator=generator), dim=1)
    noise = torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator), dim=1)
    return torch.nn.functional.normalize(centres[labels] + NOISE * noise, dim=1), labels


@dataclass
class Measured:
    seconds: float  # wall clock
    cpu_seconds: float  # user + system time of every thread of the process: steadier on shared cores
    peak: float = float("nan")  # bytes above the resident set before the call
    result: object = None


def timed(fn) -> Measured:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return Measured(time.perf_counter() - wall, time.process_time() - cpu, result=result)


def peak_of(fn) -> tuple[float, object]:
    """(peak extra bytes, result) of one call; run after ``make_cpu_peaks_visible``."""
    out = {}
    peak = peak_memory_bytes(lambda: out.setdefault("result", fn()))
    return peak, out["result"]


def median(runs: list[Measured]) -> Measured:
    """Median wall and CPU time."""
    return Measured(float(np.median([r.seconds for r in runs])), float(np.median([r.cpu_seconds for r in runs])))


def flat_index(x: torch.Tensor):
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x.numpy())
    return index


def without_self(ids: np.ndarray, first: int) -> np.ndarray:
    """Each row of a leave-one-out answer without the query's own id (or its last id if absent)."""
    own = ids == np.arange(first, first + len(ids))[:, None]
    own[~own.any(1), -1] = True
    return ids[~own].reshape(len(ids), ids.shape[1] - 1)


def recalls_from_lists(neighbours: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    hits = labels[neighbours] == labels[:, None]
    return {f"recall@{k}": float(hits[:, :k].any(1).mean()) for k in KS}


def faiss_recall(x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Plain faiss usage: search k + 1 neighbours, drop the query itself, read the labels."""
    _, ids = flat_index(x).search(x.numpy(), max(KS) + 1)
    return recalls_from_lists(without_self(ids, 0), labels.numpy())


def our_knn_recall(x: torch.Tensor, labels: torch.Tensor, block_size: int) -> dict[str, float]:
    return recalls_from_lists(knn(x, max(KS), block_size=block_size).indices.numpy(), labels.numpy())


def faiss_average_precision(x: torch.Tensor, labels: torch.Tensor, queries: int) -> np.ndarray:
    """Per-query AP over faiss's full ranking (k = N) for the first ``queries`` items, 64 at a time."""
    index, labels = flat_index(x), labels.numpy()
    aps = []
    for start in range(0, queries, 64):
        stop = min(start + 64, queries)
        _, ids = index.search(x[start:stop].numpy(), len(x))
        relevant = labels[without_self(ids, start)] == labels[start:stop, None]
        hits = np.cumsum(relevant, axis=1)
        precision = hits / np.arange(1, relevant.shape[1] + 1)
        aps.append((precision * relevant).sum(1) / relevant.sum(1))
    return np.concatenate(aps)


def nearest_tie(x: torch.Tensor, labels: torch.Tensor, query: int) -> float:
    """Smallest float64 gap between a positive's score and a non-positive's, for one leave-one-out query."""
    scores = (x.double() @ x[query].double()).numpy()
    others = np.ones(len(x), dtype=bool)
    others[query] = False
    positive = (labels.numpy() == int(labels[query])) & others
    negatives = np.sort(scores[~positive & others])
    place = np.clip(np.searchsorted(negatives, scores[positive]), 1, len(negatives) - 1)
    return float(np.minimum(np.abs(negatives[place] - scores[positive]),
                            np.abs(negatives[place - 1] - scores[positive])).min())


def row(task: str, method: str, items: int, measured: Measured, faiss: Measured | None = None,
        metrics: dict | None = None, how: str = "measured") -> dict:
    metrics = metrics if metrics is not None else (measured.result if isinstance(measured.result, dict) else {})
    return {"task": task, "method": method, "items": items, "seconds": round(measured.seconds, 2),
            "vs_faiss": None if faiss is None else round(measured.seconds / faiss.seconds, 3),
            "cpu_seconds": round(measured.cpu_seconds, 2),
            "cpu_vs_faiss": None if faiss is None else round(measured.cpu_seconds / faiss.cpu_seconds, 3),
            "peak_mib": None if np.isnan(measured.peak) else round(measured.peak / 2**20, 1),
            **{name: round(value, 6) for name, value in metrics.items() if name in COLUMNS}, "how": how}


def extrapolate(sizes: list[int], values: list[float], target: int, quadratic: bool) -> float:
    """Non-negative least-squares fit of a n^2 + b n (``quadratic``) or c + d n, evaluated at ``target``."""
    n = np.asarray(sizes, dtype=np.float64)
    scale = n.max()  # keeps the columns comparable
    design = np.stack([(n / scale) ** 2, n / scale] if quadratic else [np.ones_like(n), n / scale], 1)
    coefficients, _ = nnls(design, np.asarray(values, dtype=np.float64))
    t = target / scale
    return float(np.array([t**2, t] if quadratic else [1.0, t]) @ coefficients)


def paired_timing(x, labels, block_size: int, chunk: int) -> dict[str, Measured]:
    """Wall and CPU time of each method's search, summed over chunks of queries against every item;
    within a chunk the methods run back to back, in an order that alternates from chunk to chunk."""
    index = flat_index(x)
    searches = {"faiss": lambda q, _: index.search(q.numpy(), max(KS) + 1),
                "ours": lambda q, q_labels: recall_at_k(q, q_labels, x, labels, ks=KS, block_size=block_size),
                "lists": lambda q, _: knn(q, max(KS), x, block_size=block_size)}
    totals = {name: [0.0, 0.0] for name in searches}
    for number, start in enumerate(range(0, len(x), chunk)):
        query, query_labels = x[start:start + chunk], labels[start:start + chunk]
        order = list(searches) if number % 2 == 0 else list(reversed(searches))
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            searches[name](query, query_labels)
            totals[name][0] += time.perf_counter() - wall
            totals[name][1] += time.process_time() - cpu
    return {name: Measured(wall, cpu, float("nan")) for name, (wall, cpu) in totals.items()}


def gemm_rows(x: torch.Tensor, repeats: int = 3) -> list[dict]:
    """One block of similarities (4,096 queries against everything): float32 with torch.mm and numpy's BLAS,
    and the float64 product of grid rows that our path computes (exact, see retrieval.evaluation.knn)."""
    query, out = x[:4096], torch.zeros(min(4096, len(x)), len(x))
    grid, grid_out = exact_features(x), out.double()
    runs = {"torch.mm float32 (MKL)": lambda: torch.mm(query, x.T, out=out),
            "numpy matmul float32 (OpenBLAS)": lambda: np.matmul(query.numpy(), x.numpy().T, out=out.numpy()),
            "numpy matmul float64 on the grid (OpenBLAS), used by ours":
                lambda: matmul_into(grid_out, grid[:4096], grid)}
    measured = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            measured[name].append(timed(fn))
    found = {name: median(times) for name, times in measured.items()}
    baseline = found["torch.mm float32 (MKL)"]
    how = (f"median of {repeats}, interleaved; {len(query):,} x {len(x):,} x {x.shape[1]} GEMM; vs_faiss columns "
           "hold the ratio to torch.mm float32 here")
    return [row("similarity block", name, len(x), times, baseline, metrics={}, how=how)
            for name, times in found.items()]


SCALED = {"faiss": lambda x, labels, block_size: faiss_recall(x, labels),
          "recall": lambda x, labels, block_size: recall_at_k(x, labels, ks=KS, block_size=block_size),
          "metrics": lambda x, labels, block_size: per_query_metrics(x, labels, ks=KS, block_size=block_size)}
SCALED_NAMES = {"faiss": "faiss IndexFlatIP (k=1001)", "recall": "ours: recall_at_k (counting)",
                "metrics": "ours: retrieval_metrics (all metrics)"}


def scaling_times(sizes: list[int], block_size: int) -> dict[str, list[Measured]]:
    """One leave-one-out run of each method at each size (the data of the full size is the benchmark's)."""
    times = {name: [] for name in SCALED}
    for n in sizes:
        x, labels = embeddings(n, seed=0 if n == sizes[-1] else n)
        for name, fn in SCALED.items():
            times[name].append(timed(lambda: fn(x, labels, block_size)))  # noqa: B023 (called at once)
    return times


def scaling_peaks(sizes: list[int], block_size: int) -> dict[str, list[float]]:
    peaks = {name: [] for name in SCALED}
    for n in sizes:
        x, labels = embeddings(n, seed=n)
        for name, fn in SCALED.items():
            peaks[name].append(peak_of(lambda: fn(x, labels, block_size))[0])  # noqa: B023 (called at once)
    return peaks


def scaling_rows(sizes: list[int], points: dict[str, list[Measured]]) -> list[dict]:
    """The measured points (single leave-one-out runs), then the fit extrapolated to the VGGFace2 test size."""
    rows = [row("scaling", SCALED_NAMES[name], n, point, points["faiss"][i], metrics={})
            for name in SCALED for i, (n, point) in enumerate(zip(sizes, points[name]))]
    how = f"extrapolated: a n^2 + b n (time), c + d n (peak) fitted on n = {', '.join(f'{n:,}' for n in sizes)}"
    at_target = {name: Measured(extrapolate(sizes, [p.seconds for p in found], VGGFACE2_TEST_IMAGES, True),
                                extrapolate(sizes, [p.cpu_seconds for p in found], VGGFACE2_TEST_IMAGES, True),
                                extrapolate(sizes, [p.peak for p in found], VGGFACE2_TEST_IMAGES, False))
                 for name, found in points.items()}
    return rows + [row("scaling", SCALED_NAMES[name], VGGFACE2_TEST_IMAGES, at_target[name], at_target["faiss"],
                       metrics={}, how=how) for name in SCALED]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="retrieval bench knn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6,000 items instead of 60,502 (about a minute)")
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                        help="similarities held at once by our path (default %(default)s)")
    parser.add_argument("--chunk", type=int, default=4096, help="queries per chunk of the paired timing")
    args = parser.parse_args(argv)
    n = 6_000 if args.quick else SOP_TEST_IMAGES
    sample = 256 if args.quick else 1024
    smaller = [n // 8, n // 4, n // 2]
    x, labels = embeddings(n)
    # Times first, with the allocator as usual.
    paired = paired_timing(x, labels, args.block_size, args.chunk)
    faiss_map = timed(lambda: faiss_average_precision(x, labels, sample))
    gemm = gemm_rows(x)
    times = scaling_times([*smaller, n], args.block_size)
    metrics = times["metrics"][-1]
    # Then peaks, with every block of 64 KiB or more mapped afresh (which slows allocation-heavy code, so
    # no time is taken from here on); these runs also give the recalls.
    make_cpu_peaks_visible()
    peaks, recalls = {}, {}
    for name, fn in (("faiss", lambda: faiss_recall(x, labels)),
                     ("ours", lambda: recall_at_k(x, labels, ks=KS, block_size=args.block_size)),
                     ("lists", lambda: our_knn_recall(x, labels, args.block_size))):
        peaks[name], recalls[name] = peak_of(fn)
    metrics.peak = peak_of(lambda: per_query_metrics(x, labels, ks=KS, block_size=args.block_size))[0]
    for name in paired:
        paired[name].peak = peaks[name]
    small_peaks = scaling_peaks(smaller, args.block_size)
    full_peaks = {"faiss": peaks["faiss"], "recall": peaks["ours"], "metrics": metrics.peak}
    points = {name: [Measured(t.seconds, t.cpu_seconds, peak)
                     for t, peak in zip(times[name], [*small_peaks[name], full_peaks[name]])] for name in SCALED}

    scale = n / sample
    faiss_map = Measured(faiss_map.seconds * scale, faiss_map.cpu_seconds * scale, result=faiss_map.result)
    differences = np.abs(metrics.result.values["map"][:sample].numpy() - faiss_map.result)
    differing = np.flatnonzero(differences > 1e-12)
    ties = max((nearest_tie(x, labels, int(q)) for q in differing), default=0.0)
    chunks = -(-n // args.chunk)
    paired_how = (f"time: {chunks} chunks of {args.chunk:,} queries against all {n:,} items (self included), "
                  "methods alternating within each chunk, summed; recalls and peak: one leave-one-out run")
    names = {"faiss": SCALED_NAMES["faiss"], "ours": SCALED_NAMES["recall"], "lists": "ours: knn top-1000 lists"}
    rows = [row("recall@K", method, n, paired[name], paired["faiss"], metrics=recalls[name], how=paired_how)
            for name, method in names.items()]
    rows += [row("full-ranking mAP", "faiss IndexFlatIP (k=N), sample", n, faiss_map, faiss_map,
                 metrics={"map": float(faiss_map.result.mean())},
                 how=f"{sample:,} queries timed and scaled x{scale:.1f} (time only); map of those queries"),
             row("full-ranking mAP", SCALED_NAMES["metrics"], n, metrics, faiss_map, metrics=metrics.result.means(),
                 how="one leave-one-out run")]
    rows += gemm + scaling_rows([*smaller, n], points)
    identical = recalls["faiss"] == recalls["ours"] == recalls["lists"]
    verdict = (
        f"Recall@K identical to faiss's: {'yes' if identical else 'NO'}. Ours (recall_at_k) took "
        f"{paired['ours'].seconds / paired['faiss'].seconds:.2f}x faiss's wall time "
        f"({paired['ours'].cpu_seconds / paired['faiss'].cpu_seconds:.2f}x its CPU time; target at most 1.2x) with "
        f"a peak of {peaks['ours'] / 2**30:.2f} GiB (target at most 3 GB; faiss's {peaks['faiss'] / 2**30:.2f} GiB "
        f"holds its neighbour lists). Full-ranking metrics: {metrics.seconds:.1f} s, peak "
        f"{metrics.peak / 2**30:.2f} GiB. Per-query AP, ours against faiss's full ranking, on "
        f"{len(differences):,} sampled queries: largest difference {differences.max():.1e}" + (
            f"; {len(differing)} queries differ by more than 1e-12, and in each a positive's float64 score lies "
            f"within {ties:.1e} of a non-positive's (faiss's float32 similarities carry rounding errors of about "
            "1e-7 that depend on its blocking and threads, while ours are exact on the grid, so such near-ties "
            "may order differently)." if len(differing) else "."))
    note = (f"{environment_note()} Our block size: {args.block_size:,} similarities. {n:,} random {DIM}-d unit "
            f"embeddings in classes of about 5 (centre + noise of norm {NOISE}). The machine's 2 cores are shared "
            f"with other jobs, so wall times carry noise; CPU times are steadier. {verdict}")
    write_table(RESULTS / ("knn-quick" if args.quick else "knn"), rows, COLUMNS,
                "Exact kNN and full-ranking metrics: ours against faiss", note)
    print(note)


if __name__ == "__main__":
    main()
