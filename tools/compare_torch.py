#!/usr/bin/env python3
"""Runs clmha-bench and the same layer shapes through PyTorch (CPU: linear layers plus
scaled_dot_product_attention) and, where installed, Keras 3 + JAX's CachedMultiHeadAttention,
in one session, and writes the times and ratios (run by hand, never by CI).

decode: one token per sequence into a cache of S positions (the step that writes position S-1
and attends to all S); prefill: T = S, causal. Times are medians of --reps runs after warm-up,
for the whole layer (four projections and attention); clmha and PyTorch alternate for --rounds
rounds and the table gives the median of the rounds' medians (Keras runs once).
--cache-dtype float16 gives clmha's decode a half key/value cache; PyTorch and Keras keep
theirs in float32 (neither has a half cache that is faster on a CPU), so that row compares
clmha's option against their usual path, not like with like.

Usage: .venv/bin/python tools/compare_torch.py [--bench build/tools/clmha-bench]
       [--phase decode|prefill|all] [--seq 1024,16384] [--batch 1] [--threads 2] [--rounds 3]
       [--cache-dtype float32|float16]
       [--out docs/comparison.md] [--json comparison.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def clmha(args, phase):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    # Without profiling: clmha timed as an application sees it, as PyTorch is.
    cmd = [args.bench, "--phase", phase, "--seq", args.seq, "--batch", args.batch,
           "--profile", "off", "--reps", str(args.reps), "--warmup", str(args.warmup),
           "--cache-dtype", args.cache_dtype, "--json", path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    os.unlink(path)
    return {(r["phase"], r["B"], r["S"]): r["median_s"] for r in rows}


def timed(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def torch_case(phase, B, S, D, H, dk, reps, warmup):
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(1)
    lin = [torch.nn.Linear(D, H * dk) for _ in range(3)] + [torch.nn.Linear(H * dk, D)]
    for m in lin:
        m.requires_grad_(False)
    T = 1 if phase == "decode" else S
    x = torch.randn(B, T, D, generator=g)
    kc = torch.randn(B, H, S, dk, generator=g)
    vc = torch.randn(B, H, S, dk, generator=g)

    def heads(t):
        return t.view(B, -1, H, dk).transpose(1, 2)

    def step():
        with torch.no_grad():
            q, k, v = heads(lin[0](x)), heads(lin[1](x)), heads(lin[2](x))
            if phase == "decode":
                kc[:, :, S - 1:S] = k
                vc[:, :, S - 1:S] = v
                o = F.scaled_dot_product_attention(q, kc, vc)
            else:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return lin[3](o.transpose(1, 2).reshape(B, T, H * dk))
    return timed(step, reps, warmup)


def keras_case(phase, B, S, D, H, dk, reps, warmup):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from keras_hub.src.layers.modeling.cached_multi_head_attention import (
        CachedMultiHeadAttention)
    rng = np.random.default_rng(1)
    layer = CachedMultiHeadAttention(num_heads=H, key_dim=dk)
    T = 1 if phase == "decode" else S
    x = rng.standard_normal((B, T, D)).astype("float32")
    if phase == "decode":
        cache = rng.standard_normal((B, 2, S, H, dk)).astype("float32")

        def step():
            out, _ = layer(x, x, cache=cache, cache_update_index=S - 1)
            return np.asarray(out)
    else:
        mask = np.tril(np.ones((T, S), bool))[None]

        def step():
            return np.asarray(layer(x, x, attention_mask=mask))
    return timed(step, reps, warmup)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="build/tools/clmha-bench")
    ap.add_argument("--phase", default="all", choices=["decode", "prefill", "all"])
    ap.add_argument("--seq", default="1024,16384")
    ap.add_argument("--batch", default="1")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate clmha and PyTorch this many times; the table gives the "
                         "median of the rounds' medians (load on a shared machine drifts)")
    ap.add_argument("--cache-dtype", default="float32", choices=["float32", "float16"],
                    help="clmha's decode cache (PyTorch and Keras keep float32)")
    ap.add_argument("--out", default=None, help="markdown table to write")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    phases = ["decode", "prefill"] if args.phase == "all" else [args.phase]
    seqs = [int(s) for s in args.seq.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    import torch
    torch.set_num_threads(args.threads)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:  # the layer's module alone: keras-hub's package pulls TensorFlow-only extras
        from keras_hub.src.layers.modeling import cached_multi_head_attention  # noqa: F401
        have_keras = True
    except ImportError:
        have_keras = False
    rows = []
    for phase in phases:
        # Rounds alternate: clmha-bench for every shape, then PyTorch for every shape, so that
        # both see the same drift in the machine's load.
        t_c = {}
        t_t = {}
        for _ in range(args.rounds):
            ours = clmha(args, phase)
            for B in batches:
                for S in seqs:
                    t_c.setdefault((B, S), []).append(ours[(phase, B, S)])
                    t_t.setdefault((B, S), []).append(
                        torch_case(phase, B, S, args.dim, args.heads, args.head_dim, args.reps,
                                   args.warmup))
        for B in batches:
            for S in seqs:
                c = statistics.median(t_c[(B, S)])
                t = statistics.median(t_t[(B, S)])
                k = (keras_case(phase, B, S, args.dim, args.heads, args.head_dim,
                                max(3, args.reps // 3), 1) if have_keras else None)
                per_round = [tt / cc for tt, cc in zip(t_t[(B, S)], t_c[(B, S)])]
                cache = args.cache_dtype if phase == "decode" else "none"
                rows.append(dict(phase=phase, B=B, S=S, clmha_cache=cache, clmha_s=c, torch_s=t,
                                 keras_s=k,
                                 torch_over_clmha=t / c,
                                 torch_over_clmha_rounds=per_round,
                                 keras_over_clmha=(k / c) if k else None))
                print("%-8s B=%d S=%-6d clmha (%s) %8.3f ms  torch %8.3f ms  keras %s  "
                      "torch/clmha %.2f (rounds: %s)" % (
                          phase, B, S, cache, c * 1e3, t * 1e3,
                          "%8.3f ms" % (k * 1e3) if k else "n/a", t / c,
                          " ".join("%.2f" % x for x in per_round)), flush=True)
    header = ("| phase | B | S | clmha's cache | clmha | PyTorch CPU (%d threads) | "
              "Keras + JAX (eager) | PyTorch / clmha | Keras / clmha |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" % args.threads)
    lines = ["| %s | %d | %d | %s | %.2f ms | %.2f ms | %s | %.2f | %s |" % (
        r["phase"], r["B"], r["S"], r["clmha_cache"], r["clmha_s"] * 1e3, r["torch_s"] * 1e3,
        "%.2f ms" % (r["keras_s"] * 1e3) if r["keras_s"] else "n/a", r["torch_over_clmha"],
        "%.2f" % r["keras_over_clmha"] if r["keras_over_clmha"] else "n/a") for r in rows]
    table = header + "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    else:
        sys.stdout.write("\n" + table)
    if args.json:
        with open(args.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
