#!/usr/bin/env python3
"""Generates clmha's golden data from real Keras (run by hand, never by CI).

For every case it builds keras-hub's CachedMultiHeadAttention inside a small Keras model,
calls it with Keras 3 on JAX (CPU), and writes under tests/data/:

  NAME.weights.h5   the model's weights, saved by Keras's own model.save_weights()
  NAME.h5           the inputs under the names clmha-run reads (query, value, key,
                    attention_mask, cache, cache_update_index), Keras's outputs as
                    expected_attention_output / expected_cache / expected_attention_scores,
                    and attributes: the layer's path in the weights file, its config, the
                    call's flags and the Keras / JAX / keras-hub versions.

Setup: see tools/requirements-golden.txt. Run: KERAS_BACKEND=jax .venv/bin/python
tools/keras_golden.py [--out tests/data].
"""
import argparse
import json
import os
import zlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
from keras.quantizers import Int4QuantizationConfig  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from keras_hub.src.layers.modeling.cached_multi_head_attention import (  # noqa: E402
    CachedMultiHeadAttention,
)


class Block(keras.layers.Layer):
    """A transformer-ish block holding the attention layer, so the weights file nests it."""

    def __init__(self, attn_kwargs, cross=False, **kwargs):
        super().__init__(**kwargs)
        self.self_attention = CachedMultiHeadAttention(name="self_attention", **attn_kwargs)
        self.cross = cross
        if cross:
            # A second, small attention layer, so that loaders must choose by name.
            self.cross_attention = CachedMultiHeadAttention(
                name="cross_attention", num_heads=2, key_dim=4)

    def call(self, *args, **kwargs):
        return self.self_attention(*args, **kwargs)


class Decoder(keras.Model):
    def __init__(self, attn_kwargs, cross=False, **kwargs):
        super().__init__(**kwargs)
        self.block = Block(attn_kwargs, cross=cross, name="block")

    def call(self, *args, **kwargs):
        return self.block(*args, **kwargs)


def rng_for(name):
    """A generator seeded by the case name (CRC32: the same in every run, unlike hash())."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def make_mask(rng, kind, B, T, S, index=0, q_offset=None, H=1):
    """Masks in each broadcast form; causal follows keras-hub (j <= index + t)."""
    if kind is None:
        return None
    if kind == "causal":
        base = index if q_offset is None else q_offset
        t = np.arange(T)[:, None]
        j = np.arange(S)[None, :]
        return np.broadcast_to(j <= base + t, (B, T, S)).copy()
    if kind == "rows_off":  # every third query row fully masked, the rest random
        m = rng.random((B, T, S)) > 0.3
        m[:, 1::3, :] = False
        return m
    shapes = {"BTS": (B, T, S), "TS": (T, S), "1TS": (1, T, S), "B1S": (B, 1, S),
              "BT1": (B, T, 1), "11S": (1, 1, S), "random25": (B, T, S),
              # Rank 4, with a head dim (Keras 3.15 takes these on both of its paths).
              "BHTS": (B, H, T, S), "B1TS": (B, 1, T, S), "1H1S": (1, H, 1, S)}
    if kind == "float":  # values either rule reads differently: nonzero, or > 0.5
        m = rng.choice(np.array([-1.0, 0.0, 0.3, 0.7, 1.0, 2.0], "float32"), size=(B, T, S))
        m[..., 0] = 1.0
        return m
    p = 0.25 if kind == "random25" else 0.35
    m = rng.random(shapes[kind]) > p
    if kind not in ("BT1",):
        m[..., 0] = True  # keep every row attending somewhere
    return m


def run_case(out_dir, c, model_cache):
    name = c["name"]
    rng = rng_for(name)
    attn_kwargs = dict(num_heads=c["H"], key_dim=c["dk"], value_dim=c.get("dv"),
                       use_bias=c.get("bias", True), output_shape=c.get("output_shape"),
                       attention_axes=c.get("axes"), dropout=c.get("dropout", 0.0),
                       bias_initializer="random_normal", seed=c.get("seed", 1))
    if c.get("policy"):
        attn_kwargs["dtype"] = c["policy"]
    B, T = c["B"], c["T"]
    qshape = c.get("qshape", (B, T, c["Dq"]))
    query = rng.standard_normal(qshape).astype("float32")
    mode = c.get("mode", "none")
    S = c["S"]
    Sn = c.get("Sn", S if mode == "none" else 1)
    vshape = c.get("vshape", (B, Sn, c.get("Dv", c["Dq"])))
    value = rng.standard_normal(vshape).astype("float32")
    key = None
    if c.get("key"):
        key = rng.standard_normal(vshape[:-1] + (c["Dk"],)).astype("float32")
    dk = c["dk"]
    cache = None
    if mode != "none":
        cache = rng.uniform(-1.5, 1.5, (B, 2, S, c["H"], dk)).astype("float32")
        if "cache_from" in c:
            cache = c["cache_from"]
    index = c.get("index") if mode == "update" else None
    mask = c.get("mask_array")
    if mask is None:
        mask = make_mask(rng, c.get("mask"), B, T, S, index or 0, c.get("q_offset"), c["H"])

    key_model = c.get("model")
    if key_model and key_model in model_cache:
        model = model_cache[key_model]
    else:
        model = Decoder(attn_kwargs, cross=c.get("cross", False), name="decoder")
        # Build through a first call, then set weights when the case wants them quantised.
        model_cache[key_model] = model
    layer = model.block.self_attention

    kwargs = dict(attention_mask=mask, training=c.get("training", False))
    if cache is not None:
        kwargs["cache"] = cache
        if index is not None:
            kwargs["cache_update_index"] = index
    if c.get("scores"):
        kwargs["return_attention_scores"] = True
    v_in = value if mode != "static" else None
    if mode == "static":
        # keras-hub ignores the inputs in static mode but still needs a value argument.
        v_in = np.zeros((B, 1, c["Dq"]), "float32")
        value = None
    # The layer is called directly (a nested call() may not mix tensor and flag arguments);
    # the model only gives the weights file its nested structure.
    result = layer(query, v_in, key, **kwargs)
    if c.get("cross") and not model.block.cross_attention.built:
        small = np.ones((1, 2, 8), "float32")
        model.block.cross_attention(small, small)
    if c.get("quantise") and not getattr(model, "_quantised", False):
        # Weights on a 1/128 grid within +-1/16: exact in float16 (and few distinct values),
        # so the weights file is stored as compressed float16 and Keras's float32 results are
        # exact for it.
        for w in model.weights:
            q = np.clip(np.round(np.asarray(w) * 128.0), -8, 8) / 128.0
            w.assign(q.astype("float32"))
        model._quantised = True
        result = layer(query, v_in, key, **kwargs)

    # Its sub-layers are built by the call; mark the containers built so they save.
    model.block.built = True
    model.built = True
    qmode = c.get("qmode")
    if qmode:
        # Keras's own quantization of the float layer, whose weights are kept beside it so that
        # clmha_layer_quantize can be checked against it.
        model.save_weights(os.path.join(out_dir, name + ".float.weights.h5"))
        if qmode in ("int8", "int4"):
            model.quantize(qmode)
        else:
            block = int(qmode.split("/")[1])
            model.quantize(config=Int4QuantizationConfig(block_size=block))
        result = layer(query, v_in, key, **kwargs)
    outs = result if isinstance(result, tuple) else (result,)
    # A 16-bit policy's results are float16 / bfloat16 arrays: stored as float32 (exact).
    output = np.asarray(outs[0]).astype("float32")
    scores = np.asarray(outs[1]).astype("float32") if c.get("scores") else None
    new_cache = np.asarray(outs[-1]).astype("float32") if cache is not None else None

    weights_file = c.get("weights_name", name) + ".weights.h5"
    wpath = os.path.join(out_dir, weights_file)
    if not os.path.exists(wpath) or not key_model:
        model.save_weights(wpath)
        if c.get("quantise"):
            reencode_float16(wpath)

    with h5py.File(os.path.join(out_dir, name + ".h5"), "w") as f:
        f.create_dataset("query", data=query)
        if value is not None and mode != "static":
            f.create_dataset("value", data=value)
        if key is not None and mode != "static":
            f.create_dataset("key", data=key)
        if mask is not None:
            f.create_dataset("attention_mask",
                             data=mask if mask.dtype == np.float32 else mask.astype(bool))
        if cache is not None:
            f.create_dataset("cache", data=cache)
        if index is not None:
            f.create_dataset("cache_update_index", data=np.int64(index))
        f.create_dataset("expected_attention_output", data=output)
        if new_cache is not None:
            f.create_dataset("expected_cache", data=new_cache)
        if scores is not None:
            f.create_dataset("expected_attention_scores", data=scores)
        f.attrs["weights_file"] = weights_file
        f.attrs["layer"] = "self_attention"
        f.attrs["description"] = c.get("what", name)
        f.attrs["training"] = bool(c.get("training", False))
        f.attrs["dropout"] = float(c.get("dropout", 0.0))
        f.attrs["seed"] = int(c.get("seed", 1))
        f.attrs["attention_axes"] = np.array(c.get("axes") or [], dtype=np.int64)
        f.attrs["return_scores"] = bool(c.get("scores", False))
        f.attrs["keras_version"] = keras.__version__
        f.attrs["jax_version"] = jax.__version__
        f.attrs["keras_hub_version"] = keras_hub.__version__
        f.attrs["config"] = json.dumps(layer.get_config(), default=str)
        f.attrs["dtype_policy"] = c.get("policy", "float32")
        if qmode:
            f.attrs["quantization"] = qmode
            f.attrs["float_weights_file"] = name + ".float.weights.h5"
    return new_cache


REG_NAMES = {keras.regularizers.L1: "l1", keras.regularizers.L2: "l2",
             keras.regularizers.L1L2: "l1l2"}
CON_NAMES = {keras.constraints.MaxNorm: "max_norm", keras.constraints.MinMaxNorm: "min_max_norm",
             keras.constraints.NonNeg: "non_neg", keras.constraints.UnitNorm: "unit_norm"}


def describe_reg(f, prefix, r):
    f.attrs[prefix] = REG_NAMES[type(r)] if r is not None else "none"
    f.attrs[prefix + "_l1"] = float(getattr(r, "l1", 0.0) or 0.0)
    f.attrs[prefix + "_l2"] = float(getattr(r, "l2", 0.0) or 0.0)


def describe_con(f, prefix, c):
    f.attrs[prefix] = CON_NAMES[type(c)] if c is not None else "none"
    for k in ("max_value", "min_value", "rate", "axis"):
        f.attrs[prefix + "_" + k] = float(getattr(c, k, 0) or 0)


def regularization_case(out_dir, name, mode, kreg, breg, areg, kcon, bcon):
    """A layer with regularizers and constraints: after one call, Keras's layer.losses (split
    into the weights' part and the activity part) and each weight after its constraint."""
    rng = rng_for(name)
    layer = CachedMultiHeadAttention(num_heads=2, key_dim=4, kernel_regularizer=kreg,
                                     bias_regularizer=breg, activity_regularizer=areg,
                                     kernel_constraint=kcon, bias_constraint=bcon,
                                     bias_initializer="random_normal", seed=3, name="attention")
    B, T, S, D = 2, 3, 6, 8
    q = rng.standard_normal((B, T, D)).astype("float32")
    v = rng.standard_normal((B, 2 if mode == "update" else S, D)).astype("float32")
    cache = rng.uniform(-1, 1, (B, 2, S, 2, 4)).astype("float32") if mode != "none" else None
    kwargs = {}
    if cache is not None:
        kwargs["cache"] = cache
        if mode == "update":
            kwargs["cache_update_index"] = 1
    vin = v if mode != "static" else np.zeros((B, 1, D), "float32")
    result = layer(q, vin, **kwargs)
    out = np.asarray(result[0] if isinstance(result, tuple) else result)
    total = float(sum(float(x) for x in layer.losses))
    weights_loss = 0.0
    for w in layer.weights:
        reg = kreg if w.path.endswith("kernel") else breg
        if reg is not None:
            weights_loss += float(reg(w))
    # Save through a tiny model so the file has the usual nested structure.
    holder = keras.Model(name="holder")
    holder.attention = layer
    holder.built = True
    holder.save_weights(os.path.join(out_dir, name + ".weights.h5"))
    with h5py.File(os.path.join(out_dir, name + ".h5"), "w") as f:
        f.create_dataset("query", data=q)
        if mode != "static":
            f.create_dataset("value", data=v)
        if cache is not None:
            f.create_dataset("cache", data=cache)
        if mode == "update":
            f.create_dataset("cache_update_index", data=np.int64(1))
        f.create_dataset("expected_attention_output", data=out)
        if cache is not None:
            f.create_dataset("expected_cache", data=np.asarray(result[-1]))
        f.create_dataset("expected_weights_loss", data=np.float64(weights_loss))
        f.create_dataset("expected_activity_loss", data=np.float64(total - weights_loss))
        subs = {"query": "query_dense", "key": "key_dense", "value": "value_dense",
                "attention_output": "output_dense"}
        for w in layer.weights:
            con = kcon if w.path.endswith("kernel") else bcon
            sub, kind = w.path.split("/")[-2], w.path.split("/")[-1]
            val = np.asarray(con(w)) if con is not None else np.asarray(w)
            f.create_dataset("expected_constrained/%s/%s" % (subs[sub], kind), data=val)
        f.attrs["weights_file"] = name + ".weights.h5"
        f.attrs["layer"] = "attention"
        f.attrs["description"] = "regularizers and constraints, " + mode
        f.attrs["regularization"] = True
        f.attrs["training"] = False
        f.attrs["dropout"] = 0.0
        f.attrs["seed"] = 3
        f.attrs["attention_axes"] = np.array([], dtype=np.int64)
        describe_reg(f, "kernel_regularizer", kreg)
        describe_reg(f, "bias_regularizer", breg)
        describe_reg(f, "activity_regularizer", areg)
        describe_con(f, "kernel_constraint", kcon)
        describe_con(f, "bias_constraint", bcon)
        f.attrs["keras_version"] = keras.__version__
        f.attrs["jax_version"] = jax.__version__
        f.attrs["keras_hub_version"] = keras_hub.__version__


def regularization_cases(out_dir):
    R, K = keras.regularizers, keras.constraints
    regularization_case(out_dir, "reg_nocache", "none", R.L1L2(0.01, 0.02), R.L2(0.03),
                        R.L1(0.001), K.MaxNorm(0.5, axis=0), K.NonNeg())
    regularization_case(out_dir, "reg_update", "update", R.L1(), R.L1L2(0.005, 0.001),
                        R.L2(0.002), K.UnitNorm(axis=1), K.MinMaxNorm(0.1, 0.3, 0.7, axis=0))
    regularization_case(out_dir, "reg_static", "static", None, None, R.L1L2(0.001, 0.003),
                        K.MinMaxNorm(0.2, 0.4, 0.5, axis=-1), K.MaxNorm(0.1, axis=0))
    return 3


def reencode_float16(path):
    """Rewrites every dataset of a Keras weights file as gzip-compressed float16, keeping the
    groups and attributes Keras wrote."""
    tmp = path + ".tmp"
    with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                g = dst.require_group(name)
                for k, v in obj.attrs.items():
                    g.attrs[k] = v
            else:
                d = dst.create_dataset(name, data=obj[()].astype("float16"), compression="gzip",
                                       shuffle=True)
                for k, v in obj.attrs.items():
                    d.attrs[k] = v
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        src.visititems(copy)
    os.replace(tmp, path)


def cases():
    c = []
    base = dict(B=1, T=4, S=4, Dq=8, H=2, dk=4)

    def add(name, what, **kw):
        d = dict(base)
        d.update(kw)
        d["name"] = name
        d["what"] = what
        c.append(d)

    # No cache.
    add("nocache_basic", "no cache, no mask")
    add("nocache_mask_bts", "mask (B, T, S)", B=3, T=5, S=7, Dq=12, H=3, dk=4, mask="BTS")
    add("nocache_mask_ts", "mask (T, S)", B=2, T=5, S=6, mask="TS")
    add("nocache_mask_1ts", "mask (1, T, S)", B=2, T=5, S=6, mask="1TS")
    add("nocache_mask_b1s", "mask (B, 1, S)", B=2, T=5, S=6, mask="B1S")
    add("nocache_mask_bt1", "mask (B, T, 1)", B=2, T=5, S=6, mask="BT1", scores=True)
    add("nocache_mask_11s", "mask (1, 1, S)", B=2, T=5, S=6, mask="11S")
    add("nocache_causal", "causal mask", B=2, T=6, S=6, mask="causal", q_offset=0)
    add("nocache_random25", "random 25% mask", B=2, T=9, S=11, mask="random25", H=4, dk=8,
        Dq=16)
    add("nocache_rows_off", "fully masked rows (explicit path: scores returned)", B=2, T=7,
        S=9, mask="rows_off", scores=True)
    add("nocache_rows_off_fused", "fully masked rows (fused path: the mean of the values)",
        B=2, T=7, S=9, mask="rows_off")
    add("static_rows_off_fused", "static cache, fully masked rows (fused path)", B=2, T=4, S=8,
        mode="static", mask="rows_off")
    add("update_rows_off_fused", "update, fully masked rows (fused path)", B=2, T=4, S=8, Sn=4,
        mode="update", index=2, mask="rows_off")
    add("nocache_rows_off_dropout", "fully masked rows, dropout 0.5 at inference (explicit "
        "path: zeros)", B=2, T=7, S=9, mask="rows_off", dropout=0.5)
    # Keras 3.15 + JAX: the fused path fails for value_dim != key_dim; scores force the
    # explicit path, which works.
    add("nocache_value_dim", "value_dim != key_dim", T=5, S=6, dk=4, dv=6, scores=True)
    add("nocache_feature_dims", "query/key/value feature dims differ", B=2, T=3, S=5, Dq=6,
        Dv=10, Dk=7, key=True)
    add("nocache_no_bias", "use_bias=False", B=2, T=3, S=5, bias=False)
    add("nocache_output_int", "output_shape int", B=2, T=3, S=5, output_shape=5)
    add("nocache_output_tuple", "output_shape tuple", B=2, T=3, S=5, output_shape=(3, 4))
    add("nocache_scores", "attention scores returned", B=2, T=3, S=5, scores=True)
    add("nocache_ones", "T = S = 1", T=1, S=1)
    add("nocache_tiny", "one head of dim 1", T=2, S=3, H=1, dk=1, Dq=3)
    add("nocache_larger", "B=2 T=33 S=65 H=4 dk=16", B=2, T=33, S=65, H=4, dk=16, Dq=32,
        mask="causal", q_offset=32)
    add("nocache_value_dim_scores", "value_dim != key_dim with mask and scores", B=2, T=4, S=6,
        dk=5, dv=3, mask="BTS", scores=True)
    # Rank-4 masks with a head dim, on Keras's fused path (no scores) and its explicit one.
    add("nocache_mask_bhts", "mask (B, H, T, S)", B=2, T=5, S=6, H=3, dk=4, Dq=12, mask="BHTS")
    add("nocache_mask_bhts_scores", "mask (B, H, T, S), scores returned", B=2, T=5, S=6, H=3,
        dk=4, Dq=12, mask="BHTS", scores=True)
    add("nocache_mask_b1ts", "mask (B, 1, T, S)", B=2, T=4, S=7, mask="B1TS")
    add("static_mask_1h1s", "static cache, mask (1, H, 1, S)", B=2, T=3, S=9, H=4, dk=4,
        Dq=16, mode="static", mask="1H1S")
    add("update_mask_bhts", "decode step, mask (B, H, 1, S)", B=2, T=1, S=8, H=2, mode="update",
        index=5, mask="BHTS")
    add("update_mask_bhts_scores", "decode step, mask (B, H, 1, S), scores", B=2, T=1, S=8, H=2,
        mode="update", index=5, mask="BHTS", scores=True)
    # Float masks: Keras's fused path attends where nonzero, its explicit path where > 0.5.
    add("nocache_mask_float", "float mask, fused path", B=2, T=5, S=7, mask="float")
    add("nocache_mask_float_scores", "float mask, explicit path (scores)", B=2, T=5, S=7,
        mask="float", scores=True)
    # Static cache.
    add("static_decode", "static cache, T=1", T=1, S=8, mode="static")
    add("static_mask", "static cache with mask", B=2, T=3, S=10, mode="static", mask="BTS")
    add("static_scores", "static cache with scores", B=2, T=2, S=6, mode="static",
        scores=True, mask="B1S")
    add("static_output_tuple", "static cache, output tuple, no bias", B=2, T=2, S=5,
        mode="static", output_shape=(2, 3), bias=False)
    # Updated cache.
    add("update_index0", "update at 0, T=1", T=1, S=8, mode="update", index=0)
    add("update_middle", "update in the middle, causal", T=1, S=8, mode="update", index=4,
        mask="causal")
    add("update_last", "update at S-1", B=2, T=1, S=9, mode="update", index=8, mask="causal")
    add("update_prefill", "chunked prefill at 0", B=2, T=5, S=12, Sn=5, mode="update", index=0,
        mask="causal")
    add("update_chunk", "chunked prefill at 4", B=2, T=3, S=12, Sn=3, mode="update", index=4,
        mask="causal")
    add("update_feature_dims", "update, B=3, separate key, different dims", B=3, T=1, S=7,
        mode="update", index=2, Dq=6, Dv=9, Dk=5, key=True, mask="causal")
    add("update_scores", "update with scores", B=2, T=2, S=6, Sn=2, mode="update", index=1,
        scores=True, mask="causal")
    add("update_no_bias_tuple", "update, no bias, output tuple", B=2, T=1, S=5, mode="update",
        index=3, bias=False, output_shape=(2, 2))
    add("update_rows_off", "update with fully masked rows and scores", B=2, T=4, S=8, Sn=4,
        mode="update", index=2, mask="rows_off", scores=True)
    # Rank-4 inputs with attention_axes (no cache).
    add("axes_2", "rank 4, attention_axes (2,)", B=2, T=None, S=None, qshape=(2, 3, 4, 8),
        vshape=(2, 3, 5, 8), axes=(2,))
    add("axes_12", "rank 4, attention_axes (1, 2)", B=2, T=None, S=None, qshape=(2, 3, 4, 8),
        vshape=(2, 2, 5, 8), axes=(1, 2), scores=True)
    add("axes_default", "rank 4, attention_axes None", B=2, T=None, S=None,
        qshape=(2, 2, 3, 8), vshape=(2, 3, 2, 8))
    add("axes_1", "rank 4, attention_axes (1,) with mask", B=2, T=None, S=None,
        qshape=(2, 4, 3, 8), vshape=(2, 5, 3, 8), axes=(1,),
        mask_array=np.random.default_rng(7).random((2, 3, 4, 5)) > 0.3)
    # Dropout and training.
    add("train_dropout_all", "training with dropout ~1: only the bias path survives", B=2,
        T=5, S=5, dropout=0.99999, training=True)
    add("infer_dropout", "dropout 0.5 at inference: no dropout", B=2, T=3, S=5, dropout=0.5)
    add("train_no_dropout", "training with dropout 0", B=2, T=3, S=5, training=True)
    # Keras's quantized layers (Model.quantize): int8, int4 (groups of 128 rows), int4 in
    # groups of 32 (a partial last group) and per-channel int4, in each cache mode; odd column
    # counts exercise int4's packing.
    qb = dict(B=2, Dq=40, H=3, dk=8)
    add("quant_int8_nocache", "int8, no cache, mask", T=5, S=7, mask="BTS", qmode="int8", **qb)
    add("quant_int8_static", "int8, static cache", T=3, S=9, mode="static", qmode="int8", **qb)
    add("quant_int8_update", "int8, decode step", T=1, S=8, mode="update", index=5,
        mask="causal", qmode="int8", **qb)
    add("quant_int8_prefill", "int8, prefill of 5 at 0, no bias, output 5", T=5, S=9, Sn=5,
        mode="update", index=0, mask="causal", bias=False, output_shape=5, qmode="int8", **qb)
    # Wider than one 64-column panel of the CPUs' int8 layout (72 projection columns, 72
    # output features): a decode step (the one-row products) and a prefill (the multi-row ones).
    qw = dict(B=1, Dq=72, H=2, dk=36, qmode="int8")
    add("quant_int8_wide_update", "int8, 72 columns, decode step", T=1, S=8, mode="update",
        index=5, mask="causal", **qw)
    add("quant_int8_wide_prefill", "int8, 72 columns, prefill of 6 at 0", T=6, S=9, Sn=6,
        mode="update", index=0, mask="causal", **qw)
    q4 = dict(B=2, Dq=136, H=3, dk=5)
    add("quant_int4_nocache", "int4 (groups of 128), no cache", T=4, S=6, qmode="int4", **q4)
    add("quant_int4_static", "int4, static cache", T=2, S=7, mode="static", qmode="int4", **q4)
    add("quant_int4_update", "int4, decode step, output 5", T=1, S=8, mode="update", index=3,
        mask="causal", output_shape=5, qmode="int4", **q4)
    g32 = dict(B=2, Dq=72, H=3, dk=8)
    add("quant_int4g32_nocache", "int4/32, no cache, mask", T=5, S=6, mask="BTS",
        qmode="int4/32", **g32)
    add("quant_int4g32_update", "int4/32, prefill of 3 at 2", T=3, S=9, Sn=3, mode="update",
        index=2, mask="causal", qmode="int4/32", **g32)
    add("quant_int4pc_nocache", "int4/-1 (one scale a column), no cache", T=4, S=5,
        qmode="int4/-1", **g32)
    add("quant_int4pc_static", "int4/-1, static cache", T=2, S=6, mode="static",
        qmode="int4/-1", **g32)
    add("quant_int4pc_update", "int4/-1, decode step", T=1, S=7, mode="update", index=6,
        mask="causal", qmode="int4/-1", **g32)
    # Keras's 16-bit dtype policies, in each cache mode.
    for pol in ("float16", "bfloat16", "mixed_float16", "mixed_bfloat16"):
        pb = dict(B=2, Dq=24, H=3, dk=8, policy=pol)
        add("policy_%s_nocache" % pol, "%s, no cache, mask" % pol, T=4, S=6, mask="BTS", **pb)
        add("policy_%s_static" % pol, "%s, static cache" % pol, T=2, S=7, mode="static", **pb)
        add("policy_%s_update" % pol, "%s, decode step" % pol, T=1, S=8, mode="update",
            index=5, mask="causal", **pb)
    # GPT-2-sized decoding: prefill 8 tokens, then single-token steps.
    gpt = dict(B=1, Dq=768, H=12, dk=64, S=16, mode="update", mask="causal", model="gpt2",
               weights_name="gpt2_decode", quantise=True, cross=True)
    add("gpt2_prefill", "GPT-2-sized prefill of 8 tokens", T=8, Sn=8, index=0, **gpt)
    for step in range(5):
        add("gpt2_step%d" % step, "GPT-2-sized decode step %d" % step, T=1, Sn=1,
            index=8 + step, **gpt)
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "data"))
    ap.add_argument("--only", default=None,
                    help="write only the cases whose names contain this text")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    models = {}
    prev_cache = None
    n = 0
    for c in cases():
        if args.only and args.only not in c["name"]:
            continue
        if c["name"].startswith("gpt2_step"):
            c["cache_from"] = prev_cache
        if c.get("T") is None:
            c["T"] = c["qshape"][1]
            c["S"] = c["vshape"][1]
        prev_cache = run_case(args.out, c, models)
        n += 1
    if not args.only:
        n += regularization_cases(args.out)
    print("wrote %d cases to %s (keras %s, jax %s, keras-hub %s)" %
          (n, args.out, keras.__version__, jax.__version__, keras_hub.__version__))


if __name__ == "__main__":
    main()
