#!/usr/bin/env python3
"""Runs clmha-bench and the same layer shapes through PyTorch (CPU: linear layers plus
scaled_dot_product_attention) and, where installed, Keras 3 + JAX's CachedMultiHeadAttention,
in one session, and writes the times and ratios (run by hand, never by CI).

decode: one token per sequence into a cache of S positions (the step that writes position S-1
and attends to all S); prefill: T = S, causal. Times are medians of --reps runs after warm-up,
for the whole layer (four projections and attention); clmha and PyTorch alternate for --rounds
rounds and the table gives the median of the rounds' medians (Keras runs once).
--cache-dtype float16 or int8 gives clmha's decode a half or an int8 key/value cache (clmha's
own format, docs/api.md); PyTorch and Keras keep theirs in float32 (neither has a narrower cache
that is faster on a CPU), so that row compares clmha's option against their usual path, not like
with like. Its error column is the output's relative error against clmha's float32 cache.
--weight-dtype compares the layers with their weights in another form, each framework's own
way: int8 is Keras's quantize("int8") for clmha and Keras, and PyTorch's dynamic int8
quantization of its linear layers (torch.ao.quantization.quantize_dynamic, where it runs);
int4 is Keras's quantize("int4") (PyTorch has no CPU counterpart: n/a); float16 and bfloat16
are the 16-bit dtype policies (PyTorch's modules and tensors in that dtype). Each row also
gives the output's relative error against the same framework's float32 layer.

Usage: .venv/bin/python tools/compare_torch.py [--bench build/tools/clmha-bench]
       [--phase decode|prefill|all] [--seq 1024,16384] [--batch 1] [--threads 2] [--rounds 3]
       [--cache-dtype float32|float16|int8] [--weight-dtype float32|int8|int4|float16|bfloat16]
       [--out docs/comparison.md] [--json comparison.json]
"""
import argparse
import copy
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
    # Without profiling: clmha timed as an application sees it, as PyTorch is; and one layer's
    # calls in a row (not interleaved with the float32 layer's), as PyTorch runs its one model.
    cmd = [args.bench, "--phase", phase, "--seq", args.seq, "--batch", args.batch,
           "--profile", "off", "--interleave", "off", "--reps", str(args.reps),
           "--warmup", str(args.warmup), "--json", path]
    # float32 listed first: clmha-bench's errors are against float32 weights and cache
    cmd += ["--cache-dtype", "float32" if args.cache_dtype == "float32"
            else "float32," + args.cache_dtype]
    if args.weight_dtype != "float32":
        cmd += ["--weight-dtype", "float32," + args.weight_dtype]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    os.unlink(path)
    # (median, relative error against clmha's float32 layer, or None for float32)
    cache = args.cache_dtype if phase == "decode" else "none"
    return {(r["phase"], r["B"], r["S"]): (r["median_s"], r.get("error_vs_float32"))
            for r in rows if r.get("weight_dtype", "float32") == args.weight_dtype
            and r.get("cache_dtype") == cache}


def timed(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def torch_case(phase, B, S, D, H, dk, reps, warmup, weight_dtype="float32"):
    """PyTorch's median time and, for another weight dtype, the output's relative error
    against the float32 modules'; (None, None) where PyTorch has no such layer (int4)."""
    import torch
    import torch.nn.functional as F
    if weight_dtype == "int4":
        return None, None
    g = torch.Generator().manual_seed(1)
    lin = torch.nn.ModuleList([torch.nn.Linear(D, H * dk) for _ in range(3)] +
                              [torch.nn.Linear(H * dk, D)])
    lin.requires_grad_(False)
    T = 1 if phase == "decode" else S
    x = torch.randn(B, T, D, generator=g)
    kc = torch.randn(B, H, S, dk, generator=g)
    vc = torch.randn(B, H, S, dk, generator=g)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(weight_dtype)
    mods = lin
    if weight_dtype == "int8":
        mods = torch.ao.quantization.quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8)
    elif dtype is not None:
        mods = copy.deepcopy(lin).to(dtype)

    def heads(t):
        return t.view(B, -1, H, dk).transpose(1, 2)

    def step_with(m, xs, kcs, vcs):
        with torch.no_grad():
            q, k, v = heads(m[0](xs)), heads(m[1](xs)), heads(m[2](xs))
            if phase == "decode":
                kcs[:, :, S - 1:S] = k
                vcs[:, :, S - 1:S] = v
                o = F.scaled_dot_product_attention(q, kcs, vcs)
            else:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return m[3](o.transpose(1, 2).reshape(B, T, H * dk))

    xd, kd, vd = ((x.to(dtype), kc.to(dtype), vc.to(dtype)) if dtype is not None
                  else (x, kc, vc))
    t = timed(lambda: step_with(mods, xd, kd, vd), reps, warmup)
    err = None
    if weight_dtype != "float32":
        ref = step_with(lin, x, kc.clone(), vc.clone()).float()
        got = step_with(mods, xd, kd.clone(), vd.clone()).float()
        err = float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref))
    return t, err


def keras_case(phase, B, S, D, H, dk, reps, warmup, weight_dtype="float32"):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    from keras_hub.src.layers.modeling.cached_multi_head_attention import (
        CachedMultiHeadAttention)
    rng = np.random.default_rng(1)
    policy = weight_dtype if weight_dtype in ("float16", "bfloat16") else None
    layer = CachedMultiHeadAttention(num_heads=H, key_dim=dk, dtype=policy)
    T = 1 if phase == "decode" else S
    if weight_dtype in ("int8", "int4"):
        # Keras quantizes through a model (Model.quantize walks its EinsumDense layers)
        inp = keras.Input((T, D))
        keras.Model(inp, layer(inp, inp)).quantize(weight_dtype)
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


def fmt_err(e):
    return "%.2g" % e if e is not None else "-"


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
    ap.add_argument("--cache-dtype", default="float32", choices=["float32", "float16", "int8"],
                    help="clmha's decode cache (PyTorch and Keras keep float32)")
    ap.add_argument("--weight-dtype", default="float32",
                    choices=["float32", "int8", "int4", "float16", "bfloat16"],
                    help="the layers' weights: quantized (int8: PyTorch's dynamic int8; int4: "
                         "Keras's, no PyTorch row) or a 16-bit dtype")
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
        e_c = {}
        e_t = {}
        for _ in range(args.rounds):
            ours = clmha(args, phase)
            for B in batches:
                for S in seqs:
                    t_c.setdefault((B, S), []).append(ours[(phase, B, S)][0])
                    e_c[(B, S)] = ours[(phase, B, S)][1]
                    tt, e_t[(B, S)] = torch_case(phase, B, S, args.dim, args.heads,
                                                 args.head_dim, args.reps, args.warmup,
                                                 args.weight_dtype)
                    if tt is not None:
                        t_t.setdefault((B, S), []).append(tt)
        for B in batches:
            for S in seqs:
                c = statistics.median(t_c[(B, S)])
                t = statistics.median(t_t[(B, S)]) if (B, S) in t_t else None
                k = (keras_case(phase, B, S, args.dim, args.heads, args.head_dim,
                                max(3, args.reps // 3), 1, args.weight_dtype)
                     if have_keras else None)
                per_round = ([tt / cc for tt, cc in zip(t_t[(B, S)], t_c[(B, S)])]
                             if t is not None else [])
                cache = args.cache_dtype if phase == "decode" else "none"
                rows.append(dict(phase=phase, B=B, S=S, clmha_cache=cache,
                                 weight_dtype=args.weight_dtype, clmha_s=c, torch_s=t,
                                 keras_s=k, clmha_error=e_c[(B, S)], torch_error=e_t[(B, S)],
                                 torch_over_clmha=t / c if t is not None else None,
                                 torch_over_clmha_rounds=per_round,
                                 keras_over_clmha=(k / c) if k else None))
                print("%-8s B=%d S=%-6d weights %s clmha (%s) %8.3f ms  torch %s  keras %s  "
                      "torch/clmha %s (rounds: %s)  error clmha %s torch %s" % (
                          phase, B, S, args.weight_dtype, cache, c * 1e3,
                          "%8.3f ms" % (t * 1e3) if t is not None else "n/a",
                          "%8.3f ms" % (k * 1e3) if k else "n/a",
                          "%.2f" % (t / c) if t is not None else "n/a",
                          " ".join("%.2f" % x for x in per_round), fmt_err(e_c[(B, S)]),
                          fmt_err(e_t[(B, S)])), flush=True)
    header = ("| phase | B | S | weights | clmha's cache | clmha | PyTorch CPU (%d threads) | "
              "Keras + JAX (eager) | PyTorch / clmha | Keras / clmha | error: clmha, PyTorch |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" %
              args.threads)
    lines = ["| %s | %d | %d | %s | %s | %.2f ms | %s | %s | %s | %s | %s, %s |" % (
        r["phase"], r["B"], r["S"], r["weight_dtype"], r["clmha_cache"], r["clmha_s"] * 1e3,
        "%.2f ms" % (r["torch_s"] * 1e3) if r["torch_s"] is not None else "n/a",
        "%.2f ms" % (r["keras_s"] * 1e3) if r["keras_s"] else "n/a",
        "%.2f" % r["torch_over_clmha"] if r["torch_over_clmha"] is not None else "n/a",
        "%.2f" % r["keras_over_clmha"] if r["keras_over_clmha"] else "n/a",
        fmt_err(r["clmha_error"]), fmt_err(r["torch_error"])) for r in rows]
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
