#!/usr/bin/env python3
"""int8_cache_formats.py - the accuracy of two int8 key/value cache formats of equal size.

clmha's int8 cache keeps one float32 scale per (position, head) row of D values (D + 4 bytes a
row); llama.cpp's q8_0 keeps one float16 scale per block of 32 values (D / 32 * 34 bytes, the
same 68 bytes for D = 64). This script quantizes the same keys and values both ways and prints
the attention output's error against float64 attention over the unquantized cache, for keys
and values drawn uniformly, drawn normally, and with a few outlier channels (large magnitudes
in 2 of 64 dims, as trained transformers' keys have). Usage:

    python3 tools/int8_cache_formats.py [--seq 4096] [--dim 64] [--queries 64] [--seed 0]

Needs numpy only. docs/api.md ("The int8 cache") gives the figures and the choice.
"""
import argparse

import numpy as np


def per_row(x):
    amax = np.abs(x).max(axis=-1, keepdims=True).astype(np.float32)
    scale = (amax / np.float32(127)).astype(np.float32)
    q = np.where(scale > 0, np.rint(x / np.where(scale > 0, scale, 1)), 0)
    return (np.clip(q, -127, 127) * scale).astype(np.float64)


def per_block32(x):
    d = x.shape[-1]
    xb = x.reshape(*x.shape[:-1], d // 32, 32)
    amax = np.abs(xb).max(axis=-1, keepdims=True)
    scale = (amax / 127).astype(np.float16).astype(np.float32)
    q = np.where(scale > 0, np.rint(xb / np.where(scale > 0, scale, 1)), 0)
    return (np.clip(q, -127, 127) * scale).reshape(x.shape).astype(np.float64)


def attention(q, k, v):
    s = q @ k.T / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    S, D = a.seq, a.dim
    print(f"S = {S}, D = {D}, {a.queries} queries; relative error of the attention output")
    print(f"{'keys and values':<26} {'per row (f32)':>14} {'per 32 (f16)':>14}")
    for name in ("uniform [-2, 2)", "normal", "normal, 2 outlier dims"):
        if name.startswith("uniform"):
            k, v = rng.uniform(-2, 2, (2, S, D))
        else:
            k, v = rng.normal(0, 1, (2, S, D))
        if "outlier" in name:
            k[:, :2] *= 20.0
            v[:, :2] *= 20.0
        q = rng.normal(0, 1, (a.queries, D)) * 2.0
        k, v = k.astype(np.float32), v.astype(np.float32)
        ref = attention(q, k.astype(np.float64), v.astype(np.float64))
        e_row = rel(attention(q, per_row(k), per_row(v)), ref)
        e_blk = rel(attention(q, per_block32(k), per_block32(v)), ref)
        print(f"{name:<26} {e_row:>14.3e} {e_blk:>14.3e}")


if __name__ == "__main__":
    main()
