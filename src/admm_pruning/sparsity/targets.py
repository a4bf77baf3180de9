"""Per-layer targets from one overall compression factor.

ShrinkBench's ``fraction_to_keep`` scales a per-layer profile by one factor; here the factor
is solved so that the kept counts add up to exactly K = round(total / compression) weights
(largest-remainder rounding), and each layer keeps at least one weight and at most all.
"""

from __future__ import annotations

import math


class TargetError(ValueError):
    """A compression target the model cannot reach."""


def scale_profile(sizes: dict[str, int], profile: dict[str, float], compression: float) -> dict[str, float]:
    """Keep fractions proportional to ``profile`` whose total kept count is total/compression.

    Returns fractions count_i / n_i, which ``keep_count`` turns back into exactly count_i.
    """
    total = sum(sizes.values())
    layers = list(profile)
    lo_k, hi_k = len(layers), sum(sizes[n] for n in layers)
    fixed = total - hi_k  # layers outside the profile stay dense
    target = round(total / compression) - fixed if compression > 0 else -1
    if not lo_k <= target <= hi_k:
        reach = (total / (fixed + hi_k), total / (fixed + lo_k))
        raise TargetError(f"prune.compression={compression:g}: this model reaches only "
                          f"{reach[0]:.2f}x to {reach[1]:.1f}x with layers {', '.join(layers)}")

    def counts(scale: float) -> dict[str, float]:
        return {n: min(sizes[n], max(1.0, scale * profile[n] * sizes[n])) for n in layers}

    lo, hi = 0.0, max(1.0 / min(profile.values()), 1.0) * 2
    for _ in range(200):  # bisection on the continuous kept count, which grows with scale
        mid = (lo + hi) / 2
        if sum(counts(mid).values()) < target:
            lo = mid
        else:
            hi = mid
    real = counts(hi)
    whole = {n: min(sizes[n], max(1, math.floor(c))) for n, c in real.items()}
    short = target - sum(whole.values())
    order = sorted(layers, key=lambda n: real[n] - math.floor(real[n]), reverse=True)
    step = 1 if short > 0 else -1
    while short:
        moved = False
        for n in order:
            if short and 1 <= whole[n] + step <= sizes[n]:
                whole[n] += step
                short -= step
                moved = True
        if not moved:
            raise TargetError(f"prune.compression={compression:g}: cannot distribute {target} weights")
    return {n: whole[n] / sizes[n] for n in layers}
