#!/usr/bin/python3
"""PyTorch references for frugal's training code (Debian's python3-torch; run with /usr/bin/python3).

The reference is the spec: for every forward op that training uses, this script dumps the inputs,
the output and the gradients PyTorch autograd computes (in float64), and for a whole LoRA model
step on wiki-7m the loss, some logits and every adapter gradient. tests/train compares frugal
against these files with stated tolerances.

  make_torch_reference.py OUT_DIR            write the references (what tests/train/reference holds)
  make_torch_reference.py --check REF_DIR    regenerate into a temporary folder and compare with REF_DIR
  make_torch_reference.py --bench [options]  time LoRA training in PyTorch (the baseline of the figures)

Files written (all safetensors, float32 unless noted; the model adapter is in PEFT's layout):
  ops.safetensors                 op-level inputs, outputs and gradients ("<op>.<tensor>")
  wiki7m_lora/adapter_config.json + adapter_model.safetensors   a PEFT LoRA adapter for wiki-7m
  wiki7m_step.safetensors         tokens, targets, loss, logits of some rows, and the adapter's
                                  gradients ("grad.<PEFT tensor name>")

No transformers or peft package is needed: the model (Llama: RMSNorm, rotary embeddings, grouped-
query attention, SwiGLU) is written out below in a few lines of torch, and LoRA follows PEFT's
definition y = W x + (alpha / r) * B A dropout(x) with PEFT's tensor names.
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("FRUGAL_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
WIKI = os.path.join(SHARED, "models", "wiki-7m")

# ---- safetensors (the format is small enough to write out; no safetensors package needed) ------

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = arr.copy()
    return out


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[arr.dtype]
        blob = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text.encode())
        for b in blobs:
            f.write(b)


def f32(t):
    return t.detach().to(torch.float32).numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float32)


# ---- the ops, as PyTorch computes them --------------------------------------------------------

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_cos_sin(positions, head_dim, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [rows, head_dim/2]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope(x, cos, sin, interleaved):
    """x [rows, heads, head_dim]; pairs (i, i + D/2) (Hugging Face) or (2i, 2i+1) (GGUF, Meta)."""
    c, s = cos[:, None, :], sin[:, None, :]
    if interleaved:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)
    half = x.shape[-1] // 2
    x0, x1 = x[..., :half], x[..., half:]
    return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)


def attention(q, k, v, key_begin=None):
    """q [n_seq, T, H, D], k/v [n_seq, T, Hkv, D]; causal, grouped-query (head h uses kv head
    h // (H / Hkv)); key_begin [n_seq, T]: first key each query may see (packed documents)."""
    n_seq, T, H, D = q.shape
    group = H // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(D)
    t = torch.arange(T)
    allowed = t[None, :] <= t[:, None]  # [T(query), T(key)]
    allowed = allowed[None].expand(n_seq, T, T)
    if key_begin is not None:
        allowed = allowed & (t[None, None, :] >= key_begin[:, :, None])
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    p = torch.softmax(scores, dim=-1)
    return torch.einsum("bhts,bshd->bthd", p, v)


def silu_mul(gate, up):
    return torch.nn.functional.silu(gate) * up


# ---- op-level references ----------------------------------------------------------------------

def op_references():
    rng = np.random.default_rng(1234)
    out = {}

    def leaf(shape, scale=1.0):
        return torch.tensor(rng.standard_normal(shape) * scale, dtype=torch.float64, requires_grad=True)

    def save(op, **tensors):
        for name, t in tensors.items():
            if isinstance(t, torch.Tensor) and t.dtype in (torch.int64, torch.int32):
                out[f"{op}.{name}"] = t.numpy().astype(np.int32)
            else:
                out[f"{op}.{name}"] = f32(t)

    # embedding: repeated tokens add up in the table's gradient
    table = leaf((11, 6))
    tokens = torch.tensor([3, 7, 3, 0, 10, 3, 7, 1, 5])
    y = table[tokens]
    dy = torch.tensor(rng.standard_normal(y.shape))
    y.backward(dy)
    save("embedding", table=table, tokens=tokens, out=y, d_out=dy, d_table=table.grad)

    # RMSNorm
    x, w = leaf((5, 16)), leaf((16,))
    y = rms_norm(x, w, 1e-5)
    dy = torch.tensor(rng.standard_normal(y.shape))
    y.backward(dy)
    save("rms_norm", x=x, weight=w, out=y, d_out=dy, d_x=x.grad, d_weight=w.grad)

    # RoPE, both pairings: x [rows, heads, head_dim] at arbitrary positions
    positions = torch.tensor([0, 5, 17, 300])
    cos, sin = rope_cos_sin(positions, 8, 10000.0, torch.float64)
    for name, inter in (("rope_halves", False), ("rope_pairs", True)):
        x = leaf((4, 3, 8))
        y = rope(x, cos, sin, inter)
        dy = torch.tensor(rng.standard_normal(y.shape))
        y.backward(dy)
        save(name, x=x, positions=positions, out=y, d_out=dy, d_x=x.grad)

    # causal attention with GQA (4 heads over 2 kv heads), two sequences, the second packed with
    # two documents (positions 0-3 and 4-8)
    n_seq, T, H, Hkv, D = 2, 9, 4, 2, 8
    q, k, v = leaf((n_seq, T, H, D)), leaf((n_seq, T, Hkv, D)), leaf((n_seq, T, Hkv, D))
    key_begin = torch.tensor([[0] * T, [0, 0, 0, 0, 4, 4, 4, 4, 4]])
    y = attention(q, k, v, key_begin)
    dy = torch.tensor(rng.standard_normal(y.shape))
    y.backward(dy)
    save("attention", q=q, k=k, v=v, key_begin=key_begin, out=y, d_out=dy, d_q=q.grad, d_k=k.grad, d_v=v.grad)

    # SwiGLU's silu(gate) * up
    gate, up = leaf((4, 10), 3.0), leaf((4, 10))
    y = silu_mul(gate, up)
    dy = torch.tensor(rng.standard_normal(y.shape))
    y.backward(dy)
    save("swiglu", gate=gate, up=up, out=y, d_out=dy, d_gate=gate.grad, d_up=up.grad)

    # linear y = x Wᵀ, and the LoRA linear y = x Wᵀ + s (x Aᵀ) Bᵀ
    x, W = leaf((5, 12)), leaf((7, 12))
    y = x @ W.T
    dy = torch.tensor(rng.standard_normal(y.shape))
    y.backward(dy)
    save("linear", x=x, weight=W, out=y, d_out=dy, d_x=x.grad, d_weight=W.grad)
    x, W, A, B = leaf((5, 12)), leaf((7, 12)), leaf((3, 12)), leaf((7, 3))
    scale = 2.5
    y = x @ W.T + scale * (x @ A.T) @ B.T
    dy = torch.tensor(rng.standard_normal(y.shape))
    y.backward(dy)
    save("lora", x=x, weight=W, a=A, b=B, scale=torch.tensor([scale]), out=y, d_out=dy, d_x=x.grad, d_a=A.grad,
         d_b=B.grad)

    # cross-entropy with a loss mask (target -1: no loss), mean over the counted rows
    logits = leaf((6, 13), 3.0)
    targets = torch.tensor([4, -1, 0, 12, -1, 7])
    keep = targets >= 0
    losses = torch.nn.functional.cross_entropy(logits, targets.clamp(min=0), reduction="none")
    loss = (losses * keep).sum() / keep.sum()
    loss.backward()
    save("cross_entropy", logits=logits, targets=targets, losses=losses * keep, loss=loss.reshape(1),
         d_logits=logits.grad)
    return out


# ---- wiki-7m with LoRA ------------------------------------------------------------------------

def load_wiki(dtype):
    with open(os.path.join(WIKI, "config.json")) as f:
        config = json.load(f)
    weights = {k: torch.tensor(v, dtype=dtype) for k, v in read_safetensors(os.path.join(WIKI, "model.safetensors")).items()}
    return config, weights


TARGETS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
           "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


class Lora:
    """PEFT-style adapters: module path -> (A [r, in], B [out, r], scale)."""

    def __init__(self):
        self.modules = {}

    def apply(self, name, x, y, dropout, training):
        m = self.modules.get(name)
        if m is None:
            return y
        a, b, s = m
        xd = torch.nn.functional.dropout(x, dropout, training) if dropout > 0 else x
        return y + (xd @ a.T) @ b.T * s


def forward(config, W, lora, tokens, positions=None, dropout=0.0, training=False):
    """tokens [n_seq, T] -> logits [n_seq, T, vocab]."""
    n_seq, T = tokens.shape
    d, H, Hkv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    D = config.get("head_dim", d // H)
    eps = config["rms_norm_eps"]
    dtype = W["model.embed_tokens.weight"].dtype
    if positions is None:
        positions = torch.arange(T).repeat(n_seq, 1)
    cos, sin = rope_cos_sin(positions.reshape(-1), D, config.get("rope_theta", 10000.0), dtype)
    x = W["model.embed_tokens.weight"][tokens].reshape(n_seq * T, d)

    def lin(name, inp):
        return lora.apply(name, inp, inp @ W[name + ".weight"].T, dropout, training)

    for l in range(config["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = rope(lin(p + "self_attn.q_proj", h).reshape(-1, H, D), cos, sin, False)
        k = rope(lin(p + "self_attn.k_proj", h).reshape(-1, Hkv, D), cos, sin, False)
        v = lin(p + "self_attn.v_proj", h).reshape(-1, Hkv, D)
        a = attention(q.reshape(n_seq, T, H, D), k.reshape(n_seq, T, Hkv, D), v.reshape(n_seq, T, Hkv, D))
        x = x + lin(p + "self_attn.o_proj", a.reshape(n_seq * T, H * D))
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + lin(p + "mlp.down_proj", silu_mul(lin(p + "mlp.gate_proj", h), lin(p + "mlp.up_proj", h)))
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    return (x @ head.T).reshape(n_seq, T, -1)


def masked_loss(logits, targets):
    keep = targets >= 0
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp(min=0),
                                               reduction="none")
    return (losses * keep.reshape(-1)).sum() / keep.sum()


# The adapter the model references use: rank 4, alpha 8, on every target of layers 0, 3 and 5,
# with PEFT's per-module overrides exercised (rank 2 for down_proj, alpha 4 for o_proj).
ADAPTER = {"r": 4, "lora_alpha": 8.0, "layers": [0, 3, 5], "rank_pattern": {"down_proj": 2},
           "alpha_pattern": {"o_proj": 4.0}}


def make_adapter(config, dtype, seed):
    """A and B both random (PEFT initialises B to zero, which would make A's gradient zero)."""
    gen = torch.Generator().manual_seed(seed)
    lora, tensors = Lora(), {}
    d, ff = config["hidden_size"], config["intermediate_size"]
    D = config.get("head_dim", d // config["num_attention_heads"])
    dims = {"q": (d, config["num_attention_heads"] * D), "k": (d, config["num_key_value_heads"] * D),
            "v": (d, config["num_key_value_heads"] * D), "o": (config["num_attention_heads"] * D, d),
            "gate": (d, ff), "up": (d, ff), "down": (ff, d)}
    for l in ADAPTER["layers"]:
        for t, module in TARGETS.items():
            leaf = module.split(".")[-1]
            r = ADAPTER["rank_pattern"].get(leaf, ADAPTER["r"])
            alpha = ADAPTER["alpha_pattern"].get(leaf, ADAPTER["lora_alpha"])
            n_in, n_out = dims[t]
            a = (torch.rand(r, n_in, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(n_in)
            b = (torch.rand(n_out, r, generator=gen, dtype=torch.float64) * 2 - 1) * 0.05
            name = f"model.layers.{l}.{module}"
            a32, b32 = a.to(torch.float32), b.to(torch.float32)  # what the file holds is the adapter
            tensors[f"base_model.model.{name}.lora_A.weight"] = a32.numpy()
            tensors[f"base_model.model.{name}.lora_B.weight"] = b32.numpy()
            lora.modules[name] = (a32.to(dtype).requires_grad_(True), b32.to(dtype).requires_grad_(True), alpha / r)
    return lora, tensors


def adapter_config():
    return {
        "alpha_pattern": ADAPTER["alpha_pattern"], "auto_mapping": None, "base_model_name_or_path": "wiki-7m",
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layers_pattern": None, "layers_to_transform": ADAPTER["layers"], "lora_alpha": ADAPTER["lora_alpha"],
        "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA", "r": ADAPTER["r"],
        "rank_pattern": ADAPTER["rank_pattern"], "revision": None,
        "target_modules": [m.split(".")[-1] for m in TARGETS.values()], "task_type": "CAUSAL_LM",
        "use_dora": False, "use_rslora": False,
    }


def model_references(out_dir):
    import sentencepiece as spm
    config, W = load_wiki(torch.float64)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(WIKI, "tokenizer.model"))
    texts = ["The history of the city begins with a small settlement on the river, which grew into a market town.",
             "In mathematics, a prime number is a natural number greater than 1 that is not a product of two smaller."]
    T = 24
    rows = [([1] + sp.encode(t))[:T + 1] for t in texts]
    for r in rows:
        assert len(r) == T + 1, "text too short"
    ids = torch.tensor(rows)
    tokens, targets = ids[:, :-1].clone(), ids[:, 1:].clone()
    targets[0, :5] = -1  # a "prompt" without loss
    targets[1, 10:13] = -1
    lora, tensors = make_adapter(config, torch.float64, 42)
    logits = forward(config, W, lora, tokens)
    loss = masked_loss(logits, targets)
    loss.backward()
    step = {"tokens": tokens.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
            "loss": f32(loss.reshape(1)),
            # the last 3 rows of each sequence: enough to compare logits without a 1.5 MB dump
            "logits_last3": f32(logits[:, -3:, :])}
    for name, (a, b, _) in lora.modules.items():
        step[f"grad.base_model.model.{name}.lora_A.weight"] = f32(a.grad)
        step[f"grad.base_model.model.{name}.lora_B.weight"] = f32(b.grad)
    os.makedirs(os.path.join(out_dir, "wiki7m_lora"), exist_ok=True)
    write_safetensors(os.path.join(out_dir, "wiki7m_lora", "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(out_dir, "wiki7m_lora", "adapter_config.json"), "w") as f:
        json.dump(adapter_config(), f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "wiki7m_step.safetensors"), step)


def generate(out_dir):
    torch.set_num_threads(1)  # one thread: reductions in one order, files reproducible
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "ops.safetensors"), op_references())
    model_references(out_dir)


def check(ref_dir):
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        worst = 0.0
        for rel in ("ops.safetensors", "wiki7m_step.safetensors", "wiki7m_lora/adapter_model.safetensors"):
            new, old = read_safetensors(os.path.join(tmp, rel)), read_safetensors(os.path.join(ref_dir, rel))
            if new.keys() != old.keys():
                sys.exit(f"{rel}: tensor names differ")
            for k in new:
                if new[k].shape != old[k].shape:
                    sys.exit(f"{rel}: {k} shape {new[k].shape} != {old[k].shape}")
                err = float(np.max(np.abs(new[k].astype(np.float64) - old[k]))) if new[k].size else 0.0
                scale = float(np.max(np.abs(old[k]))) if old[k].size else 0.0
                worst = max(worst, err / max(scale, 1e-30))
        with open(os.path.join(tmp, "wiki7m_lora/adapter_config.json")) as f1, \
                open(os.path.join(ref_dir, "wiki7m_lora/adapter_config.json")) as f2:
            if json.load(f1) != json.load(f2):
                sys.exit("adapter_config.json differs")
        # float32 roundings of float64 results: a different BLAS may move the last bit
        if worst > 1e-5:
            sys.exit(f"regenerated references differ from {ref_dir}: relative {worst:.3g}")
        print(f"references reproduced (largest relative difference {worst:.3g})")


# ---- the baseline of the training-speed figures -----------------------------------------------

def bench(args):
    """LoRA training steps on wiki-7m in float32 with AdamW: tokens per second."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config, W = load_wiki(torch.float32)
    lora = Lora()
    d = config["hidden_size"]
    D = config.get("head_dim", d // config["num_attention_heads"])
    dims = {"q": (d, config["num_attention_heads"] * D), "k": (d, config["num_key_value_heads"] * D),
            "v": (d, config["num_key_value_heads"] * D), "o": (config["num_attention_heads"] * D, d),
            "gate": (d, config["intermediate_size"]), "up": (d, config["intermediate_size"]),
            "down": (config["intermediate_size"], d)}
    params = []
    for l in range(config["num_hidden_layers"]):
        for t in args.targets.split(","):
            n_in, n_out = dims[t]
            a = torch.empty(args.rank, n_in)
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # PEFT's initialisation
            b = torch.zeros(n_out, args.rank)
            a.requires_grad_(True)
            b.requires_grad_(True)
            lora.modules[f"model.layers.{l}.{TARGETS[t]}"] = (a, b, args.alpha / args.rank)
            params += [a, b]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    V = config["vocab_size"]
    gen = torch.Generator().manual_seed(1)
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(0, V, (args.batch, args.seq + 1), generator=gen)
        t0 = time.perf_counter()
        logits = forward(config, W, lora, ids[:, :-1], dropout=args.dropout, training=True)
        loss = masked_loss(logits, ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step > 0:  # the first step warms up allocators
            times.append(time.perf_counter() - t0)
    tokens = args.batch * args.seq
    best, mean = min(times), sum(times) / len(times)
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "rank": args.rank, "targets": args.targets,
                      "batch": args.batch, "seq": args.seq, "steps": len(times),
                      "tokens_per_s_mean": round(tokens / mean, 1), "tokens_per_s_best": round(tokens / best, 1),
                      "peak_rss_mb": round(peak_rss_mb(), 1)}))


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # MB: 10^6 bytes, as frugal finetune writes it
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="output folder")
    ap.add_argument("--check", metavar="REF_DIR")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--targets", default="q,k,v,o")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    if args.bench:
        bench(args)
    elif args.check:
        check(args.check)
    elif args.out:
        generate(args.out)
    else:
        ap.error("give OUT_DIR, --check REF_DIR or --bench")


if __name__ == "__main__":
    main()
