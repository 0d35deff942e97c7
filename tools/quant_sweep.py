#!/usr/bin/env python3
"""Quantize one model several ways and compare: file size, bits per weight, KL divergence
from the full-precision model, top-1 agreement, ΔPPL, and decode speed (a benchmark: it takes
minutes to hours; nothing here is part of `make test`).

    tools/quant_sweep.py --frugal build/frugal -m MODEL --out DIR [--only REGEX] [--add 'LABEL=ARGS']

Method (llama.cpp's KL-divergence mode): the full-precision model's log-probabilities over the
first --chunks windows of --ctx tokens of --text are saved once (`frugal perplexity
--save-logits`); each quantized file is then compared with them (`--kl-base`). Calibration
(GPTQ, AWQ, importance matrices, --bpw) uses --calib, which must not be the evaluation text.

Labels are "FORMAT METHOD" (the table's two first columns). Decode speed comes from `frugal
bench` (median of 3 runs); on a busy machine it is noisy, so compare speeds from a quiet run.

Writes DIR/quant_sweep.md (the table), DIR/quant_sweep.json (every number) and
DIR/quant_sweep.svg (size against KL divergence and against decode speed). Quantized files are
kept in DIR with their measurements (reused unless --force), so a sweep can be resumed or
extended.
"""
import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time

# label -> quantize arguments ("{calib}" is replaced by the calibration options). "@path" means
# an existing GGUF (e.g. llama.cpp's own quantization) measured as it is.
DEFAULT_CONFIGS = [
    ("q8_0 llama.cpp", "@models/wiki-7m-gguf/wiki-7m-q8_0.gguf"),
    ("q4_0 llama.cpp", "@models/wiki-7m-gguf/wiki-7m-q4_0.gguf"),
    ("q8_0 rtn", "--type q8_0"),
    ("int8_row rtn", "--type int8_row"),
    ("q6_k rtn", "--type q6_k"),
    ("q4_0 rtn", "--type q4_0"),
    ("q4_0 gptq", "--type q4_0 --method gptq {calib}"),
    ("q4_0 awq", "--type q4_0 --method awq {calib}"),
    ("q4_1 rtn", "--type q4_1"),
    ("iq4_nl imatrix", "--type iq4_nl {calib}"),
    ("nf4 rtn", "--type nf4"),
    ("cb4 imatrix", "--type cb4 {calib}"),
    ("int4_g128 rtn", "--type int4_g128"),
    ("int4_g128 gptq", "--type int4_g128 --method gptq {calib}"),
    ("int4_g128 awq", "--type int4_g128 --method awq {calib}"),
    ("q4_k_m rtn", "--type q4_k_m"),
    ("q4_k_m imatrix", "--type q4_k_m {calib}"),
    ("q4_k_m gptq", "--type q4_k_m --method gptq {calib}"),
    ("bpw 4.5 gptq", "--type q4_k --bpw 4.5 --method gptq {calib}"),
    ("q3_k_m imatrix", "--type q3_k_m {calib}"),
    ("q3_k_m gptq", "--type q3_k_m --method gptq {calib}"),
    ("int3_g64 rtn", "--type int3_g64"),
    ("int3_g64 gptq", "--type int3_g64 --method gptq {calib}"),
    ("int3_g64 awq", "--type int3_g64 --method awq {calib}"),
    ("bpw 3.5 gptq", "--type q3_k --bpw 3.5 --method gptq {calib}"),
    ("bpw 3.6 gptq", "--type q3_k --bpw 3.6 --method gptq {calib}"),
    ("bpw 3.7 gptq", "--type q3_k --bpw 3.7 --method gptq {calib}"),
    ("q2_k rtn", "--type q2_k"),
]


def run(cmd, log):
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n" + p.stderr[-5000:] + "\n")
    if p.returncode != 0:
        sys.exit(f"failed (exit {p.returncode}) after {time.monotonic() - start:.0f} s: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout)


def slug(label):
    return re.sub(r"[^a-z0-9_.]+", "-", label.lower()).strip("-")


KL_KEYS = ("kld", "kld_err", "kld_p99", "same_top", "ppl", "ppl_base", "dppl")


def measure(a, path, base, log, before=None):
    """KL-divergence statistics (reused from `before` when it has them) and decode speed."""
    if before and all(k in before for k in KL_KEYS):
        row = {k: before[k] for k in KL_KEYS}
    else:
        j = run([a.frugal, "perplexity", "-m", path, "-f", a.text, "--kl-base", base, "-t", str(a.threads), "--json"],
                log)
        kl = j["kl"]
        row = {"kld": kl["kld"], "kld_err": kl["kld_err"], "kld_p99": kl["kld_p99"], "same_top": kl["same_top"],
               "ppl": j["ppl"], "ppl_base": kl["ppl_base"], "dppl": j["ppl"] - kl["ppl_base"]}
    if a.bench_tokens > 0:
        b = run([a.frugal, "bench", "-m", path, "-t", str(a.threads), "-n", str(a.bench_tokens), "-p", "128", "-r", "3",
                 "--json"], log)
        row["decode_tps"] = b["decode_tokens_per_second"]
        row["prefill_tps"] = b["prefill_tokens_per_second"]
    return row


def svg_plot(rows, path):
    """Two panels: file size (MB) against mean KLD (log scale) and against decode tokens/s."""
    W, H, M = 560, 420, 60
    panels = [("mean KL divergence vs f32 (log scale)", "kld", True)]
    if any("decode_tps" in r for r in rows):
        panels.append(("decode tokens/s", "decode_tps", False))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(panels)}" height="{H}" '
           'font-family="sans-serif" font-size="10">', f'<rect width="100%" height="100%" fill="white"/>']
    colors = {"rtn": "#1f77b4", "imatrix": "#2ca02c", "gptq": "#d62728", "awq": "#9467bd", "bpw": "#ff7f0e",
              "llama.cpp": "#555555"}

    def color(label):
        for k in ("llama.cpp", "bpw", "gptq", "awq", "imatrix"):
            if k in label:
                return colors[k]
        return colors["rtn"]

    xs = [r["size_mb"] for r in rows]
    x0, x1 = min(xs) * 0.95, max(xs) * 1.05
    for p, (title, key, log) in enumerate(panels):
        pts = [r for r in rows if r.get(key) is not None and (not log or r[key] > 0)]
        if not pts:
            continue
        vals = [math.log10(r[key]) if log else r[key] for r in pts]
        y0, y1 = min(vals), max(vals)
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 1, y1 + 1
        pad = (y1 - y0) * 0.08
        y0, y1 = y0 - pad, y1 + pad
        ox = p * W

        def X(v):
            return ox + M + (v - x0) / (x1 - x0) * (W - 2 * M)

        def Y(v):
            return H - M - (v - y0) / (y1 - y0) * (H - 2 * M)

        out.append(f'<rect x="{ox + M}" y="{M}" width="{W - 2 * M}" height="{H - 2 * M}" fill="none" stroke="black"/>')
        out.append(f'<text x="{ox + W / 2}" y="{M - 20}" text-anchor="middle" font-size="13">{title}</text>')
        out.append(f'<text x="{ox + W / 2}" y="{H - 15}" text-anchor="middle" font-size="12">file size (MB)</text>')
        for i in range(6):
            xv = x0 + (x1 - x0) * i / 5
            out.append(f'<text x="{X(xv):.1f}" y="{H - M + 14}" text-anchor="middle">{xv:.2f}</text>')
            yv = y0 + (y1 - y0) * i / 5
            lab = f"{10 ** yv:.2g}" if log else f"{yv:.0f}"
            out.append(f'<text x="{ox + M - 4}" y="{Y(yv) + 3:.1f}" text-anchor="end">{lab}</text>')
            out.append(f'<line x1="{ox + M}" x2="{ox + W - M}" y1="{Y(yv):.1f}" y2="{Y(yv):.1f}" stroke="#ddd"/>')
        for r, v in zip(pts, vals):
            c = color(r["label"])
            out.append(f'<circle cx="{X(r["size_mb"]):.1f}" cy="{Y(v):.1f}" r="3.5" fill="{c}"/>')
            out.append(f'<text x="{X(r["size_mb"]) + 5:.1f}" y="{Y(v) - 4:.1f}" fill="{c}" font-size="8">{r["label"]}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frugal", default="build/frugal")
    ap.add_argument("--shared", default=os.environ.get(
        "FRUGAL_SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")))
    ap.add_argument("-m", "--model", default=None, help="full-precision model (default: wiki-7m's Hugging Face folder)")
    ap.add_argument("--base-model", default=None, help="model whose logits are the reference (default: --model)")
    ap.add_argument("--text", default=None, help="evaluation text (default: wikitext-2 test)")
    ap.add_argument("--calib", default=None, help="calibration text (default: wikitext-2 validation)")
    ap.add_argument("--calib-chunks", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=300)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--bench-tokens", type=int, default=64, help="decode tokens per speed run (0: no speed)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None, help="regular expression: run the configurations whose label matches")
    ap.add_argument("--add", action="append", default=[], help="'LABEL=quantize arguments' (more configurations)")
    ap.add_argument("--force", action="store_true", help="quantize again even when the file exists")
    a = ap.parse_args()
    shared = lambda rel: os.path.join(a.shared, rel)
    a.model = a.model or shared("models/wiki-7m")
    a.base_model = a.base_model or a.model
    a.text = a.text or shared("data/wikitext2/wiki.test.raw")
    a.calib = a.calib or shared("data/wikitext2/wiki.valid.tokens")
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "quant_sweep.log")

    configs = list(DEFAULT_CONFIGS) + [tuple(s.split("=", 1)) for s in a.add]
    if a.only:
        configs = [c for c in configs if re.search(a.only, c[0])]

    base = os.path.join(a.out, f"base-c{a.ctx}-{a.chunks}.bin")
    if not os.path.exists(base):
        run([a.frugal, "perplexity", "-m", a.base_model, "-f", a.text, "-c", str(a.ctx), "--chunks", str(a.chunks),
             "-t", str(a.threads), "--save-logits", base, "--json"], log)
    results_path = os.path.join(a.out, "quant_sweep.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    calib = f"--calib {shlex.quote(a.calib)} --calib-chunks {a.calib_chunks}"
    for label, spec in configs:
        start = time.monotonic()
        done = results.get(label)
        if not a.force and done and "kld" in done and (a.bench_tokens == 0 or "decode_tps" in done):
            print(f"{label}: measured before (--force to redo)")
            continue
        if spec.startswith("@"):
            path = spec[1:] if os.path.isabs(spec[1:]) else shared(spec[1:])
            row = {"label": label, "args": spec, "method": "llama.cpp", "quantize_seconds": 0}
            done = None if a.force else done
        else:
            path = os.path.join(a.out, slug(label) + ".gguf")
            args = shlex.split(spec.replace("{calib}", calib))
            row = {"label": label, "args": " ".join(args)}
            requantize = a.force or not os.path.exists(path) or "method" not in (done or {})
            if requantize:
                done = None
                q = run([a.frugal, "quantize", "-m", a.model, "-o", path, "-t", str(a.threads), "--json", *args], log)
                row.update(method=q["method"], quantize_seconds=q["seconds"], file_type=q["file_type"],
                           parameters=q["parameters"])
            else:
                row.update({k: done[k] for k in ("method", "quantize_seconds", "file_type", "parameters") if k in done})
        size = os.path.getsize(path)
        row["size_mb"] = size / 1e6
        row.update(measure(a, path, base, log, done))
        results[label] = row
        print(f"{label}: {row['size_mb']:.3f} MB, KLD {row['kld']:.5f}, top-1 {100 * row['same_top']:.2f}%, "
              f"ΔPPL {row['dppl']:+.4f}, {time.monotonic() - start:.0f} s", flush=True)
        json.dump(results, open(results_path, "w"), indent=1)

    # bits per weight: file bits (metadata and tokenizer included) per parameter of the model.
    rows = [results[l] for l, _ in configs if l in results]
    n_params = next((r["parameters"] for r in rows if r.get("parameters")), None)
    lines = ["| format | method | bits/weight | file size (MB) | mean KLD | KLD 99% | top-1 agree | ΔPPL | decode tok/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        bpw = f"{8e6 * r['size_mb'] / n_params:.2f}" if n_params else "–"
        speed = f"{r['decode_tps']:.0f}" if "decode_tps" in r else "–"
        fmt_name = r["label"].rsplit(" ", 1)[0] if " " in r["label"] else r["label"]
        lines.append(f"| {fmt_name} | {r['label'].rsplit(' ', 1)[-1]} | {bpw} | {r['size_mb']:.3f} | {r['kld']:.5f} | "
                     f"{r['kld_p99']:.4f} | {100 * r['same_top']:.2f}% | {r['dppl']:+.4f} | "
                     f"{speed} |")
    if rows:
        lines.append("")
        lines.append(f"Base: {os.path.basename(a.base_model)}, PPL {rows[0]['ppl_base']:.4f}; "
                     f"{a.chunks} windows of {a.ctx} tokens of {os.path.basename(a.text)}; "
                     f"calibration {os.path.basename(a.calib)} ({a.calib_chunks} windows); {a.threads} threads.")
    table = "\n".join(lines) + "\n"
    open(os.path.join(a.out, "quant_sweep.md"), "w").write(table)
    svg_plot(rows, os.path.join(a.out, "quant_sweep.svg"))
    print(table)


if __name__ == "__main__":
    main()
