#!/usr/bin/env python3
"""Write a random-weight GGUF model that llama.cpp loads and llama-bench can run.

  python3 benchmarks/llamacpp_gpu/make_gguf.py --arch llama|qwen3moe --preset NAME \
      --type Q4_0|Q8_0|F16|Q4_K --out FILE.gguf [--vocab none|llama] [--seed N]

Only needs numpy and the gguf-py package of the trimmed llama.cpp tree next to
this file (llama.cpp/gguf-py).  Weights are random and meaningless;
they only have the right shapes/types and finite, small values:

  * quantized blocks: random bytes, but every fp16 scale field (d for Q4_0/Q8_0,
    d and dmin for Q4_K) is overwritten with a small finite positive value;
  * F16 matrices: normal(0, 0.02);
  * norm weights: F32 ~1.0; router (ffn_gate_inp) F32 normal(0, 0.02).

Speed: a random "pool" of whole blocks (default 128 MiB) is generated once per
file and every tensor is a block-aligned window into it starting at a random
block (wrapping around), streamed straight to the file.  So generation is
bound by write speed (no per-block Python loops, no full model in RAM).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("LLAMA_SRC", os.path.join(HERE, "llama.cpp")) + "/gguf-py")

try:  # gguf.metadata imports yaml at import time; we never use it
    import yaml  # noqa: F401
except ImportError:
    sys.modules["yaml"] = types.ModuleType("yaml")

import gguf  # noqa: E402
import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import GGUFWriter, LlamaFileType  # noqa: E402

# --------------------------------------------------------------------------------------
# presets (from the HF configs); ctx is only the *metadata* context length
# (llama-bench sets n_ctx itself).
PRESETS = {
    "llama-3.1-8b": dict(arch="llama", n_layer=32, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8,
                         head_dim=128, n_vocab=128256, rope_theta=500000.0, eps=1e-5, ctx=8192,
                         tied=False, rope_llama3=dict(factor=8.0, low=1.0, high=4.0, orig=8192)),
    "llama-3.2-1b": dict(arch="llama", n_layer=16, n_embd=2048, n_ff=8192, n_head=32, n_head_kv=8,
                         head_dim=64, n_vocab=128256, rope_theta=500000.0, eps=1e-5, ctx=8192,
                         tied=True, rope_llama3=dict(factor=32.0, low=1.0, high=4.0, orig=8192)),
    "qwen3-30b-a3b": dict(arch="qwen3moe", n_layer=48, n_embd=2048, n_ff=6144, n_head=32, n_head_kv=4,
                          head_dim=128, n_vocab=151936, rope_theta=1000000.0, eps=1e-6, ctx=8192,
                          tied=False, n_expert=128, n_expert_used=8, n_ff_exp=768),
    # tiny presets for CPU tests (all dims multiples of 256 so Q4_K works)
    "tiny": dict(arch="llama", n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, head_dim=64,
                 n_vocab=1024, rope_theta=500000.0, eps=1e-5, ctx=2048, tied=False),
    "tiny-moe": dict(arch="qwen3moe", n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, head_dim=64,
                     n_vocab=1024, rope_theta=1000000.0, eps=1e-6, ctx=2048, tied=False,
                     n_expert=8, n_expert_used=2, n_ff_exp=256),
}

TYPES = {
    "Q4_0": (QT.Q4_0, LlamaFileType.MOSTLY_Q4_0),
    "Q8_0": (QT.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "F16":  (QT.F16,  LlamaFileType.MOSTLY_F16),
    "Q4_K": (QT.Q4_K, LlamaFileType.MOSTLY_Q4_K_S),  # every matrix Q4_K -> "Q4_K - Small" label
}

# (offset, lo, hi) of every fp16 scale field inside one block
SCALE_FIELDS = {
    QT.Q4_0: [(0, 0.004, 0.008)],            # w = d*(q-8), q in 0..15      -> |w| <~ 0.06
    QT.Q8_0: [(0, 0.0002, 0.0004)],          # w = d*q, q in -128..127      -> |w| <~ 0.05
    QT.Q4_K: [(0, 0.00008, 0.00012),         # w = d*sc*q - dmin*m (6-bit sc/m, 4-bit q)
              (2, 0.00008, 0.00012)],
}


def tensor_plan(p: dict, wtype: QT) -> list[tuple[str, tuple[int, ...], QT]]:
    """(name, ggml ne (ne0 first), type) in file order, per src/models/{llama,qwen3moe}.cpp."""
    E, V, hd = p["n_embd"], p["n_vocab"], p["head_dim"]
    q_dim, kv_dim = p["n_head"] * hd, p["n_head_kv"] * hd
    F32 = QT.F32
    out = [("token_embd.weight", (E, V), wtype),
           ("output_norm.weight", (E,), F32)]
    if not p["tied"]:
        out.append(("output.weight", (E, V), wtype))
    if p.get("rope_llama3"):
        out.append(("rope_freqs.weight", (hd // 2,), F32))
    for i in range(p["n_layer"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (E,), F32),
                (b + "attn_q.weight", (E, q_dim), wtype),
                (b + "attn_k.weight", (E, kv_dim), wtype),
                (b + "attn_v.weight", (E, kv_dim), wtype),
                (b + "attn_output.weight", (q_dim, E), wtype)]
        if p["arch"] == "qwen3moe":
            X, F = p["n_expert"], p["n_ff_exp"]
            out += [(b + "attn_q_norm.weight", (hd,), F32),
                    (b + "attn_k_norm.weight", (hd,), F32),
                    (b + "ffn_norm.weight", (E,), F32),
                    (b + "ffn_gate_inp.weight", (E, X), F32),
                    (b + "ffn_gate_exps.weight", (E, F, X), wtype),
                    (b + "ffn_up_exps.weight", (E, F, X), wtype),
                    (b + "ffn_down_exps.weight", (F, E, X), wtype)]
        else:
            F = p["n_ff"]
            out += [(b + "ffn_norm.weight", (E,), F32),
                    (b + "ffn_gate.weight", (E, F), wtype),
                    (b + "ffn_up.weight", (E, F), wtype),
                    (b + "ffn_down.weight", (F, E), wtype)]
    return out


def nbytes_of(ne: tuple[int, ...], t: QT) -> int:
    blk, tsz = gguf.GGML_QUANT_SIZES[t]
    if ne[0] % blk:
        raise ValueError(f"ne0={ne[0]} not a multiple of block size {blk} for {t.name}")
    return math.prod(ne) // blk * tsz


def llama3_rope_factors(hd: int, base: float, r: dict) -> np.ndarray:
    freqs = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
    lo_wl, hi_wl = r["orig"] / r["low"], r["orig"] / r["high"]
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < hi_wl:
            out.append(1.0)
        elif wl > lo_wl:
            out.append(r["factor"])
        else:
            s = (r["orig"] / wl - r["low"]) / (r["high"] - r["low"])
            out.append(1 / ((1 - s) / r["factor"] + s))
    return np.asarray(out, dtype=np.float32)


def make_pool(t: QT, nbytes: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 pool of whole blocks of type t, all scale fields finite and small."""
    blk, tsz = gguf.GGML_QUANT_SIZES[t]
    nblk = max(1, nbytes // tsz)
    if t == QT.F16:
        return (rng.standard_normal(nblk, dtype=np.float32) * 0.02).astype(np.float16).view(np.uint8)
    pool = rng.integers(0, 256, size=nblk * tsz, dtype=np.uint8)
    blocks = pool.reshape(nblk, tsz)
    for off, lo, hi in SCALE_FIELDS[t]:
        d = rng.uniform(lo, hi, size=nblk).astype(np.float16)
        blocks[:, off:off + 2] = d.view(np.uint8).reshape(nblk, 2)
    return pool


def small_tensor(name: str, ne: tuple[int, ...], p: dict, rng: np.random.Generator) -> np.ndarray:
    n = math.prod(ne)
    if name == "rope_freqs.weight":
        return llama3_rope_factors(p["head_dim"], p["rope_theta"], p["rope_llama3"])
    if "gate_inp" in name:
        return (rng.standard_normal(n, dtype=np.float32) * 0.02)
    return (1.0 + 0.01 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)  # norms


def add_vocab(w: GGUFWriter, n_vocab: int, kind: str) -> None:
    if kind == "none":
        # llama-vocab.cpp: tokenizer model "none" + <arch>.vocab_size -> n_vocab dummy tokens
        w.add_tokenizer_model("none")
        w.add_vocab_size(n_vocab)
        return
    # minimal SPM ("llama") vocab: <unk> <s> </s>, 256 byte tokens, dummy rest
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types_ = [2, 3, 3] + [6] * 256
    toks += [f"t{i}" for i in range(len(toks), n_vocab)]
    types_ += [1] * (n_vocab - len(types_))
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([-float(i) for i in range(n_vocab)])
    w.add_token_types(types_)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_vocab_size(n_vocab)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=["llama", "qwen3moe"])
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--type", required=True, choices=sorted(TYPES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", default="none", choices=["none", "llama"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool-mib", type=int, default=128, help="size of the random block pool")
    ap.add_argument("--dry-run", action="store_true", help="print plan/size only")
    a = ap.parse_args()

    p = dict(PRESETS[a.preset])
    if p["arch"] != a.arch:
        ap.error(f"preset {a.preset} is arch {p['arch']}, not {a.arch}")
    wtype, ftype = TYPES[a.type]
    plan = tensor_plan(p, wtype)
    sizes = [nbytes_of(ne, t) for _, ne, t in plan]
    total = sum(sizes)
    n_params = sum(math.prod(ne) for _, ne, _ in plan)
    print(f"[make_gguf] {a.preset} {a.type}: {len(plan)} tensors, {n_params/1e9:.3f} B params, "
          f"{total/2**30:.2f} GiB tensor data -> {a.out}", flush=True)
    if a.dry_run:
        print(f"bytes={total + (16 << 20)}")  # tensor data + allowance for header/vocab
        return 0

    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    tmp = a.out + ".part"
    w = GGUFWriter(tmp, a.arch)
    w.add_name(f"random-{a.preset}-{a.type}")
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(p["ctx"])
    w.add_embedding_length(p["n_embd"])
    w.add_block_count(p["n_layer"])
    w.add_feed_forward_length(p["n_ff"])
    w.add_head_count(p["n_head"])
    w.add_head_count_kv(p["n_head_kv"])
    w.add_key_length(p["head_dim"])
    w.add_value_length(p["head_dim"])
    w.add_rope_dimension_count(p["head_dim"])
    w.add_rope_freq_base(p["rope_theta"])
    w.add_layer_norm_rms_eps(p["eps"])
    if p["arch"] == "qwen3moe":
        w.add_expert_count(p["n_expert"])
        w.add_expert_used_count(p["n_expert_used"])
        w.add_expert_feed_forward_length(p["n_ff_exp"])
    add_vocab(w, p["n_vocab"], a.vocab)

    for (name, ne, t), nb in zip(plan, sizes):
        # numpy-order shape; dtype != uint8 so the shape is taken as element shape
        w.add_tensor_info(name, tuple(reversed(ne)), np.dtype(np.float32), nb, raw_dtype=t)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]

    pool_bytes = a.pool_mib << 20
    pools: dict[QT, np.ndarray] = {}
    big_types = {t for _, _, t in plan if t != QT.F32}
    for t in big_types:
        need = sum(nb for (_, _, tt), nb in zip(plan, sizes) if tt == t)
        pools[t] = make_pool(t, min(pool_bytes, need), rng)
    t_pool = time.time() - t0

    align = w.data_alignment
    written = 0
    for (name, ne, t), nb in zip(plan, sizes):
        # same bookkeeping as GGUFWriter.write_tensor_data, but streamed in pieces
        ti = w.tensors[0].pop(name)
        assert ti.nbytes == nb
        w.write_padding(fout, fout.tell())
        start = fout.tell()
        if t == QT.F32:
            arr = small_tensor(name, ne, p, rng)
            assert arr.nbytes == nb
            arr.tofile(fout)
        else:
            pool = pools[t]
            tsz = gguf.GGML_QUANT_SIZES[t][1]
            npb = pool.nbytes // tsz
            pos = int(rng.integers(0, npb)) * tsz
            left = nb
            while left:
                n = min(left, pool.nbytes - pos)
                fout.write(memoryview(pool[pos:pos + n]))
                left -= n
                pos = 0
        if fout.tell() - start != nb:
            raise OSError(f"short write for {name}")
        w.write_padding(fout, nb, align)
        written += nb
    w.state = type(w.state).WEIGHTS
    w.close()
    os.replace(tmp, a.out)
    dt = time.time() - t0
    sz = os.path.getsize(a.out)
    print(f"[make_gguf] wrote {a.out}: {sz/2**30:.2f} GiB in {dt:.1f} s "
          f"(pool {t_pool:.1f} s, {sz/2**30/max(dt,1e-9):.2f} GiB/s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
