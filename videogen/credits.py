"""Credits charged for a job: one credit is one million pixel-denoising-steps.

    credits = num_frames × width × height × steps / 1,000,000   (rounded up to 4 decimals)

So the cost grows with exactly what drives GPU time (every denoising step runs over every pixel of
every frame). The default ``tiny`` job (9 frames, 64×64, 4 steps) costs 0.1475 credits; a 121-frame
704×480 LTX-Video job at 40 steps costs 1,635.4560 credits.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

PIXEL_STEPS_PER_CREDIT = 1_000_000


def credits_for(*, num_frames: int, width: int, height: int, steps: int) -> Decimal:
    pixel_steps = Decimal(num_frames) * width * height * steps
    return (pixel_steps / PIXEL_STEPS_PER_CREDIT).quantize(Decimal("0.0001"), rounding=ROUND_CEILING)
