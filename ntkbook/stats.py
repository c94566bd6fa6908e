"""How the book decides whether a claim of the paper holds: the one place for it.

Seeds are the unit of replication (n = 3, as the paper). A quantity is summarised by a
t-interval over seeds (:func:`difference`, :func:`mean`); for per-image correctness the test
images are a second, counted source of noise. A claim *holds* when the whole interval lies on
its side of the threshold, *does not hold* when it lies wholly on the other side, and is
*inconclusive* otherwise (:func:`verdict`); a conjunction of claims is combined by
:func:`combine`. Never a comparison of means. See ``book/deciding.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _scipy_stats

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable at this profile"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_TESTABLE)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval for a per-seed (or percentage-point) quantity."""

    estimate: float
    low: float
    high: float
    level: float
    n_seeds: int
    n_images: int | None  # None when the inputs were per-seed values
    method: str

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the closed interval [low, high]."""
        return bool(self.low <= value <= self.high)


@functools.lru_cache(maxsize=256)
def _critical(level: float, df: float) -> float:
    """Two-sided t critical value: the 1 - (1 - level)/2 quantile with ``df`` degrees of freedom."""
    return float(_scipy_stats.t.ppf(1.0 - (1.0 - level) / 2.0, df))


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    return level


def _as_sample(x, name: str) -> np.ndarray:
    """``x`` as per-seed values, float (seeds,), or per-seed per-image correctness, bool
    (seeds, images); anything else raises ValueError naming the problem."""
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name} must be numbers or booleans, got objects (mixed types?)")
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (seeds,) or (seeds, images), got {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} needs at least one seed, got shape {arr.shape}")
    if arr.ndim == 2:
        if arr.dtype != np.bool_:
            raise ValueError(f"{name} of shape (seeds, images) must be boolean per-image "
                             f"correctness, got dtype {arr.dtype}")
        if arr.shape[1] < 2:
            raise ValueError(f"{name} needs at least two images, got shape {arr.shape}")
        return arr
    if arr.dtype == np.bool_:
        raise ValueError(f"{name} of shape (seeds,) must be per-seed numbers, got booleans "
                         "(per-image correctness has shape (seeds, images))")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numbers, got dtype {arr.dtype}")
    arr = arr.astype(float)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains an infinite value")
    return arr


def _interval(per_seed: np.ndarray, per_image: np.ndarray | None, level: float,
              what: str) -> Interval:
    """t-interval around the mean of ``per_seed``; SE^2 = var(per_seed)/n, plus
    var(per_image)/m when per-image values are given, with Welch-Satterthwaite degrees of
    freedom (n - 1 when the seed term dominates, up to n - 1 + m - 1 when the images do)."""
    n = per_seed.shape[0]
    m = None if per_image is None else per_image.shape[0]
    estimate = float(per_seed.mean())
    images = "" if m is None else f" and {m} images"
    if n < 2:
        return Interval(estimate, -math.inf, math.inf, level, n, m,
                        f"{what} from one seed{images}: no interval, nothing can be decided")
    seeds = float(per_seed.var(ddof=1)) / n
    terms = [(seeds, n - 1)]
    if per_image is not None:
        terms.append((float(per_image.var(ddof=1)) / m, m - 1))
    var = sum(v for v, _ in terms)
    df = var ** 2 / sum(v ** 2 / dof for v, dof in terms) if var > 0 else n - 1
    half = _critical(level, df) * math.sqrt(var)
    noise = "seed variance" if m is None else "seed and image variance, Welch-Satterthwaite df"
    return Interval(estimate, estimate - half, estimate + half, level, n, m,
                    f"{what} over {n} seeds (df {df:.3g}){images}, {noise}")


def difference(a, b, level: float = 0.95) -> Interval:
    """Confidence interval for ``a - b``, paired by seed (and by image).

    ``a``, ``b``: float per-seed values, shape (seeds,), or boolean per-seed per-image
    correctness, shape (seeds, images), the same images in the same order; then the
    result is in percentage points. The estimate is the mean of the per-seed differences d_s.

    Per-seed values: the paired t-interval, half-width t_{n-1} * sd(d) / sqrt(n).
    Correctness: SE^2 = var_s(d_s)/n + var_j(e_j)/m, with d_s the per-seed accuracy
    differences and e_j the per-image differences averaged over seeds (m images), so that
    both the seeds and the sample of test images count; the seed x image interaction enters
    both terms (slightly conservative); the degrees of freedom are Welch-Satterthwaite's.
    With one seed the interval is (-inf, inf).
    """
    level = _check_level(level)
    a, b = _as_sample(a, "a"), _as_sample(b, "b")
    if a.dtype != b.dtype:
        raise ValueError("a and b must both be per-seed numbers or both boolean correctness, "
                         f"got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (paired), got {a.shape} and {b.shape}")
    if a.ndim == 1:
        return _interval(a - b, None, level, "paired t-interval")
    diff = (a.astype(float) - b.astype(float)) * 100.0
    return _interval(diff.mean(axis=1), diff.mean(axis=0), level, "paired t-interval")


def mean(a, level: float = 0.95) -> Interval:
    """Confidence interval for one quantity: the one-sample t-interval over seeds for
    per-seed values (seeds,), or the accuracy in percent for boolean correctness
    (seeds, images) with the seed and image variance of :func:`difference`."""
    level = _check_level(level)
    a = _as_sample(a, "a")
    if a.ndim == 1:
        return _interval(a, None, level, "one-sample t-interval")
    correct = a.astype(float) * 100.0
    return _interval(correct.mean(axis=1), correct.mean(axis=0), level,
                     "t-interval for the accuracy")


def pair_pseudo_values(pairs: np.ndarray) -> np.ndarray:
    """Jackknife pseudo-values over seeds of the mean of a symmetric (seeds, seeds) matrix of
    per-pair values (its diagonal unused), for :func:`mean`.

    A statistic of two seeds (a distance between two runs' kernels) has one value per pair of
    seeds; pairs sharing a seed are not independent, so the seeds, not the pairs, are the
    replicates. Leaving seed k out gives the mean over the other pairs; the pseudo-values
    ``n * mean - (n - 1) * mean_without_k`` average to the mean (a U-statistic) and their
    spread is the jackknife's. With fewer than three seeds there is one value at most: the
    mean alone, from which nothing can be decided.
    """
    pairs = np.asarray(pairs, float)
    n = len(pairs)
    if pairs.shape != (n, n) or n < 2:
        raise ValueError(f"pairs must be a (seeds, seeds) matrix with 2 seeds or more, "
                         f"got shape {pairs.shape}")
    upper = np.triu_indices(n, 1)
    overall = float(pairs[upper].mean())
    if n < 3:
        return np.array([overall])
    without = np.array([np.delete(np.delete(pairs, k, 0), k, 1)[np.triu_indices(n - 1, 1)].mean()
                        for k in range(n)])
    return n * overall - (n - 1) * without


def verdict(interval: Interval, expect: str, threshold: float = 0.0) -> str:
    """The claim "the quantity is ``expect`` ('greater' or 'less') than ``threshold``":
    HOLDS when the whole interval lies on that side, DOES_NOT_HOLD when it lies wholly on
    the other side, INCONCLUSIVE otherwise (an end on the threshold is inconclusive)."""
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    if expect == "greater":
        if interval.low > threshold:
            return HOLDS
        if interval.high < threshold:
            return DOES_NOT_HOLD
        return INCONCLUSIVE
    if expect == "less":
        if interval.high < threshold:
            return HOLDS
        if interval.low > threshold:
            return DOES_NOT_HOLD
        return INCONCLUSIVE
    raise ValueError(f"expect must be 'greater' or 'less', got {expect!r}")


def combine(verdicts: Sequence[str]) -> str:
    """The verdict on a conjunction of component claims (intersection-union test): not
    testable if any component is, else does not hold if any does not, else holds if all
    hold, else inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("combine needs at least one verdict, got none")
    unknown = [v for v in verdicts if v not in VERDICTS]
    if unknown:
        raise ValueError(f"unknown verdicts {unknown!r}; expected one of {VERDICTS}")
    if NOT_TESTABLE in verdicts:
        return NOT_TESTABLE
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE
