"""Pure functions behind the losses: average precision and its relaxations on score matrices, and the
distance-based losses on embeddings.

Score-matrix conventions. ``scores`` is (N, M): row n holds query n's similarity to M retrieval items,
higher meaning closer. ``relevance`` is (N, M) with entries 0/1 (bool, int or float): the positives of each
query. Every AP function returns one value per query row. A row without a positive has no AP: its entry is
0 and :func:`has_positive` marks it, and :func:`mean_ap_loss` leaves such rows out of the mean, so no NaN
can reach a loss. Float16/bfloat16 scores are promoted to float32; float64 stays float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Smooth-AP works on (query, positive) pairs in chunks of at most this many (pair, item) sigmoids.
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _prepare(scores: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    """Checked ``scores`` (at least float32) and ``relevance`` as 0/1 of the same dtype."""
    if scores.dim() != 2 or scores.shape != relevance.shape:
        raise ValueError(f"scores and relevance must be matrices of one shape (queries x items); got scores "
                         f"{tuple(scores.shape)} and relevance {tuple(relevance.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    if relevance.dtype != torch.bool and bool(((relevance != 0) & (relevance != 1)).any()):
        raise ValueError("relevance must hold only 0 and 1 (or be a bool tensor)")
    scores = at_least_float32(scores)
    return scores, relevance.to(scores.dtype)


def has_positive(relevance: Tensor) -> Tensor:
    """(N,) bool: the query rows that have at least one positive, i.e. that have an AP."""
    return (relevance != 0).any(dim=1)


def mean_ap_loss(ap: Tensor, relevance: Tensor, weights: Tensor | None = None) -> Tensor:
    """``1 - mean AP`` over the queries that have a positive, weighted by ``weights`` (N,) when given.

    When no query has a positive there is nothing to rank: the loss is 0, still attached to the graph
    so that ``backward`` works and gives zero gradients.
    """
    valid = has_positive(relevance)
    if not bool(valid.any()):
        return ap.sum() * 0
    weights = torch.ones_like(ap) if weights is None else weights.to(ap.dtype)
    weights = torch.where(valid, weights, torch.zeros_like(weights))
    return 1 - (weights * ap).sum() / weights.sum()


def average_precision(scores: Tensor, relevance: Tensor) -> Tensor:
    """Exact AP per query row: the mean, over the positives, of the precision at each positive's rank.

    Not differentiable; the reference the relaxations are measured against. Tied scores are ordered
    against the positives (negatives first), so a tie never raises AP.
    """
    scores, relevance = _prepare(scores, relevance)
    with torch.no_grad():
        negatives_first = torch.argsort(relevance, dim=1, stable=True)
        by_score = torch.argsort(scores.gather(1, negatives_first), dim=1, descending=True, stable=True)
        ranked = relevance.gather(1, negatives_first.gather(1, by_score))
        positions = torch.arange(1, scores.shape[1] + 1, device=scores.device, dtype=scores.dtype)
        precision_at_hits = ranked * ranked.cumsum(dim=1) / positions
        return precision_at_hits.sum(dim=1) / relevance.sum(dim=1).clamp_min(1)


# ---------------------------------------------------------------------------------------------------------------
# Quantized AP (Revaud et al., ICCV 2019) and its tie-aware form (He et al., CVPR 2018)
# ---------------------------------------------------------------------------------------------------------------

def check_bins(num_bins: int, min_score: float, max_score: float) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    if not min_score < max_score:
        raise ValueError(f"the score range must have min_score < max_score, got ({min_score}, {max_score})")


def soft_histograms(scores: Tensor, relevance: Tensor, num_bins: int, min_score: float,
                    max_score: float) -> tuple[Tensor, Tensor]:
    """Per query, the soft number of items and of positives in each bin: two (N, num_bins) tensors.

    Bin m is centred at ``max_score - m * delta`` with ``delta = (max_score - min_score) / (num_bins - 1)``,
    so bin 0 holds the best scores. A score's weight on bin m is the triangle ``max(0, 1 - |s - centre_m| /
    delta)``, except that bin 0 saturates at 1 above ``max_score`` and the last bin at 1 below ``min_score``:
    every score, in range or not, spreads exactly one unit over at most two adjacent bins. That is why the
    histograms are built by scattering two weights per score, in O(N*M) memory, never as (N, bins, M).
    """
    check_bins(num_bins, min_score, max_score)
    scores, relevance = _prepare(scores, relevance)
    return _SoftHistograms.apply(scores, relevance, num_bins, float(min_score), float(max_score))


def _two_bins(scores: Tensor, num_bins: int, min_score: float, max_score: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per score: the flat index ``row * num_bins + m`` of the first of its two bins m, m + 1, its weight on
    bin m + 1, and whether it lies in [min_score, max_score] (where the weights move with it)."""
    delta = (max_score - min_score) / (num_bins - 1)
    position = (max_score - scores).div_(delta)
    in_range = (position >= 0) & (position <= num_bins - 1)
    position.clamp_(0, num_bins - 1)
    lower = position.floor().clamp_(max=num_bins - 2)
    # int32 indices halve the index memory wherever the histograms are small enough
    index_dtype = torch.int32 if scores.shape[0] * num_bins < 2**31 else torch.int64
    flat = lower.to(index_dtype)
    flat += torch.arange(0, scores.shape[0] * num_bins, num_bins, dtype=index_dtype, device=scores.device
                         ).unsqueeze(1)
    return flat, position.sub_(lower), in_range


class _SoftHistograms(torch.autograd.Function):
    """Scatters each score's two weights; the backward gathers, recomputing the bins rather than keeping
    them, so that only the inputs stay in memory between the passes."""

    @staticmethod
    def forward(ctx, scores, relevance, num_bins, min_score, max_score):
        flat, upper_weight, _ = _two_bins(scores, num_bins, min_score, max_score)
        flat = flat.view(-1)
        lower_weight = 1 - upper_weight
        counts = scores.new_zeros(scores.shape[0] * num_bins)
        positives = torch.zeros_like(counts)
        # the upper bin's flat index is flat + 1: add into the views shifted by one
        counts.index_add_(0, flat, lower_weight.view(-1))
        counts[1:].index_add_(0, flat, upper_weight.view(-1))
        positives.index_add_(0, flat, lower_weight.mul_(relevance).view(-1))
        positives[1:].index_add_(0, flat, upper_weight.mul_(relevance).view(-1))
        ctx.save_for_backward(scores, relevance)
        ctx.bins = (num_bins, min_score, max_score)
        return counts.view(-1, num_bins), positives.view(-1, num_bins)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_counts, grad_positives):
        scores, relevance = ctx.saved_tensors
        num_bins, min_score, max_score = ctx.bins
        flat, _, in_range = _two_bins(scores, num_bins, min_score, max_score)
        flat = flat.view(-1)
        grad_counts, grad_positives = grad_counts.reshape(-1), grad_positives.reshape(-1)

        def upper_minus_lower(grad):
            return (grad[1:].index_select(0, flat) - grad.index_select(0, flat)).view_as(scores)

        # the upper weight grows by 1/delta as the score falls: d(upper weight)/ds = -1/delta
        grad = upper_minus_lower(grad_positives).mul_(relevance).add_(upper_minus_lower(grad_counts))
        delta = (max_score - min_score) / (num_bins - 1)
        return grad.mul_(in_range).div_(-delta), None, None, None, None


def quantized_ap(scores: Tensor, relevance: Tensor, num_bins: int, min_score: float, max_score: float) -> Tensor:
    """AP_Q per query row: ``sum_m precision_m * recall_increment_m`` over the soft bins of
    :func:`soft_histograms`, where precision_m is the positives' share of everything in bins 0..m and the
    recall increment is bin m's share of the query's positives.
    """
    counts, positives = soft_histograms(scores, relevance, num_bins, min_score, max_score)
    cumulative = counts.cumsum(dim=1)
    precision = positives.cumsum(dim=1) / cumulative.clamp_min(torch.finfo(cumulative.dtype).tiny)
    recall_increment = positives / positives.sum(dim=1, keepdim=True).clamp_min(1)
    return (precision * recall_increment).sum(dim=1)


#: How :func:`tie_aware_quantized_ap` evaluates the harmonic sums ``sum_{t=a+1}^{b} 1/t`` of a bin.
HARMONIC_SUMS = ("log", "exact")


def tie_aware_quantized_ap(scores: Tensor, relevance: Tensor, num_bins: int, min_score: float, max_score: float,
                           simplified: bool = False, harmonic: str = "log") -> Tensor:
    """AP_T per query row: the AP expected when the items sharing a bin are ranked in uniformly random order.

    With c items and c+ positives in a bin, C and C+ of each before it, N+ positives in all, He et al.'s
    expectation for that bin is ``(c+/c) * sum_{t=C+1}^{C+c} (C+ + 1 + (t-C-1) rho) / t`` with
    ``rho = (c+ - 1)/(c - 1)``, summed over bins and divided by N+. Written out, a bin gives
    ``(c+/c) * (c rho + (C+ + 1 - rho (C + 1)) * h)`` with the harmonic sum ``h = sum_{t=C+1}^{C+c} 1/t``.
    With soft counts rho is taken as ``max(c+ - 1, 0) / (c - 1)``: a bin holding less than one positive has
    no "other positives" to spread.

    ``harmonic`` chooses how h is evaluated:

    - ``"log"`` (default): ``h = log((C + c + 1) / (C + 1))``, the approximation of the listwise AP authors'
      released code (naver/deep-image-retrieval, ``dirtorch/loss.py``, ``TAPLoss.forward``), which produced
      the paper's AP_T figure (Revaud et al. 2019, Fig. 5). It is not the exact expectation: a lone item
      alone in the first bin gets ``log 2`` instead of 1, and AP_T differs from the exact form by a few
      hundredths of AP on small random batches (less as bins fill up).
    - ``"exact"``: ``h = psi(C + c + 1) - psi(C + 1)`` (digamma), exact for whole counts and smooth for the
      soft counts of :func:`soft_histograms`; AP_T is then the mean AP over the orders of the tied items.

    ``simplified=True`` instead takes, for every positive of a bin, the expected precision at the bin's
    middle position: ``sum_bins c+ (2 C+ + c+ + 1) / (2 C + c + 1) / N+`` (``harmonic`` is then unused).

    Returns a (N,) tensor; raises ValueError for an unknown ``harmonic``.
    """
    if harmonic not in HARMONIC_SUMS:
        raise ValueError(f"harmonic must be one of {HARMONIC_SUMS}, got {harmonic!r}")
    counts, positives = soft_histograms(scores, relevance, num_bins, min_score, max_score)
    num_positives = positives.sum(dim=1).clamp_min(1)
    before = F.pad(counts.cumsum(dim=1)[:, :-1], (1, 0))
    positives_before = F.pad(positives.cumsum(dim=1)[:, :-1], (1, 0))
    if simplified:
        middle_precision = (2 * positives_before + positives + 1) / (2 * before + counts + 1)
        return (positives * middle_precision).sum(dim=1) / num_positives
    dtype = counts.dtype
    # differences of large counts' logs or digammas cancel badly in float32; the (N, bins) tensors are small
    c, c_pos, before, positives_before = (t.double() for t in (counts, positives, before, positives_before))
    if harmonic == "log":
        expected_hits = _expected_hits_log(c, c_pos, before, positives_before)
    else:
        expected_hits = _expected_hits_exact(c, c_pos, before, positives_before)
    per_bin = c_pos / c.clamp_min(torch.finfo(c.dtype).tiny) * expected_hits
    return per_bin.sum(dim=1).to(dtype) / num_positives


def _expected_hits_log(c: Tensor, c_pos: Tensor, before: Tensor, positives_before: Tensor) -> Tensor:
    """``c rho + (C+ + 1 - rho (C + 1)) * log((C + c + 1) / (C + 1))`` per bin."""
    # c+ <= c, so c+ > 1 implies c > 1: rho is finite, and 0 wherever c+ <= 1
    has_others = c_pos > 1
    rho = torch.where(has_others, (c_pos - 1) / torch.where(has_others, c - 1, torch.ones_like(c)),
                      torch.zeros_like(c))
    return c * rho + (positives_before + 1 - rho * (before + 1)) * torch.log1p(c / (before + 1))


def _expected_hits_exact(c: Tensor, c_pos: Tensor, before: Tensor, positives_before: Tensor) -> Tensor:
    """The same with the exact harmonic sum ``psi(C + c + 1) - psi(C + 1)``."""
    harmonic = torch.digamma(before + c + 1) - torch.digamma(before + 1)
    # rho * (c - (C+1) * harmonic) = (c+ - 1) * slope, where slope = (c - (C+1) * harmonic) / (c - 1) tends to
    # 1 - (C+1) psi'(C+2) as c -> 1 because the numerator vanishes there.
    near_one = (c - 1).abs() < 1e-6
    safe_gap = torch.where(near_one, torch.ones_like(c), c - 1)
    slope = torch.where(near_one, 1 - (before + 1) * torch.polygamma(1, before + 2),
                        (c - (before + 1) * harmonic) / safe_gap)
    return (positives_before + 1) * harmonic + (c_pos - 1).clamp_min(0) * slope


# ---------------------------------------------------------------------------------------------------------------
# Smooth-AP (Brown et al., ECCV 2020)
# ---------------------------------------------------------------------------------------------------------------

def _pair_sigmoids(scores: Tensor, queries: Tensor, items: Tensor, temperature: float) -> Tensor:
    """For (query q, positive i) pairs, (pairs, M): ``sigmoid((s_qj - s_qi) / temperature)``, 0 at j = i."""
    sigmoids = scores.index_select(0, queries)
    sigmoids.sub_(scores[queries, items].unsqueeze(1)).div_(temperature).sigmoid_()
    return sigmoids.scatter_(1, items.unsqueeze(1), 0.0)


def _rowwise_dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


class _SmoothAP(torch.autograd.Function):
    """Smooth-AP over the (query, positive) pairs only, in chunks, with the gradient worked out by hand so
    that nothing larger than a chunk is ever kept: O(pairs * M) work, O(N * M + chunk) memory."""

    @staticmethod
    def forward(ctx, scores, relevance, temperature, chunk_elements):
        queries, items = relevance.nonzero(as_tuple=True)
        num_positives = relevance.sum(dim=1)
        rank_all = scores.new_empty(queries.shape[0])
        rank_positive = scores.new_empty(queries.shape[0])
        chunk = max(1, chunk_elements // max(1, scores.shape[1]))
        for part in _chunks(queries.shape[0], chunk):
            sigmoids = _pair_sigmoids(scores, queries[part], items[part], temperature)
            rank_all[part] = 1 + sigmoids.sum(dim=1)
            rank_positive[part] = 1 + _rowwise_dot(sigmoids, relevance.index_select(0, queries[part]))
        ap = scores.new_zeros(scores.shape[0]).index_add_(0, queries, rank_positive / rank_all)
        ctx.save_for_backward(scores, relevance, queries, items, rank_all, rank_positive, num_positives)
        ctx.temperature, ctx.chunk = temperature, chunk
        return ap / num_positives.clamp_min(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ap):
        scores, relevance, queries, items, rank_all, rank_positive, num_positives = ctx.saved_tensors
        grad = torch.zeros_like(scores)
        pair_weight = (grad_ap / num_positives.clamp_min(1)).index_select(0, queries) / ctx.temperature
        for part in _chunks(queries.shape[0], ctx.chunk):
            q, i = queries[part], items[part]
            sigmoids = _pair_sigmoids(scores, q, i, ctx.temperature)
            slopes = torch.addcmul(sigmoids, sigmoids, sigmoids, value=-1)  # sigmoid' = s (1 - s)
            # d(R+/R)/d sigmoid_j = rel_j / R - R+ / R^2 ; d sigmoid_j / d s_qj = -d sigmoid_j / d s_qi
            all_ = rank_all[part].unsqueeze(1)
            d_items = relevance.index_select(0, q).div_(all_).sub_(rank_positive[part].unsqueeze(1) / all_.square())
            d_items.mul_(slopes).mul_(pair_weight[part].unsqueeze(1))
            grad.index_add_(0, q, d_items)
            grad.index_put_((q, i), -d_items.sum(dim=1), accumulate=True)
        return grad, None, None, None


def smooth_ap(scores: Tensor, relevance: Tensor, temperature: float,
              chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
    """Smooth-AP per query row: ``mean over positives i of R+(i) / R(i)`` with
    ``R(i) = 1 + sum_{j != i} sigmoid((s_j - s_i) / temperature)`` over all items and ``R+(i)`` the same sum
    over the positives only.

    Ranks are needed for the positives only, so the cost is O(N * |P| * M) work and, with the chunking over
    (query, positive) pairs (``chunk_elements`` sigmoids at a time), O(N * M) memory: never (N, M, M).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    scores, relevance = _prepare(scores, relevance)
    return _SmoothAP.apply(scores, relevance, float(temperature), int(chunk_elements))


# ---------------------------------------------------------------------------------------------------------------
# AP through blackbox differentiation of ranks (Rolinek et al., CVPR 2020; Vlastelica et al., ICLR 2020)
# ---------------------------------------------------------------------------------------------------------------

def descending_ranks(scores: Tensor) -> Tensor:
    """Rank of every entry within its row, 1 for the highest score (ties in column order)."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    positions = torch.arange(1, scores.shape[1] + 1, device=scores.device, dtype=scores.dtype)
    return torch.empty_like(scores).scatter_(1, order, positions.expand_as(scores))


class _BlackBoxRanks(torch.autograd.Function):
    """Ranks forward; backward, the gradient of the piecewise-linear interpolation of Vlastelica et al.:
    ``(rank(s + lambda * dL/drank) - rank(s)) / lambda`` (ranking is the solver ``argmin_pi <s, pi>``)."""

    @staticmethod
    def forward(ctx, scores, interpolation):
        ranks = descending_ranks(scores)
        ctx.save_for_backward(scores, ranks)
        ctx.interpolation = interpolation
        return ranks

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ranks):
        scores, ranks = ctx.saved_tensors
        perturbed = descending_ranks(scores + ctx.interpolation * grad_ranks)
        return (perturbed - ranks) / ctx.interpolation, None


def blackbox_ap(scores: Tensor, relevance: Tensor, interpolation: float, margin: float = 0.0) -> Tensor:
    """AP per query row from exact ranks, ``mean over positives i of rank+(i) / rank(i)``, whose gradient is
    the blackbox-differentiation one with strength ``interpolation`` (lambda). ``margin`` (alpha) lowers
    positives and raises negatives by alpha/2 before ranking, so a positive must beat a negative by alpha.
    With ``margin=0`` the value equals :func:`average_precision` wherever scores are distinct.
    """
    if not interpolation > 0:
        raise ValueError(f"interpolation (lambda) must be > 0, got {interpolation!r}")
    scores, relevance = _prepare(scores, relevance)
    shifted = scores + margin * (0.5 - relevance)
    rank_all = _BlackBoxRanks.apply(shifted, float(interpolation))
    only_positives = torch.where(relevance > 0, shifted, torch.full_like(shifted, float("-inf")))
    rank_positive = _BlackBoxRanks.apply(only_positives, float(interpolation))
    precision = torch.where(relevance > 0, rank_positive / rank_all, torch.zeros_like(rank_all))
    return precision.sum(dim=1) / relevance.sum(dim=1).clamp_min(1)


# ---------------------------------------------------------------------------------------------------------------
# Embedding batches: scores, relevance and distance-based losses
# ---------------------------------------------------------------------------------------------------------------

def check_batch(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (batch, dim), got shape {tuple(embeddings.shape)}")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must be (batch,) = ({embeddings.shape[0]},), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be integers, got {labels.dtype}")


def same_label(labels: Tensor) -> Tensor:
    """(B, B) bool: ``labels[a] == labels[b]`` (the diagonal included)."""
    return labels.unsqueeze(0) == labels.unsqueeze(1)


def without_diagonal(matrix: Tensor) -> Tensor:
    """(B, B) -> (B, B-1): each row without its own column."""
    n = matrix.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[keep].view(n, n - 1)


def batch_ranking(embeddings: Tensor, labels: Tensor, include_self: bool = False) -> tuple[Tensor, Tensor]:
    """Every batch item as a query against the batch: ``scores = E E^T`` and ``relevance = same label``,
    (B, B) with ``include_self`` and otherwise (B, B-1), the query itself removed from its retrieval set."""
    check_batch(embeddings, labels)
    embeddings = at_least_float32(embeddings)
    scores, relevance = embeddings @ embeddings.T, same_label(labels)
    if include_self:
        return scores, relevance
    return without_diagonal(scores), without_diagonal(relevance)


def inverse_class_frequency(labels: Tensor) -> Tensor:
    """(B,) weights ``1 / (number of batch items of that item's class)``: used as query weights, every class
    in the batch then counts as much as any other, whatever its number of items."""
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].double()


def pairwise_distances(embeddings: Tensor) -> Tensor:
    """(B, B) Euclidean distances. Squared distances are clamped at 1e-12 before the square root so that
    coinciding embeddings (the diagonal, duplicates) give finite gradients."""
    embeddings = at_least_float32(embeddings)
    squared_norms = embeddings.square().sum(dim=1)
    squared = squared_norms.unsqueeze(0) + squared_norms.unsqueeze(1) - 2 * embeddings @ embeddings.T
    return squared.clamp_min(1e-12).sqrt()


def _off_diagonal(n: int, device) -> Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def contrastive_loss(distances: Tensor, same: Tensor, margin: float) -> Tensor:
    """Mean over ordered pairs a != b of ``d^2 / 2`` for same-class pairs and ``max(0, margin - d)^2 / 2``
    otherwise (Hadsell et al. 2006, as used for retrieval by Radenovic et al.)."""
    pair_losses = torch.where(same, distances.square(), (margin - distances).clamp_min(0).square()) / 2
    off_diagonal = _off_diagonal(distances.shape[0], distances.device)
    if not bool(off_diagonal.any()):
        return distances.sum() * 0
    return pair_losses[off_diagonal].mean()


def _hardest_negative(distances: Tensor, same: Tensor) -> tuple[Tensor, Tensor]:
    """Per anchor, the distance to its closest other-class item, and whether it has one."""
    hardest = torch.where(same, torch.full_like(distances, float("inf")), distances).amin(dim=1)
    return hardest, (~same).any(dim=1)


def hard_negative_triplet_loss(distances: Tensor, same: Tensor, margin: float) -> Tensor:
    """Mean over (anchor a, positive p != a) pairs of ``max(0, d(a,p) - d(a,n*) + margin)``, n* the anchor's
    hardest (closest) negative in the batch; anchors without a negative take no part."""
    hardest_negative, has_negative = _hardest_negative(distances, same)
    pairs = same & _off_diagonal(distances.shape[0], distances.device) & has_negative.unsqueeze(1)
    if not bool(pairs.any()):
        return distances.sum() * 0
    violations = (distances - hardest_negative.unsqueeze(1) + margin).clamp_min(0)
    return violations[pairs].mean()


def batch_hard_triplet_loss(distances: Tensor, same: Tensor, margin: float) -> Tensor:
    """Mean over anchors of ``max(0, max_p d(a,p) - min_n d(a,n) + margin)`` (Hermans et al. 2017): the
    farthest positive p != a against the closest negative; anchors lacking either take no part."""
    positives = same & _off_diagonal(distances.shape[0], distances.device)
    hardest_positive = torch.where(positives, distances, torch.full_like(distances, float("-inf"))).amax(dim=1)
    hardest_negative, has_negative = _hardest_negative(distances, same)
    anchors = positives.any(dim=1) & has_negative
    if not bool(anchors.any()):
        return distances.sum() * 0
    return (hardest_positive - hardest_negative + margin)[anchors].clamp_min(0).mean()


def proxy_nca_loss(embeddings: Tensor, labels: Tensor, proxies: Tensor) -> Tensor:
    """ProxyNCA (Movshovitz-Attias et al., ICCV 2017): with x and the proxies L2-normalised and d the squared
    Euclidean distance, the mean over the batch of ``-log(exp(-d(x, p_y)) / sum_{z != y} exp(-d(x, p_z)))``;
    the true class's proxy is left out of the denominator, as in the paper."""
    x = F.normalize(at_least_float32(embeddings), dim=1)
    p = F.normalize(proxies.to(x.dtype), dim=1)
    distances = (2 - 2 * x @ p.T).clamp_min(0)
    own = F.one_hot(labels, p.shape[0]).bool()
    others = torch.where(own, torch.full_like(distances, float("-inf")), -distances).logsumexp(dim=1)
    return (distances[own] + others).mean()
