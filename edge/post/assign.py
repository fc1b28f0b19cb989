"""Optimal one-to-one assignment (Hungarian method) without scipy.

A frame holds a handful of people, so an exact O(n^3) solver in plain Python is fast enough
(a 10 x 10 matrix takes well under a millisecond) and keeps the tracker free of a heavy dependency.
"""

from __future__ import annotations

import numpy as np


def min_cost_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Row -> column pairs that minimise the summed cost of a (R,C) matrix; min(R,C) pairs.

    Shortest augmenting paths with row/column potentials (Kuhn-Munkres as in Jonker-Volgenant):
    exact, and correct for rectangular matrices, which are solved as their R <= C orientation.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    if cost.size == 0:
        return []
    if not np.isfinite(cost).all():
        raise ValueError("cost must be finite; use a large finite value for forbidden pairs")
    transposed = cost.shape[0] > cost.shape[1]
    a = cost.T if transposed else cost
    n, m = a.shape
    inf = float("inf")
    u = [0.0] * (n + 1)  # row potentials (1-based; index 0 is the virtual start)
    v = [0.0] * (m + 1)  # column potentials
    owner = [0] * (m + 1)  # owner[j] = row matched to column j (0 = free)
    way = [0] * (m + 1)
    rows = a.tolist()
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = owner[j0]
            row = rows[i0 - 1]
            delta, j1 = inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = row[j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the augmenting path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


def match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs that maximise the summed similarity, keeping only pairs with similarity >= threshold.

    A pair below the threshold is worth as much as leaving both sides unmatched (zero), so the
    optimum never trades a good pair for a forbidden one.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.size == 0:
        return []
    gain = np.where(sim >= threshold, sim, 0.0)
    return [(r, c) for r, c in min_cost_assignment(-gain) if sim[r, c] >= threshold]


__all__ = ["min_cost_assignment", "match"]
