"""Time one training step (forward + loss + backward + Adam) of a landmark model on this CPU,
for each numeric setting: fp32, bf16 autocast, and either with channels_last memory format.

Run by hand (it takes about a minute per model and size); results go in docs/results.md:

    python benchmarks/train_speed.py --model pipnet --backbone mobilenet_v2 --size 128 --threads 2

Prints one row per setting: ms per image and the speed-up over fp32.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facemark.models.registry import create_model


def step_time(model, images, landmarks, *, bf16: bool, channels_last: bool, steps: int) -> float:
    """Median seconds of one optimiser step over ``steps`` timed steps (after 3 warm-up)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    images = images.contiguous(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(images)
            loss, _ = model.loss(out, model.encode(landmarks))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pipnet")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--points", type=int, default=68)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    mean_face = rng.uniform(0.2, 0.8, (args.points, 2)).astype(np.float32)
    images = torch.rand(args.batch, 3, args.size, args.size)
    landmarks = torch.from_numpy(rng.uniform(0.1, 0.9, (args.batch, args.points, 2)).astype(np.float32))
    rows = []
    for bf16 in (False, True):
        for cl in (False, True):
            model = create_model(args.model, num_points=args.points, input_size=args.size,
                                 backbone=args.backbone, mean_face=mean_face)
            t = step_time(model, images, landmarks, bf16=bf16, channels_last=cl, steps=args.steps)
            rows.append((("bf16 autocast" if bf16 else "fp32") + (" + channels_last" if cl else ""),
                         1000 * t / args.batch))
    base = rows[0][1]
    print(f"{args.model}-{args.backbone} {args.size}px, batch {args.batch}, {args.threads} threads")
    print("| setting | ms / image (fwd+bwd+step) | speed-up |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    main()
