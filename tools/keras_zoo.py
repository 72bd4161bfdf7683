#!/usr/bin/env python3
"""Writes clmha's keras-hub model zoo from real Keras (run by hand, never by CI).

Small random-weight instances of the keras-hub models whose blocks use CachedMultiHeadAttention
(GPT-2 with 12 and 48 layers, OPT with 24, BART, Whisper and EdRec with 12 encoder and 12
decoder layers each), saved with Keras's own save_weights(), and for a few attention layers of
each the inputs and Keras's outputs of a call in each cache mode. Under tests/data/:

  zoo/MODEL.weights.h5   the model's weights (rewritten in HDF5's 1.10 format, group by group
                         in the order Keras wrote them, which makes the file about three times
                         smaller; Keras loads the rewritten file, checked here)
  zoo/manifest.txt       one line a model: the weights file, then every attention layer's path
                         in the order Keras's save_weights visits them (recorded from Keras's
                         own saving walk), tab-separated
  zoo_MODEL_N_MODE.h5    a golden case in tools/keras_golden.py's format: layer N of the
                         manifest's line, called by Keras with no cache, a static cache or a
                         cache update (self-attention layers with one tensor as query, key and
                         value: attribute self_attention)

Setup: see tools/requirements-golden.txt. Run: KERAS_BACKEND=jax .venv/bin/python
tools/keras_zoo.py [--out tests/data].
"""
import argparse
import json
import os
import zlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.layers import MultiHeadAttention  # noqa: E402
from keras.src.saving import saving_lib  # noqa: E402
from keras_hub.src.layers.modeling.cached_multi_head_attention import (  # noqa: E402
    CachedMultiHeadAttention,
)

D, H, FF, VOCAB, SEQ = 8, 2, 16, 50, 16  # hidden dim, heads (of D / H), feed-forward, tokens


def models():
    """(name, constructor) of every model in the zoo."""
    m = keras_hub.models
    return [
        ("gpt2_12", lambda: m.GPT2Backbone(vocabulary_size=VOCAB, num_layers=12, num_heads=H,
                                           hidden_dim=D, intermediate_dim=FF,
                                           max_sequence_length=SEQ)),
        ("gpt2_48", lambda: m.GPT2Backbone(vocabulary_size=VOCAB, num_layers=48, num_heads=H,
                                           hidden_dim=D, intermediate_dim=FF,
                                           max_sequence_length=SEQ)),
        ("opt_24", lambda: m.OPTBackbone(vocabulary_size=VOCAB, num_layers=24, num_heads=H,
                                         hidden_dim=D, intermediate_dim=FF, dropout=0.0,
                                         max_sequence_length=SEQ)),
        ("bart_12", lambda: m.BartBackbone(vocabulary_size=VOCAB, num_layers=12, num_heads=H,
                                           hidden_dim=D, intermediate_dim=FF, dropout=0.0,
                                           max_sequence_length=SEQ)),
        ("whisper_12", lambda: m.WhisperBackbone(vocabulary_size=VOCAB, num_layers=12,
                                                 num_heads=H, hidden_dim=D, intermediate_dim=FF,
                                                 num_mels=8, max_encoder_sequence_length=16,
                                                 max_decoder_sequence_length=SEQ)),
        ("edrec_12", lambda: m.EdRecBackbone(vocab_size=VOCAB, num_layers_enc=12,
                                             num_layers_dec=12, hidden_dim=D,
                                             intermediate_dim=FF, num_heads=H)),
    ]


def save_recording_order(model, path):
    """model.save_weights(path), recording each attention layer's path in the order Keras's
    saving walk visits it, and the layer object at each path."""
    order = []
    original = saving_lib._save_state

    def record(saveable, weights_store, assets_store, inner_path, visited_saveables):
        if isinstance(saveable, MultiHeadAttention) and id(saveable) not in visited_saveables:
            order.append((inner_path, saveable))
        return original(saveable, weights_store, assets_store, inner_path, visited_saveables)

    saving_lib._save_state = record
    try:
        model.save_weights(path)
    finally:
        saving_lib._save_state = original
    return order


def rewrite_compact(src_path, dst_path):
    """Copies every group, dataset and attribute of a Keras weights file into HDF5's 1.10 format,
    creating the objects in the order they lie in the source (the order Keras wrote them)."""
    objs = []
    with h5py.File(src_path, "r") as src:
        src.visititems(lambda name, obj: objs.append((h5py.h5o.get_info(obj.id).addr, name)))
        objs.sort()
        with h5py.File(dst_path, "w", libver=("v110", "v110")) as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for _, name in objs:
                obj = src[name]
                if isinstance(obj, h5py.Group):
                    out = dst.require_group(name)
                else:
                    out = dst.create_dataset(name, data=obj[()])
                for k, v in obj.attrs.items():
                    out.attrs[k] = v


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def is_cross(path):
    return "cross" in path


def write_case(out_dir, name, model_file, path, layer, mode, rng):
    """Calls @p layer as keras-hub does in one cache mode and writes the golden case."""
    heads, dk = layer._num_heads, layer._key_dim
    B, S = 2, 8
    cross = is_cross(path)
    T = {"none": 5, "static": 3 if cross else 1, "update": 4}[mode]
    query = rng.standard_normal((B, T, D)).astype("float32")
    value = cache = index = mask = None
    if mode == "none":
        value = rng.standard_normal((B, 6 if cross else T, D)).astype("float32")
        if not cross:
            value = query
            t = np.arange(T)[:, None]
            mask = np.broadcast_to(np.arange(T)[None, :] <= t, (B, T, T)).copy()
    else:
        cache = rng.uniform(-1.5, 1.5, (B, 2, S, heads, dk)).astype("float32")
        if mode == "update":
            index = 3
            value = query
            t = np.arange(T)[:, None]
            mask = np.broadcast_to(np.arange(S)[None, :] <= index + t, (B, T, S)).copy()
        elif not cross:
            mask = np.broadcast_to(np.arange(S)[None, None, :] <= 5, (B, T, S)).copy()
    kwargs = dict(attention_mask=mask)
    if cache is not None:
        kwargs["cache"] = cache
        if index is not None:
            kwargs["cache_update_index"] = index
    v_in = value if value is not None else np.zeros((B, 1, D), "float32")
    result = layer(query, v_in, **kwargs)
    outs = result if isinstance(result, tuple) else (result,)
    self_attention = value is query
    with h5py.File(os.path.join(out_dir, name + ".h5"), "w") as f:
        f.create_dataset("query", data=query)
        if value is not None and not self_attention:
            f.create_dataset("value", data=value)
        if mask is not None:
            f.create_dataset("attention_mask", data=mask.astype(bool))
        if cache is not None:
            f.create_dataset("cache", data=cache)
            f.create_dataset("expected_cache", data=np.asarray(outs[-1]))
        if index is not None:
            f.create_dataset("cache_update_index", data=np.int64(index))
        f.create_dataset("expected_attention_output", data=np.asarray(outs[0]))
        f.attrs["weights_file"] = "zoo/" + model_file
        f.attrs["layer"] = path
        f.attrs["description"] = "%s, %s, %s" % (model_file, path, mode)
        f.attrs["self_attention"] = bool(self_attention)
        f.attrs["training"] = False
        f.attrs["dropout"] = 0.0
        f.attrs["seed"] = 1
        f.attrs["attention_axes"] = np.array([], dtype=np.int64)
        f.attrs["return_scores"] = False
        f.attrs["keras_version"] = keras.__version__
        f.attrs["jax_version"] = jax.__version__
        f.attrs["keras_hub_version"] = keras_hub.__version__
        f.attrs["config"] = json.dumps(layer.get_config(), default=str)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "data"))
    args = ap.parse_args()
    zoo = os.path.join(args.out, "zoo")
    os.makedirs(zoo, exist_ok=True)
    manifest = []
    cases = 0
    for name, make in models():
        keras.utils.set_random_seed(zlib.crc32(name.encode()))
        model = make()
        model_file = name + ".weights.h5"
        raw = os.path.join(zoo, name + ".raw.weights.h5")
        order = save_recording_order(model, raw)
        final = os.path.join(zoo, model_file)
        rewrite_compact(raw, final)
        os.remove(raw)
        # Keras loads the rewritten file into a new instance: every weight comes back.
        check = make()
        check.load_weights(final)
        for a, b in zip(model.weights, check.weights):
            assert np.array_equal(np.asarray(a), np.asarray(b)), (name, a.path)
        paths = [p for p, _ in order]
        count = sum(isinstance(x, MultiHeadAttention) for x in model._flatten_layers())
        assert count == len(paths), (name, count, len(paths))
        manifest.append("\t".join([model_file] + paths))
        # The first and last layers, and for encoder-decoder models a cross-attention layer
        # from the middle on.
        cross = [i for i, p in enumerate(paths) if is_cross(p) and i >= len(paths) // 2]
        picks = sorted({0, len(paths) - 1} | set(cross[:1]))
        for i in picks:
            path, layer = order[i]
            cached = isinstance(layer, CachedMultiHeadAttention)
            modes = ("none", "static") if is_cross(path) else ("none", "static", "update")
            for mode in modes if cached else ("none",):
                case = "zoo_%s_%d_%s" % (name, i, mode)
                write_case(args.out, case, model_file, path, layer, mode, rng_for(case))
                cases += 1
        print("%s: %d attention layers, cases for layers %s" % (name, len(paths), picks))
    with open(os.path.join(zoo, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print("wrote %d models and %d cases (keras %s, jax %s, keras-hub %s)" %
          (len(manifest), cases, keras.__version__, jax.__version__, keras_hub.__version__))


if __name__ == "__main__":
    main()
