#!/usr/bin/env python3
"""Checks of `frugal perplexity` run as a program, one case per invocation (see CMakeLists.txt).

    ppl_cli_test.py --frugal BIN --shared DIR --tmp DIR CASE [ARGS...]

Every case exits 0 when it holds and prints why not otherwise."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import cli_case  # noqa: E402
from cli_case import Failed, check  # noqa: E402

WIKI = "data/wikitext2/wiki.test.raw"
CTX = 256
# Windows compared for the KL divergence: the setup of the quantization work (llama.cpp's
# method over the first 300 windows of 256 tokens).
KL_CHUNKS = 300


class Runner(cli_case.Runner):
    def __init__(self, args):
        super().__init__(args, "perplexity")

    def run_json(self, *argv):
        p = self.run(*argv, "--json")
        try:
            j = json.loads(p.stdout)
        except json.JSONDecodeError as e:
            raise Failed(f"stdout is not one JSON object ({e}): {p.stdout[:2000]}")
        summary = {k: v for k, v in j.items() if k not in ("running_ppl", "kl")}
        print(json.dumps(summary, indent=1))
        if "kl" in j:
            print(json.dumps({k: v for k, v in j["kl"].items() if not k.endswith("quantiles")}, indent=1))
        return j

    def base_file(self):
        return os.path.join(self.tmp, f"wiki-7m-f32-c{CTX}-{KL_CHUNKS}.bin")

    def error_of(self, *argv):
        p = self.run(*argv, expect_ok=False)
        check(p.returncode == 1, f"exit code {p.returncode}, expected 1")
        check("frugal: error: " in p.stderr, "no 'frugal: error:' line on stderr")
        return p.stderr


def close(value, reference, rel):
    return abs(value / reference - 1) <= rel


def case_ppl_full(r, model, reference):
    """The whole of wiki.test.raw: llama.cpp's perplexity within 0.01% and the same window count."""
    ref = json.load(open(r.path(reference)))
    j = r.run_json("-m", r.path(model), "-f", r.path(WIKI), "-c", str(ref["ctx"]), "-t", "2")
    print(f"frugal PPL {j['ppl']:.4f} +/- {j['ppl_err']:.5f}, llama.cpp {ref['ppl']} +/- {ref['ppl_err']}; "
          f"{j['chunks']} windows in {j['seconds']:.1f} s ({j['tokens_per_second']:.0f} tokens/s)")
    check(j["chunks"] == ref["chunks"], f"{j['chunks']} windows, llama.cpp had {ref['chunks']}: the tokenization differs")
    check(j["ctx"] == ref["ctx"], "context")
    check(j["tokens_scored"] == ref["chunks"] * (ref["ctx"] - 1 - ref["ctx"] // 2), "tokens scored")
    check(len(j["running_ppl"]) == j["chunks"] and j["running_ppl"][-1] == j["ppl"], "running perplexities")
    # 1e-4: frugal is within 3e-5 of llama.cpp for f32, Q8_0 and Q4_0 (2026-11-24), while llama.cpp's
    # own f32 and Q4_0 figures are 3.1e-4 apart, so the wrong weights or a broken dequantization
    # fail here (0.1% let them through).
    check(close(j["ppl"], ref["ppl"], 1e-4), f"PPL {j['ppl']} is not within 0.01% of llama.cpp's {ref['ppl']}")
    # The error estimate is llama.cpp's formula over (nearly) the same NLLs.
    check(close(j["ppl_err"], ref["ppl_err"], 1e-3), f"PPL error {j['ppl_err']} vs llama.cpp's {ref['ppl_err']}")


def case_save_base(r):
    """The f32 model's log-probabilities over the first KL_CHUNKS windows."""
    base = r.base_file()
    if os.path.exists(base):
        os.remove(base)
    j = r.run_json("-m", r.path("models/wiki-7m-gguf/wiki-7m-f32.gguf"), "-f", r.path(WIKI), "-c", str(CTX),
                   "--chunks", str(KL_CHUNKS), "-t", "2", "--save-logits", base)
    check(j["chunks"] == KL_CHUNKS, "windows")
    check(j.get("save_logits") == base, "save_logits in the JSON")
    n_rows = KL_CHUNKS * (CTX - 1 - CTX // 2)
    check(os.path.getsize(base) > n_rows * 2 * 4096, f"{base} is only {os.path.getsize(base)} bytes")
    leftovers = [f for f in os.listdir(r.tmp) if ".tmp-" in f]
    check(not leftovers, f"temporary files left: {leftovers}")


def case_kl(r, model, min_kld, max_kld):
    """A quantized model against the f32 base: llama.cpp's KL-divergence figures."""
    j = r.run_json("-m", r.path(model), "-f", r.path(WIKI), "--kl-base", r.base_file(), "-t", "2")
    kl = j["kl"]
    print(f"{os.path.basename(model)}: mean KLD {kl['kld']:.6f} +/- {kl['kld_err']:.6f}, median {kl['kld_median']:.6f}, "
          f"99% {kl['kld_p99']:.6f}, 99.9% {kl['kld_p99_9']:.6f}, same top {100 * kl['same_top']:.3f}%, "
          f"PPL {j['ppl']:.4f} vs base {kl['ppl_base']:.4f} (ratio {kl['ppl_ratio']:.6f}), RMS dp {100 * kl['rms_dp']:.3f}%")
    check(j["chunks"] == KL_CHUNKS and j["ctx"] == CTX, "the base's windows are used when -c and --chunks are not given")
    check(kl["tokens"] == KL_CHUNKS * (CTX - 1 - CTX // 2), "tokens compared")
    # The lower bound tells a quantized model from the base's own weights (noise: ~1e-7).
    check(min_kld < kl["kld"] < max_kld, f"mean KLD {kl['kld']} outside ({min_kld}, {max_kld})")
    check(kl["kld_err"] < kl["kld"], "KLD uncertainty")
    check(kl["kld_quantiles"]["min"] <= kl["kld_median"] <= kl["kld_p99"] <= kl["kld_p99_9"] <= kl["kld_max"],
          "KLD quantiles out of order")
    check(kl["same_top"] > 0.9, f"top token agrees only {kl['same_top']}")
    check(abs(kl["ppl_ratio"] - 1) < 0.01, "PPL ratio")
    check(abs(math.log(kl["ppl_ratio"]) - kl["ln_ppl_ratio"]) < 1e-9, "ln PPL ratio")


def case_kl_self(r):
    """The same weights (the Hugging Face folder) against the f32 GGUF's base: nothing but the
    compression's noise; also checks that both tokenizers give the same tokens."""
    j = r.run_json("-m", r.path("models/wiki-7m"), "-f", r.path(WIKI), "--kl-base", r.base_file(), "--chunks", "20",
                   "-t", "2")
    kl = j["kl"]
    check(j["chunks"] == 20, "--chunks limits the windows compared")
    check(abs(kl["kld"]) < 5e-6, f"mean KLD {kl['kld']} of a model against itself")
    check(kl["kld_max"] < 8 / 65535, f"largest KLD {kl['kld_max']}: more than the compression's half step")
    check(kl["same_top"] == 1.0, f"same top {kl['same_top']}")
    check(abs(kl["ppl_ratio"] - 1) < 1e-5, f"PPL ratio {kl['ppl_ratio']}")
    check(kl["rms_dp"] < 1e-4, f"RMS dp {kl['rms_dp']}")
    # Without -f, the text the base was made from (llama-perplexity's KL mode needs none).
    j2 = r.run_json("-m", r.path("models/wiki-7m"), "--kl-base", r.base_file(), "--chunks", "20", "-t", "2")
    check(j2["kl"] == kl and j2["text"] == r.path(WIKI), f"--kl-base without -f: {j2['text']}")


def case_kl_mismatch(r):
    """A base from another context or another text is refused with a message saying so."""
    model = r.path("models/wiki-7m-gguf/wiki-7m-q8_0.gguf")
    e = r.error_of("-m", model, "-f", r.path(WIKI), "--kl-base", r.base_file(), "-c", "128")
    check(f"windows of {CTX} tokens, not 128" in e, "context mismatch message")
    e = r.error_of("-m", model, "-f", r.path("data/wikitext2/wiki.valid.tokens"), "--kl-base", r.base_file())
    check("another text" in e and "wiki.test.raw" in e, "text mismatch message")
    e = r.error_of("-m", model, "-f", r.path(WIKI), "--kl-base", r.base_file(), "--chunks", str(KL_CHUNKS + 1))
    check(f"holds {KL_CHUNKS} windows" in e, "too many windows message")
    not_a_base = r.path("models/wiki-7m/config.json")
    e = r.error_of("-m", model, "-f", r.path(WIKI), "--kl-base", not_a_base)
    check("not a frugal log-probability file" in e and not_a_base in e, "not-a-base message")
    e = r.error_of("-m", model, "-f", r.path(WIKI), "--kl-base", r.base_file(), "--save-logits", r.base_file() + ".x")
    check("--save-logits and --kl-base" in e, "both flags message")


def case_bad_input(r):
    """A text too short for one window, and a text that cannot be read."""
    model = r.path("models/wiki-7m-gguf/wiki-7m-f32.gguf")
    short = os.path.join(r.tmp, "short.txt")
    with open(short, "w") as f:
        f.write("Only a few words here.\n")
    e = r.error_of("-m", model, "-f", short, "-c", str(CTX))
    check(short in e and f"window of {CTX} tokens" in e, "short-text message names the file and the window")
    tokens = int(e.split("the text is ")[1].split(" ")[0])
    check(0 < tokens < CTX, f"short-text message gives the token count ({tokens})")
    missing = os.path.join(r.tmp, "no-such-text.raw")
    e = r.error_of("-m", model, "-f", missing)
    check(missing in e, "missing-file message names it")
    e = r.error_of("-m", model, "-f", r.path(WIKI), "-c", "2")
    check("at least 3" in e, "tiny context message")
    e = r.error_of("-m", model, "-f", r.path(WIKI), "-c", "0")  # not "0 (the model's)" as elsewhere
    check("-c 0: a perplexity window needs at least 3 tokens" in e, f"-c 0 message: {e}")
    e = r.error_of("-m", model)
    check("-f/--file is required" in e, "no text and no base")


def case_plain_output(r):
    """Plain output: llama.cpp's running list and final line on stdout, equal to --json's numbers."""
    model = r.path("models/wiki-7m-gguf/wiki-7m-f32.gguf")
    argv = ["-m", model, "-f", r.path(WIKI), "-c", "128", "--chunks", "4", "-t", "2"]
    p = r.run(*argv)
    lines = p.stdout.splitlines()
    print(p.stdout)
    check(lines[0].startswith("[1]") and "[4]" in lines[0] and "[5]" not in lines[0], "running list")
    check(lines[1].startswith("Final estimate: PPL = "), "final line")
    j = r.run_json(*argv)
    check(lines[1] == f"Final estimate: PPL = {j['ppl']:.4f} +/- {j['ppl_err']:.5f}", "plain and JSON agree")
    check(lines[0].split(",")[3] == f"[4]{j['running_ppl'][3]:.4f}", "running PPL of the 4th window")
    # What else sets the figures is in the JSON; the batch is the rows a forward ran.
    check(j["kv_type"] == "f16" and j["w8a8"] is False and j["lora"] == [] and j["tokenizer"] is None,
          f"configuration fields: {j}")
    check(j["batch"] == 4 * 128, f"rows per forward {j['batch']}: 4 windows of 128")
    # One scored token has no uncertainty: null and "n/a", not 0 (which reads as exact).
    argv = ["-m", model, "-f", r.path(WIKI), "-c", "3", "--chunks", "1", "-t", "1"]
    j = r.run_json(*argv)
    check(j["tokens_scored"] == 1 and j["ppl_err"] is None, f"one token's PPL error: {j['ppl_err']}")
    check("+/- n/a" in r.run(*argv).stdout, "plain output of an unknown error")


CASES = {
    "ppl_full": case_ppl_full,
    "save_base": case_save_base,
    "kl": lambda r, model, lo, hi: case_kl(r, model, float(lo), float(hi)),
    "kl_self": case_kl_self,
    "kl_mismatch": case_kl_mismatch,
    "bad_input": case_bad_input,
    "plain_output": case_plain_output,
    "remove_base": lambda r: os.path.exists(r.base_file()) and os.remove(r.base_file()),
}


if __name__ == "__main__":
    sys.exit(cli_case.main(Runner, CASES))
