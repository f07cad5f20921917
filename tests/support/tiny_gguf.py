#!/usr/bin/env python3
"""Write a tiny, deterministic llama-architecture GGUF model and, optionally, an OLLAMA_MODELS folder.

The model is random weights (garbage text out) but a real model for Ollama's engines: `ollama serve`
lists it, loads it on the CPU and generates with it through /api/chat and /v1/chat/completions.
Standard library only (GGUF v3 is written by hand; f16 through struct's 'e' format), so a test can
run it with any Python >= 3.11 and seed a PersistentVolume without the ollama binary.

    python tests/support/tiny_gguf.py --gguf /tmp/tiny.gguf
    python tests/support/tiny_gguf.py --ollama-models /tmp/models [--model tiny:latest] [--num-predict 16]

The OLLAMA_MODELS layout is the one `ollama create` writes (checked against ollama v0.17.4):
    blobs/sha256-<hex>                                  the GGUF, the config JSON, the params JSON
    manifests/registry.ollama.ai/library/<name>/<tag>   the manifest naming them by digest
The same seed and options always give the same bytes, hence the same digests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import tempfile
from pathlib import Path

# --- GGUF v3 ------------------------------------------------------------------------------------
GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32
# metadata value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types and the matching general.file_type (LLAMA_FTYPE_ALL_F32 / MOSTLY_F16)
GGML_TYPES = {"f32": (0, 0, "<f", 4), "f16": (1, 1, "<e", 2)}
# SentencePiece token types
TOK_NORMAL, TOK_UNKNOWN, TOK_CONTROL, TOK_BYTE = 1, 2, 3, 6

# Model shape: 2 layers, hidden 64, 4 heads (head dim 16), 2 KV heads (GQA), FFN 128.
N_LAYER, N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_CTX = 2, 64, 4, 2, 128, 2048

WORDS = ["hello", "world", "the", "and", "you", "ollama", "model", "token", "tiny", "test"]


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """A SentencePiece ("llama") vocabulary: 3 control tokens, 256 byte-fallback tokens, then pieces."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TOK_UNKNOWN, TOK_CONTROL, TOK_CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TOK_BYTE] * 256
    pieces: list[str] = ["\u2581"]
    pieces += [chr(c) for c in range(33, 127)]  # printable ASCII but the space (SentencePiece uses U+2581)
    pieces += ["\u2581" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    for w in WORDS:  # every prefix, so the SentencePiece merges can reach the whole word
        for i in range(2, len(w) + 1):
            p = "\u2581" + w[:i]
            if p not in pieces:
                pieces.append(p)
    tokens += pieces
    types += [TOK_NORMAL] * len(pieces)
    # Longer pieces score higher, so merges prefer them; control and byte tokens score 0.
    scores = [0.0] * (3 + 256) + [float(-i) / 1000.0 + len(p) for i, p in enumerate(pieces)]
    return tokens, scores, types


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, vtype: int, value) -> bytes:
    out = _str(key) + struct.pack("<I", vtype)
    if vtype == T_ARRAY:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        return out + b"".join(_scalar(etype, v) for v in items)
    return out + _scalar(vtype, value)


def _scalar(vtype: int, v) -> bytes:
    if vtype == T_STRING:
        return _str(v)
    fmt = {T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?"}[vtype]
    return struct.pack(fmt, v)


def _shapes(n_vocab: int) -> list[tuple[str, list[int]]]:
    """(name, ggml dims with the row length first) in llama.cpp's tensor naming."""
    n_kv = (N_EMBD // N_HEAD) * N_HEAD_KV
    out = [("token_embd.weight", [N_EMBD, n_vocab])]
    for i in range(N_LAYER):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", [N_EMBD]),
            (p + "attn_q.weight", [N_EMBD, N_EMBD]),
            (p + "attn_k.weight", [N_EMBD, n_kv]),
            (p + "attn_v.weight", [N_EMBD, n_kv]),
            (p + "attn_output.weight", [N_EMBD, N_EMBD]),
            (p + "ffn_norm.weight", [N_EMBD]),
            (p + "ffn_gate.weight", [N_EMBD, N_FF]),
            (p + "ffn_up.weight", [N_EMBD, N_FF]),
            (p + "ffn_down.weight", [N_FF, N_EMBD]),
        ]
    return [*out, ("output_norm.weight", [N_EMBD]), ("output.weight", [N_EMBD, n_vocab])]


def parameter_count() -> int:
    total = 0
    for _, dims in _shapes(len(vocabulary()[0])):
        n = 1
        for d in dims:
            n *= d
        total += n
    return total


def build_gguf(seed: int = 0, dtype: str = "f16") -> bytes:
    """The GGUF file's bytes. Norm weights stay f32 (as llama.cpp's converters write them)."""
    ggml_type, file_type, fmt, _ = GGML_TYPES[dtype]
    tokens, scores, types = vocabulary()
    rng = random.Random(seed)

    a = "llama."
    kvs = [
        _kv("general.architecture", T_STRING, "llama"),
        _kv("general.name", T_STRING, "tiny"),
        _kv("general.file_type", T_UINT32, file_type),
        _kv("general.alignment", T_UINT32, ALIGNMENT),
        _kv(a + "context_length", T_UINT32, N_CTX),
        _kv(a + "embedding_length", T_UINT32, N_EMBD),
        _kv(a + "block_count", T_UINT32, N_LAYER),
        _kv(a + "feed_forward_length", T_UINT32, N_FF),
        _kv(a + "attention.head_count", T_UINT32, N_HEAD),
        _kv(a + "attention.head_count_kv", T_UINT32, N_HEAD_KV),
        _kv(a + "attention.layer_norm_rms_epsilon", T_FLOAT32, 1e-5),
        _kv(a + "rope.dimension_count", T_UINT32, N_EMBD // N_HEAD),
        _kv(a + "rope.freq_base", T_FLOAT32, 10000.0),
        _kv(a + "vocab_size", T_UINT32, len(tokens)),
        _kv("tokenizer.ggml.model", T_STRING, "llama"),
        _kv("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens)),
        _kv("tokenizer.ggml.scores", T_ARRAY, (T_FLOAT32, scores)),
        _kv("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, types)),
        _kv("tokenizer.ggml.bos_token_id", T_UINT32, 1),
        _kv("tokenizer.ggml.eos_token_id", T_UINT32, 2),
        _kv("tokenizer.ggml.unknown_token_id", T_UINT32, 0),
        _kv("tokenizer.ggml.add_bos_token", T_BOOL, True),
        _kv("tokenizer.ggml.add_eos_token", T_BOOL, False),
    ]

    infos, blobs, offset = [], [], 0
    shapes = _shapes(len(tokens))
    for name, dims in shapes:
        n = 1
        for d in dims:
            n *= d
        if len(dims) == 1:  # RMS norm weights: ones, in f32
            t, f, values = 0, "<f", [1.0] * n
        else:  # uniform in +-1/sqrt(fan_in)
            scale = 1.0 / dims[0] ** 0.5
            t, f, values = ggml_type, fmt, [(rng.random() * 2.0 - 1.0) * scale for _ in range(n)]
        data = struct.pack(f"{f[0]}{len(values)}{f[1]}", *values)
        infos.append(_str(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims))
        infos[-1] += struct.pack("<IQ", t, offset)
        pad = (-len(data)) % ALIGNMENT
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad

    head = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(shapes), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGNMENT)
    return head + b"".join(blobs)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_gguf(path: str | os.PathLike, seed: int = 0, dtype: str = "f16") -> Path:
    p = Path(path)
    _atomic_write(p, build_gguf(seed, dtype))
    return p


# --- OLLAMA_MODELS layout -----------------------------------------------------------------------
MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_MODEL = "application/vnd.ollama.image.model"
MT_PARAMS = "application/vnd.ollama.image.params"


def _blob(models: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = models / "blobs" / digest.replace(":", "-")
    if not path.exists():
        _atomic_write(path, data)
    return digest


def _go_json(obj) -> bytes:
    """What Go's json.NewEncoder(w).Encode(obj) writes: compact, HTML-safe escapes, a trailing newline."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)  # dicts keep their order (Go structs)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (text + "\n").encode()


def seed_ollama_models(
    models_dir: str | os.PathLike,
    model: str = "tiny:latest",
    num_predict: int | None = 16,
    num_thread: int | None = 1,
    seed: int = 0,
    dtype: str = "f16",
) -> Path:
    """Lay out `model` in an OLLAMA_MODELS folder as `ollama create` would; returns the manifest path.

    model is [namespace/]name[:tag] (namespace "library", tag "latest" by default). num_predict and
    num_thread (None: left out) go into a params layer, as `PARAMETER num_predict 16` and
    `PARAMETER num_thread 1` in a Modelfile would. num_predict: a random model rarely says </s>, so a
    request without max_tokens stops there instead of running on. num_thread 1: on a busy 2-core
    machine ggml's two spinning threads made 8 tokens take 1-20 s; with one thread they take <0.1 s.
    Blobs already there are kept (same bytes, same digest), so several models can share one folder.
    """
    models = Path(models_dir)
    repo, _, tag = model.partition(":")
    namespace, _, name = repo.rpartition("/")
    namespace, tag = namespace or "library", tag or "latest"
    gguf = build_gguf(seed, dtype)
    layers = [{"mediaType": MT_MODEL, "digest": _blob(models, gguf), "size": len(gguf)}]
    options = {k: v for k, v in (("num_predict", num_predict), ("num_thread", num_thread)) if v is not None}
    if options:
        params = _go_json(options)
        layers.append({"mediaType": MT_PARAMS, "digest": _blob(models, params), "size": len(params)})
    # Field order as in ollama's ConfigV2: the config and params blobs come out byte for byte as
    # `ollama create` writes them (same digests); its manifest differs only by layers' local "from" paths.
    config = {
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": human_number(parameter_count()),
        "file_type": {0: "F32", 1: "F16"}[GGML_TYPES[dtype][1]],
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
    }
    config_bytes = _go_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": _blob(models, config_bytes), "size": len(config_bytes)},
        "layers": layers,
    }
    path = models / "manifests" / "registry.ollama.ai" / namespace / name / tag
    _atomic_write(path, _go_json(manifest))
    return path


def human_number(n: int) -> str:
    """ollama's format.HumanNumber, which `ollama create` stores as model_type ("Parameter Size")."""
    for unit, div in (("B", 10**9), ("M", 10**6)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.{1 if unit == 'B' else 2}f}{unit}"
    return f"{n / 1000:.0f}K" if n >= 1000 else str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="write the GGUF file here")
    ap.add_argument("--ollama-models", metavar="DIR", help="lay out an OLLAMA_MODELS folder here")
    ap.add_argument("--model", default="tiny:latest", help="name:tag in the OLLAMA_MODELS folder (tiny:latest)")
    ap.add_argument("--num-predict", type=int, default=16, help="default token cap in the params layer; <0: none")
    ap.add_argument("--num-thread", type=int, default=1, help="CPU threads in the params layer; <=0: none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=sorted(GGML_TYPES), default="f16")
    args = ap.parse_args(argv)
    if not args.gguf and not args.ollama_models:
        ap.error("give --gguf PATH and/or --ollama-models DIR")
    data = build_gguf(args.seed, args.dtype)
    if args.gguf:
        _atomic_write(Path(args.gguf), data)
        print(f"{args.gguf} sha256:{hashlib.sha256(data).hexdigest()} {len(data)} bytes")
    if args.ollama_models:
        num_predict = args.num_predict if args.num_predict >= 0 else None
        num_thread = args.num_thread if args.num_thread > 0 else None
        manifest = seed_ollama_models(args.ollama_models, args.model, num_predict, num_thread, args.seed, args.dtype)
        print(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
