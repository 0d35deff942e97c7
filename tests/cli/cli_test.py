#!/usr/bin/python3
"""End-to-end tests of `frugal generate` and `frugal chat`: run the binary as a user would and
check stdout byte for byte, stderr and the exit status.

usage: cli_test.py FRUGAL SHARED_DIR TEST_NAME
"""
import fcntl
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import gguf_file  # noqa: E402

FRUGAL, SHARED, NAME = sys.argv[1], sys.argv[2], sys.argv[3]
STORIES = [
    "-m", f"{SHARED}/models/stories260K/stories260K.bin",
    "--tokenizer", f"{SHARED}/models/stories260K/tok512.bin",
]
WIKI_HF = f"{SHARED}/models/wiki-7m"
WIKI_GGUF = f"{SHARED}/models/wiki-7m-gguf/wiki-7m-f32.gguf"


def run(args, stdin=b""):
    # One thread: the tests share a small machine, and a spinning pool slows everything down.
    threads = [] if "-t" in args or "--threads" in args or args[0] == "lora" else ["-t", "1"]
    return subprocess.run([FRUGAL] + args + threads, input=stdin, capture_output=True, timeout=120)


def ok(p):
    if p.returncode != 0:
        sys.exit(f"exit status {p.returncode}; stderr:\n{p.stderr.decode(errors='replace')}")
    return p.stdout


def expect(cond, message):
    if not cond:
        sys.exit("FAILED: " + message)


def reference(prompt):
    with open(f"{SHARED}/reference/wiki-7m/greedy-f32.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["prompt"] == prompt:
                return r["completion_text"]
    sys.exit(f"no reference for {prompt!r}")


def expect_user_error(args, mentions, stdin=b""):
    """One "frugal: error: ..." line on stderr naming the problem, exit status 1 (not a crash)."""
    p = run(args, stdin)
    err = p.stderr.decode(errors="replace")
    lines = [l for l in err.splitlines() if l.strip()]
    expect(p.returncode == 1, f"{args}: exit status {p.returncode}, expected 1; stderr: {err}")
    expect(len(lines) == 1 and lines[0].startswith("frugal: error: "), f"{args}: stderr is not one error line: {err!r}")
    for m in mentions:
        expect(m in lines[0], f"{args}: the error does not mention {m!r}: {lines[0]}")
    expect(p.stdout == b"", f"{args}: printed on stdout: {p.stdout!r}")


def expect_error_line(args, line, stdin=b""):
    """Exactly this one line on stderr, nothing on stdout, exit status 1."""
    p = run(args, stdin)
    expect(p.returncode == 1 and p.stderr.decode(errors="replace") == line + "\n" and p.stdout == b"",
           f"{args}: exit status {p.returncode}, stderr {p.stderr!r}, expected {line!r}; stdout {p.stdout[:200]!r}")


# ---- generate ---------------------------------------------------------------------------------

def test_stories260k_matches_llama2c():
    # The reference is llama2.c's `run stories260K.bin -z tok512.bin -t 0.0 -n 200`. llama2.c's -n
    # counts positions, BOS included: its loop forwards positions 0..199 and prints the token each
    # one samples, so 200 generated tokens (-n 199 or 201 here give a different text). After the
    # loop llama2.c prints "\n"; that newline is not generated text, and frugal prints only
    # generated text to a pipe, so the honest comparison is frugal's stdout + "\n".
    out = ok(run(["generate"] + STORIES + ["-p", "", "--temp", "0", "-n", "200"]))
    with open(f"{SHARED}/models/stories260K/reference_llama2c_run_t0_n200.txt", "rb") as f:
        ref = f.read()
    expect(out + b"\n" == ref, f"stdout differs from llama2.c:\n{out!r}\n{ref!r}")


def test_stories260k_stops_at_the_end_of_a_story():
    # run.c stops when it samples BOS, which separates the stories these models were trained
    # on; without that, generation went on into story after story until the context was full.
    p = run(["generate"] + STORIES + ["-p", "", "--temp", "0", "-v"])
    out, err = ok(p).decode(), p.stderr.decode()
    expect("finished: eos" in err, f"not stopped at the end of the story: {err[-300:]!r}")
    expect(out.count("Once upon a time") == 1, f"more than one story: {out!r}")


def wiki_greedy(model):
    # The reference is llama.cpp's server with ignore_eos for 32 tokens, greedy.
    for prompt in ["", "The history of the city", "In mathematics, a prime number is"]:
        out = ok(run(["generate", "-m", model, "-p", prompt, "--temp", "0", "--ignore-eos", "-n", "32"]))
        expect(out.decode("utf-8") == reference(prompt),
               f"{model} {prompt!r}: {out.decode('utf-8')!r} != {reference(prompt)!r}")


def test_wiki7m_hf_greedy():
    wiki_greedy(WIKI_HF)


def test_wiki7m_gguf_greedy():
    wiki_greedy(WIKI_GGUF)


def test_runs_on_cpus_without_avx512():
    # The kernels are chosen at run time, so one binary must run on every x86-64 CPU. A test on
    # the build machine only runs its own ISA: under qemu-x86_64 (user mode, Debian's
    # qemu-user; its TCG has no AVX-512 whatever the host) the binary meets an x86-64 baseline
    # CPU and an AVX2 one. Until 2026-11-24 every model load on an AVX2 CPU died of SIGILL:
    # the AVX-512 table was filled, with AVX-512 stores, before the CPU was asked.
    qemu = shutil.which("qemu-x86_64")
    expect(qemu is not None, "qemu-x86_64 not found: scripts/install-deps.sh installs qemu-user")
    with open(f"{SHARED}/models/stories260K/reference_llama2c_run_t0_n200.txt", "rb") as f:
        stories_ref = f.read()
    q4 = ["-m", f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q4_0.gguf", "-p", "The history of the city", "--temp", "0",
          "--ignore-eos", "-n", "24", "-t", "2"]
    host_isas = ok(run(["--version"])).decode()
    for cpu, isa in [("qemu64", "scalar"), ("Haswell", "avx2")]:
        def emulated(args):
            p = subprocess.run([qemu, "-cpu", cpu, FRUGAL] + args, capture_output=True, timeout=300)
            expect(p.returncode == 0, f"-cpu {cpu} {args[:3]}: exit status {p.returncode}; stderr:\n"
                   + p.stderr.decode(errors="replace")[-2000:])
            return p.stdout
        version = emulated(["--version"]).decode()
        expect(f"kernels on this CPU: {isa}" in version, f"-cpu {cpu} should run {isa} kernels: {version!r}")
        out = emulated(["generate"] + STORIES + ["-p", "", "--temp", "0", "-n", "200"])
        expect(out + b"\n" == stories_ref, f"-cpu {cpu}: stories260K differs from llama2.c:\n{out!r}")
        # The quantized kernels too: the same ISA gives the same tokens as on the host.
        emulated_q4 = emulated(["generate"] + q4)
        if isa == "scalar" or "avx2" in host_isas or "avx512" in host_isas:
            env = dict(os.environ, FRUGAL_ISA=isa)
            native = subprocess.run([FRUGAL, "generate"] + q4, capture_output=True, timeout=120, env=env)
            expect(ok(native) == emulated_q4, f"-cpu {cpu}: wiki-7m Q4_0 differs from the host's {isa} kernels:\n"
                   f"{emulated_q4!r}\n{native.stdout!r}")


def test_prompt_from_file():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prompt.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("The history of the city\n")  # one trailing newline is dropped, as in llama.cpp
        out = ok(run(["generate", "-m", WIKI_GGUF, "-f", path, "--temp", "0", "--ignore-eos", "-n", "32"]))
    expect(out.decode("utf-8") == reference("The history of the city"), f"-f gave {out!r}")


def test_stop_string_and_timings():
    greedy = ["generate"] + STORIES + ["-p", "", "--temp", "0", "-n", "60"]
    full = ok(run(greedy)).decode()
    stop = "named"
    expect(stop in full, f"{stop!r} not in {full!r}")
    p = run(greedy + ["--stop", "never there", "--stop", stop])
    expect(ok(p).decode() == full[: full.index(stop)], f"--stop gave {p.stdout!r}")
    err = p.stderr.decode()
    for word in ["prompt: 1 tokens", "tokens/s", "generation: ", "first token after"]:
        expect(word in err, f"stderr lacks {word!r}: {err}")


def test_sampling_seed_reproducible():
    args = ["generate"] + STORIES + ["-p", "Once upon a time", "-n", "40", "--temp", "1", "--seed", "123"]
    a, b = ok(run(args)), ok(run(args))
    c = ok(run(args[:-1] + ["124"]))
    expect(a == b, f"same seed, different text:\n{a!r}\n{b!r}")
    expect(a != c, "different seeds gave the same 40 tokens")
    # llama.cpp's spellings: a negative temperature is greedy, a negative top-k is off.
    greedy = ["generate"] + STORIES + ["-p", "Once upon a time", "-n", "20"]
    expect(ok(run(greedy + ["--temp", "-1"])) == ok(run(greedy + ["--temp", "0"])), "--temp -1 is not greedy")
    expect(ok(run(args + ["--top-k", "-1"])) == ok(run(args + ["--top-k", "0"])), "--top-k -1 is not off")


def test_truncate_keep_end():
    long_prompt = "Once upon a time there was a little girl named Lily who loved to play outside"
    args = ["generate"] + STORIES + ["-p", long_prompt, "-c", "12", "-n", "3", "--temp", "0"]
    expect_user_error(args, ["tokens", "12", "--truncate", "stay free"])
    # With -n 0 nothing is generated: the message does not ask for a free position.
    p = run(["generate"] + STORIES + ["-p", long_prompt, "-c", "12", "-n", "0"])
    expect(p.returncode == 1 and b"stay free" not in p.stderr and b"--truncate" in p.stderr, f"-n 0: {p.stderr!r}")
    p = run(args + ["--truncate", "keep-end"])
    ok(p)
    expect(b"truncated" in p.stderr, f"no truncation note: {p.stderr!r}")
    # -n 0 (evaluate only) keeps a whole context of prompt: no room is left for an answer.
    p = run(["generate"] + STORIES + ["-p", long_prompt, "-c", "12", "-n", "0", "--truncate", "keep-end"])
    expect(b"prompt: 12 tokens" in ok(p) + p.stderr, f"-n 0 keep-end: {p.stderr!r}")


def test_bad_input():
    expect_user_error(["generate", "-m", "/nonexistent/model.gguf"], ["/nonexistent/model.gguf"])
    expect_user_error(["generate"] + STORIES + ["-f", "/nonexistent/prompt.txt"], ["/nonexistent/prompt.txt"])
    expect_user_error(["generate"] + STORIES[:2], ["--tokenizer"])  # llama2.c checkpoint without its vocabulary
    expect_user_error(["generate"] + STORIES + ["--threads", "-2"], ["--threads"])
    expect_user_error(["generate"] + STORIES + ["--kv-type", "q8"], ["--kv-type", "q8"])
    expect_user_error(["generate"] + STORIES + ["-n", "-5"], ["--n-predict"])
    expect_user_error(["generate"] + STORIES + ["--top-p", "2"], ["--top-p"])
    expect_user_error(["generate"] + STORIES + ["--temp", "nan"], ["--temp"])
    expect_user_error(["generate"] + STORIES + ["--truncate", "middle"], ["--truncate"])
    expect_user_error(["generate"] + STORIES + ["-p", "a", "-f", "/etc/hostname"], ["-p", "-f"])
    with tempfile.TemporaryDirectory() as d:
        expect_user_error(["generate"] + STORIES + ["-f", d], [d])  # a folder is not a prompt file
    # A mistyped FRUGAL_ISA is the user's error, named, not an internal check's abort.
    os.environ["FRUGAL_ISA"] = "avx5l2"
    try:
        expect_user_error(["generate"] + STORIES + ["-n", "1"], ["FRUGAL_ISA", "avx5l2"])
    finally:
        del os.environ["FRUGAL_ISA"]


def test_prompt_escapes():
    # As llama.cpp's -e (on by default): -p reads \n, \r, \t, \', \", \\ and \xHH; an unknown escape,
    # a lone \x and a last backslash stay as written. -p 'The cat\nThe dog' fed a backslash and an 'n'.
    base = ["generate", "-m", WIKI_HF, "-n", "8", "--temp", "0"]
    expect(ok(run(base + ["-p", "The cat\\nThe dog"])) == ok(run(base + ["-p", "The cat\nThe dog"])), "\\n is not read")
    for escaped, text in (("The cat\\nThe dog", "The cat\nThe dog"),
                          ("A\\x41\\tB\\\\C\\'D\\\"E\\rF", "AA\tB\\C'D\"E\rF"),
                          ("an \\q, a \\x4 and a \\xZZ stay, and so does a last \\", None)):
        out = ok(run(base + ["-p", escaped]))
        expect(out == ok(run(base + ["-e", "-p", escaped])), f"-e changed {escaped!r}")
        expect(out == ok(run(base + ["--no-escape", "-p", escaped if text is None else text])),
               f"-p {escaped!r} is not read as {text!r}: {out!r}")
    expect(ok(run(base + ["-p", "The cat\\nThe dog"])) != ok(run(base + ["-p", "The cat\\nThe dog", "--no-escape"])),
           "--no-escape still reads the escapes")
    # --stop too: \x6eamed is "named".
    greedy = ["generate"] + STORIES + ["-p", "", "--temp", "0", "-n", "60"]
    full = ok(run(greedy)).decode()
    expect(ok(run(greedy + ["--stop", "\\x6eamed"])).decode() == full[: full.index("named")], "--stop \\x6eamed")
    expect(ok(run(greedy + ["--stop", "\\x6eamed", "--no-escape"])).decode() == full, "--no-escape --stop")
    # A -f file is taken as written (llama.cpp reads escapes there too).
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("The cat\\nThe dog")
        f.flush()
        expect(ok(run(base + ["-f", f.name])) == ok(run(base + ["--no-escape", "-p", "The cat\\nThe dog"])),
               "-f read the file's escapes")


def test_llama_cpp_single_dash_flags_are_refused():
    # CLI11 read them as bundled short options: -hf as -h -f (the help, exit 0), -fa as -f a (a
    # prompt file named 'a'), -ngl 99 as -n gl, -sys as -s ys, -cnv as -c nv.
    why = "llama.cpp's multi-letter single-dash flags are not read"
    gpu = "frugal runs on the CPU: it has no GPU offload or flash attention flags"
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/a", "w") as f:
            f.write("The history")
        for args, flag, hint in (
                (["generate", "-hf", "ggml-org/gemma-3-1b-it-GGUF", "-p", "hi"], "-hf",
                 "frugal reads models from disk: download one and give it with -m"),
                (["generate", "-m", WIKI_HF, "-n", "4", "-fa"], "-fa", gpu),
                (["generate", "-m", WIKI_HF, "-p", "hi", "-ngl", "99"], "-ngl", gpu),
                (["generate", "-m", WIKI_HF, "-p", "hi", "-cnv"], "-cnv", "frugal chat is the conversation mode"),
                (["generate", "-m", WIKI_HF, "-p", "hi", "-no-cnv"], "-no-cnv",
                 "frugal generate never converses: frugal chat does"),
                (["chat", "-m", WIKI_HF, "-sys", "Be brief"], "-sys", "the system message is frugal chat's --system"),
                (["serve", "-m", WIKI_HF, "-np", "4"], "-np",
                 "frugal serve's --parallel or --np sets the sequences served together"),
                (["generate", "-m", WIKI_HF, "-pHello"], "-pHello", "for -p with the value 'Hello', write -p Hello"),
                (["lora", "merge", "-m", WIKI_HF, "--lora", d, "-o", f"{d}/out", "-hff", "x"], "-hff",
                 "frugal reads models from disk: download one and give it with -m"),
                (["perplexity", "-m", WIKI_HF, "-f", f"{d}/a", "-kvu"], "-kvu", None)):
            p = subprocess.run([os.path.abspath(FRUGAL)] + args, input=b"hi\n", capture_output=True, timeout=120, cwd=d)
            line = f"frugal: error: '{flag}' is not a frugal flag: {why} ({hint + '; ' if hint else ''}see --help)\n"
            expect(p.returncode == 1 and p.stderr.decode() == line and p.stdout == b"",
                   f"{args}: exit {p.returncode}, stdout {p.stdout[:100]!r}, stderr {p.stderr!r}")
        expect(not os.path.exists(f"{d}/out"), "lora merge ran")
    # A short flag with its value joined (-n4, -c64, -s1, -m/path) is read as before, and a value
    # that looks like a flag is a value: -p -ngl is a prompt, --top-k -1 and -s -1 numbers.
    spaced = ok(run(["generate", "-m", WIKI_HF, "-n", "4", "-c", "64", "-s", "1", "-p", "hi"]))
    expect(ok(run(["generate", "-m" + WIKI_HF, "-n4", "-c64", "-s1", "-p", "hi", "-t1"])) == spaced, "joined values")
    greedy = ["generate", "-m", WIKI_HF, "-n", "4", "--temp", "0", "--top-k", "-1", "-s", "-1"]
    expect(ok(run(greedy + ["-p", "-ngl"])) == ok(run(greedy + ["--prompt=-ngl"])), "-p -ngl")
    expect(ok(run(greedy + ["-p", "-ngl"])) != ok(run(greedy + ["-p", "hi"])), "-p -ngl is not the prompt")
    ok(run(["chat", "-m", WIKI_HF, "-n", "2", "--chat-template", "chatml", "--system", "-sys"], b"hi\n"))


def test_sampling_errors_name_the_flags():
    # The sampler's checks named its fields ("top_p must be ..."); the CLI names the flags. The
    # server keeps the JSON names (tests/server).
    for flag, value, message in (
            ("--temp", "nan", "--temp must be a number (got nan)"),
            ("--top-p", "1.5", "--top-p must be between 0 and 1 (got 1.5)"),
            ("--top-p", "nan", "--top-p must be a number (got nan)"),
            ("--min-p", "-1", "--min-p must be between 0 and 1 (got -1)"),
            ("--repeat-penalty", "0", "--repeat-penalty must be more than 0 (got 0; 1 is off)"),
            ("--repeat-last-n", "-2", "--repeat-last-n must be -1 (the whole context), 0 (off) or more (got -2)"),
            ("--frequency-penalty", "inf", "--frequency-penalty must be a finite number (got inf)"),
            ("--presence-penalty", "-inf", "--presence-penalty must be a finite number (got -inf)")):
        expect_error_line(["generate", "-m", WIKI_HF, "-p", "x", "-n", "1", flag, value], "frugal: error: " + message)
        expect_error_line(["chat", "-m", WIKI_HF, "-n", "1", flag, value], "frugal: error: " + message, b"hi\n")


def test_integers_past_64_bits_are_refused():
    # CLI11 reads integers with strtoll and does not look at ERANGE: -n 99999999999999999999 ran as
    # -n 9223372036854775807, and -s quoted that number back.
    big = "99999999999999999999"
    text = f"{SHARED}/data/wikitext2/wiki.test.raw"
    for args, flag, value in ((["generate", "-m", WIKI_HF, "-p", "x", "-c", "8", "-n", big], "--n-predict", big),
                              (["generate", "-m", WIKI_HF, "-p", "x", "-s", big], "--seed", big),
                              (["generate", "-m", WIKI_HF, "-p", "x", "-c", "-" + big], "--ctx-size", "-" + big),
                              (["generate", "-m", WIKI_HF, "-p", "x", "-n", "0x10000000000000000"], "--n-predict",
                               "0x10000000000000000"),
                              (["chat", "-m", WIKI_HF, "-n", big], "--n-predict", big),
                              (["serve", "-m", WIKI_HF, "--max-body", big], "--max-body", big),
                              (["perplexity", "-m", WIKI_HF, "-f", text, "--chunks", big], "--chunks", big)):
        expect_error_line(args, f"frugal: error: {flag}: {value} is out of the 64-bit integer range (see --help)",
                          b"hi\n")
    # The largest 64-bit integer is still one.
    p = run(["generate", "-m", WIKI_HF, "-p", "x", "-c", "8", "-n", "9223372036854775807", "--temp", "0"])
    ok(p)
    expect(b"stopped after 6 of the 9223372036854775807 tokens asked for" in p.stderr, f"{p.stderr!r}")


# ---- bench ------------------------------------------------------------------------------------
def test_bench_json_and_batched_decode():
    # Every figure is measured and positive, including the batched decode of --parallel
    # sequences; the KV cache is sized for that many contexts.
    p = ok(run(["bench", "-m", WIKI_HF, "-t", "2", "-p", "8", "-n", "4", "-r", "1", "--parallel", "4", "--json"]))
    r = json.loads(p)
    for key in ("prefill_tokens_per_second", "decode_tokens_per_second", "batched_decode_tokens_per_second",
                "batched_decode_ms_per_step", "decode_pct_of_bandwidth", "prefill_pct_of_peak",
                "weight_bytes_per_token", "peak_rss_bytes"):
        expect(r[key] > 0, f"{key} = {r[key]}")
    # wiki-7m is f32: its products run on the FMA units, and the bound is their peak.
    expect(r["prefill_unit"] == "fp32 FMA", f"prefill unit {r['prefill_unit']}")
    # A unit this CPU lacks has no peak (null), not a peak of 0: AVX2 has no bf16 dot, scalar code
    # neither kind.
    for unit, isas in (("int8_dot_peak_gflops", ("avx2", "avx512")), ("bf16_dot_peak_gflops", ("avx512",))):
        peak = r["machine"][unit]
        expect(peak > 0 if r["isa"] in isas else peak is None, f"{r['isa']}: {unit} {peak}")
    expect(r["frugal_version"].startswith("0."), f"frugal_version {r.get('frugal_version')}")
    expect(r["parallel"] == 4 and r["threads"] == 2, f"parallel {r['parallel']}, threads {r['threads']}")
    expect(r["kv_capacity_tokens"] >= 4 * (8 + 4), f"the KV cache holds {r['kv_capacity_tokens']} positions")
    expect(abs(r["batched_decode_tokens_per_second"] * r["batched_decode_ms_per_step"] / 1e3 - 4) < 1e-6,
           "aggregate tokens/s is not 4 sequences per step")
    text = ok(run(["bench", "-m", WIKI_HF, "-p", "8", "-n", "4", "-r", "1", "--parallel", "2"])).decode()
    expect("2 sequences decoding together" in text, text)
    # A quantized model's products run on the int8 units: the bound is theirs, not the FMA's.
    q = json.loads(ok(run(["bench", "-m", f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q4_0.gguf", "-p", "8", "-n", "4",
                           "-r", "1", "--json"])))
    expect(q["prefill_unit"] == "int8 dot" or q["isa"] == "scalar", f"Q4_0 prefill unit {q['prefill_unit']}")
    expect(q["batched_decode_tokens_per_second"] is None, "batched figures without --parallel")
    # $ and energy per million tokens, from the machine's price and power draw.
    c = json.loads(ok(run(["bench", "-m", WIKI_HF, "-p", "8", "-n", "4", "-r", "1", "--parallel", "2", "--json",
                           "--price-per-hour", "1.2", "--watts", "250"])))
    for key, tps in (("per_million_decode_tokens", c["decode_tokens_per_second"]),
                     ("per_million_batched_tokens", c["batched_decode_tokens_per_second"]),
                     ("per_million_prompt_tokens", c["prefill_tokens_per_second"])):
        expect(abs(c[key]["usd"] - 1.2 * 1e6 / tps / 3600) < 1e-9 * c[key]["usd"], f"{key}: {c[key]}")
        expect(abs(c[key]["kwh"] - 250 * 1e6 / tps / 3.6e6) < 1e-9 * c[key]["kwh"], f"{key}: {c[key]}")
    expect(c["watts_source"] == "given", c["watts_source"])
    expect(q["per_million_decode_tokens"]["usd"] is None, "a cost without a price")
    text = ok(run(["bench", "-m", WIKI_HF, "-p", "8", "-n", "4", "-r", "1", "--price-per-hour", "2"])).decode()
    expect("per million tokens decoded" in text and "at $2.00 an hour" in text, text)
    expect_user_error(["bench", "-m", WIKI_HF, "--watts", "-5"], ["--watts"])
    # Infinite: "$inf" in the text and null ("not given") in the JSON.
    expect_user_error(["bench", "-m", WIKI_HF, "--watts", "inf"], ["--watts", "finite"])
    expect_user_error(["bench", "-m", WIKI_HF, "--price-per-hour", "inf"], ["--price-per-hour", "finite"])
    expect_user_error(["bench", "-m", WIKI_HF, "--parallel", "0"], ["--parallel"])
    # Past serve's bound too: 100,000 contexts took 10 GB of KV cache before the flag's error.
    expect_user_error(["bench", "-m", WIKI_HF, "--parallel", "4097"], ["--parallel", "between 1 and 4096", "4097"])
    for flag in ("-p", "-n"):
        expect_user_error(["bench", "-m", WIKI_HF, flag, "0"], [flag + "/", "between 1 and 1073741824", "got 0"])
    expect_user_error(["bench", "-m", WIKI_HF, "-r", "0"], ["-r/", "at least 1", "got 0"])
    # Too many contexts for memory: the error comes after the model has loaded (its progress line
    # is on stderr first) and names the KV cache and its size.
    p = run(["bench", "-m", WIKI_HF, "-p", "8", "-n", "4", "--parallel", "4096", "-c", "16000000"])
    last = p.stderr.decode(errors="replace").strip().splitlines()[-1]
    expect(p.returncode == 1 and last.startswith("frugal: error: the KV cache does not fit") and "GB" in last,
           f"exit {p.returncode}, last line {last!r}")
    # The hint names every flag that sizes it: with --kv-blocks it said "lower the context or the
    # parallel sequences", flags the user had not given.
    expect("--kv-blocks/--kv-capacity" in last and "--kv-type q8_0" in last, f"hint: {last!r}")


def test_more_threads_than_cpus_warn():
    # Waiting threads spin: beyond the CPUs every step waits for threads that are not running
    # (-t 1000 on 2 CPUs: 21 tokens/s against 550 with -t 1), without a word.
    cpus = len(os.sched_getaffinity(0))
    p = run(["generate", "-m", WIKI_HF, "-p", "x", "-n", "1", "-t", str(cpus + 1)])
    err = p.stderr.decode(errors="replace")
    expect(p.returncode == 0 and f"{cpus + 1} threads on {cpus} CPUs" in err, f"exit {p.returncode}: {err}")
    p = run(["generate", "-m", WIKI_HF, "-p", "x", "-n", "1", "-t", str(cpus)])
    expect("threads on" not in p.stderr.decode(errors="replace"), "a warning at as many threads as CPUs")


def test_ctx_is_a_name_of_ctx_size_everywhere():
    # serve took --ctx (llama-server's) beside -c/--ctx-size; generate, chat, perplexity and
    # bench refused it. It is one option under three names in every command that loads a model.
    text = f"{SHARED}/data/tinystories/TinyStories-valid-excerpt.txt"
    for args in (["generate", "-p", "Once", "-n", "1"], ["perplexity", "-f", text, "--chunks", "1"],
                 ["bench", "-p", "8", "-n", "2", "-r", "1"]):
        p = run(args + STORIES + ["--ctx", "600"])
        ok(p)
        expect(b"context 600 is longer than the 512 positions" in p.stderr, f"{args[0]} --ctx 600: {p.stderr!r}")
    p = run(["chat", "-m", WIKI_HF, "--chat-template", "chatml", "--ctx", "64", "--temp", "0", "-n", "100"],
            b"Hello there\n")
    ok(p)
    expect(b"at the end of the context of 64 tokens" in p.stderr, f"chat --ctx 64: {p.stderr!r}")
    for cmd in ("generate", "chat", "perplexity", "bench", "serve"):
        out = subprocess.run([FRUGAL, cmd, "--help"], capture_output=True, timeout=30).stdout
        expect(b"-c,--ctx-size,--ctx" in out, f"{cmd} --help: {out!r}")


def test_bench_bounds_its_token_counts():
    # p + n + 1 (bench's context) overflowed for -p 9223372036854775807, and the error named a
    # negative --ctx-size the user never gave. Each count is refused by its own flag first.
    big = "9223372036854775807"
    for flag in ("-p", "-n"):
        expect_user_error(["bench"] + STORIES + [flag, big, "-r", "1"], [flag + "/", "between 1 and", big])
    # Past the model's trained context (stories260K: 512), as generate: a warning, and the run.
    p = run(["bench"] + STORIES + ["-p", "600", "-n", "8", "-r", "1"])
    ok(p)
    expect(b"longer than the 512 positions the model was trained for" in p.stderr, f"{p.stderr!r}")


def l3_cache_bytes():
    """This machine's L3 as sysfs lists it (what bench reads), or 0."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    for index in os.listdir(root) if os.path.isdir(root) else []:
        if not index.startswith("index"):
            continue
        with open(f"{root}/{index}/level") as f:
            if f.read().strip() != "3":
                continue
        with open(f"{root}/{index}/size") as f:
            size = f.read().strip()
        return int(size[:-1]) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[size[-1]]
    return 0


def test_bench_cache_resident_decode():
    # Weights that fit in the L3 cache are read from it: a fraction of the memory bandwidth is
    # no bound there (wiki-7m q8_0: 6.1 MB against a 16 MiB L3 read at 112% of it). Such a run
    # says so, and its JSON fraction is null; a model larger than the cache keeps its fraction.
    l3 = l3_cache_bytes()
    for model in (f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q8_0.gguf", WIKI_HF):
        r = json.loads(ok(run(["bench", "-m", model, "-p", "8", "-n", "4", "-r", "1", "--json"])))
        resident = 0 < l3 and r["weight_bytes_per_token"] <= l3
        expect(r["decode_cache_resident"] == resident, f"{model}: {r['decode_cache_resident']}, L3 {l3}")
        expect(r["machine"]["l3_cache_bytes"] == (l3 or None), f"L3 {r['machine']['l3_cache_bytes']} != {l3}")
        pct = r["decode_pct_of_bandwidth"]
        expect(pct is None if resident else pct > 0, f"{model}: decode_pct_of_bandwidth {pct}")
        text = ok(run(["bench", "-m", model, "-p", "8", "-n", "4", "-r", "1"])).decode()
        decode = next(line for line in text.splitlines() if line.startswith("decode"))
        expect(("cache-resident" in decode and "% of the bandwidth" not in decode) if resident
               else "% of the bandwidth bound" in decode, decode)


def test_bench_reports_the_load_peak():
    # The peak of loading (interleaving holds two copies of a matrix for a moment) was dropped:
    # bench measured its peak from after the load. Loading reads the whole file in.
    model = f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q4_0.gguf"
    r = json.loads(ok(run(["bench", "-m", model, "-p", "8", "-n", "4", "-r", "1", "--json"])))
    expect(r["load_peak_rss_bytes"] >= os.path.getsize(model) and r["peak_rss_bytes"] > 0,
           f"load peak {r['load_peak_rss_bytes']}, run peak {r['peak_rss_bytes']}, file {os.path.getsize(model)}")
    text = ok(run(["bench", "-m", model, "-p", "8", "-n", "4", "-r", "1"])).decode()
    expect(re.search(r"peak RSS [0-9.]+ MB loading, [0-9.]+ MB running", text), text)


def test_bench_small_figures_keep_their_digits():
    # Text rounded real figures to zero: "$0.0000", "0.000 kWh", "(at $0.00 an hour)", "(at 0 W".
    text = ok(run(["bench"] + STORIES + ["-p", "32", "-n", "32", "-r", "1", "--price-per-hour", "0.001",
                                        "--watts", "0.4"])).decode()
    expect("(at $0.00100 an hour)" in text and "(at 0.400 W, given)" in text, text)
    costs = re.findall(r"\$([0-9.]+) per million", text)
    energies = re.findall(r"([0-9.]+) kWh per million", text)
    expect(len(costs) == 2 and len(energies) == 2, text)
    for figure in costs + energies:
        digits = figure.replace(".", "").lstrip("0")
        expect(float(figure) > 0 and len(digits) >= 3, f"{figure}: not 3 significant digits in {text}")


def test_json_outputs_take_paths_that_are_not_utf8():
    # bench --json ran the whole benchmark, then failed on the model's path (nlohmann's
    # type_error 316). Every JSON the CLI prints replaces such bytes with U+FFFD.
    with tempfile.TemporaryDirectory() as d:
        odd = os.path.join(d.encode(), b"d\xff")
        os.makedirs(odd)
        shutil.copy(f"{SHARED}/models/stories260K/stories260K.bin", odd + b"/m.bin")
        r = json.loads(ok(run(["bench", "-m", odd + b"/m.bin", "--tokenizer", STORIES[3], "-p", "8", "-n", "8",
                               "-r", "1", "--json"])))
        expect(r["model"].endswith("d\ufffd/m.bin") and r["decode_tokens_per_second"] > 0, f"{r['model']}")
        shutil.copy(f"{SHARED}/data/wikitext2/wiki.test.raw", odd + b"/text.raw")
        r = json.loads(ok(run(["perplexity", "-m", WIKI_HF, "-f", odd + b"/text.raw", "-c", "128", "--chunks", "1",
                               "--json"])))
        expect(r["text"].endswith("d\ufffd/text.raw") and r["ppl"] > 0, f"{r['text']}")
        r = json.loads(ok(run(["quantize", "-m", WIKI_HF, "-o", odd + b"/q8.gguf", "--type", "q8_0", "--json"])))
        expect(r["output"].endswith("d\ufffd/q8.gguf") and os.path.exists(odd + b"/q8.gguf"), f"{r['output']}")


def test_perplexity_of_one_window_says_window():
    # "1 windows of 128 tokens" in the banner and the result line.
    p = run(["perplexity", "-m", WIKI_HF, "-f", f"{SHARED}/data/wikitext2/wiki.test.raw", "-c", "128", "--chunks", "1"])
    out, err = ok(p).decode(), p.stderr.decode()
    expect("1 window of 128 tokens" in out and "1 window of 128 tokens" in err and "1 windows" not in out + err,
           f"stdout: {out}\nstderr: {err}")


def test_kv_type_q8_0():
    # A q8_0 KV cache on wiki-7m (head_dim 32) generates; its greedy text starts as the f16
    # cache's does (the first tokens see a short context, where the rounding cannot change the
    # argmax of this model's top-2 margins). stories260K's heads (8 wide) cannot hold q8_0 blocks.
    args = ["generate", "-m", WIKI_HF, "-p", "The history of the city", "--temp", "0", "--ignore-eos", "-n", "8"]
    q8 = ok(run(args + ["--kv-type", "q8_0"])).decode("utf-8")
    f16 = ok(run(args)).decode("utf-8")
    expect(q8.split()[:3] == f16.split()[:3], f"q8_0 KV: {q8!r}, f16 KV: {f16!r}")
    expect_user_error(["generate"] + STORIES + ["--kv-type", "q8_0"], ["q8_0", "multiple of 32"])


def _hf_folder(d, config_edit=None, tokenizer=True, weights=None):
    """A wiki-7m folder in d: the real files linked in, config.json edited, weights replaced."""
    with open(f"{WIKI_HF}/config.json", encoding="utf-8") as f:
        config = json.load(f)
    if config_edit:
        config_edit(config)
    with open(f"{d}/config.json", "w", encoding="utf-8") as f:
        json.dump(config, f)
    if weights is None:
        os.symlink(f"{WIKI_HF}/model.safetensors", f"{d}/model.safetensors")
    else:
        with open(f"{d}/model.safetensors", "wb") as f:
            f.write(weights)
    if tokenizer:
        for name in ["tokenizer.model", "tokenizer_config.json"]:
            os.symlink(f"{WIKI_HF}/{name}", f"{d}/{name}")
    return d


def _tiny_llama(d, config_more, extra_tensors=()):
    """A 2-layer Llama in d with seeded random f32 weights, wiki-7m's tokenizer, and biases on
    q, k, v and o when config_more says attention_bias (as transformers builds them)."""
    import numpy as np
    rng = np.random.default_rng(7)
    D, H, KV, HD, FF = 64, 4, 2, 16, 128
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D,
              "intermediate_size": FF, "num_hidden_layers": 2, "num_attention_heads": H,
              "num_key_value_heads": KV, "vocab_size": 4096, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False}
    config.update(config_more)
    V = config["vocab_size"]
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,), "lm_head.weight": (V, D)}
    for l in range(2):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                       p + "self_attn.q_proj.weight": (H * HD, D), p + "self_attn.k_proj.weight": (KV * HD, D),
                       p + "self_attn.v_proj.weight": (KV * HD, D), p + "self_attn.o_proj.weight": (D, H * HD),
                       p + "mlp.gate_proj.weight": (FF, D), p + "mlp.up_proj.weight": (FF, D),
                       p + "mlp.down_proj.weight": (D, FF)})
        if config.get("attention_bias"):
            shapes.update({p + "self_attn.q_proj.bias": (H * HD,), p + "self_attn.k_proj.bias": (KV * HD,),
                           p + "self_attn.v_proj.bias": (KV * HD,), p + "self_attn.o_proj.bias": (D,)})
    shapes.update({name: shape for name, shape in extra_tensors})
    tensors = {n: (1.0 + 0.1 * rng.standard_normal(s)) if n.endswith("norm.weight") else 0.2 * rng.standard_normal(s)
               for n, s in shapes.items()}
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        b = a.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    weights = len(h).to_bytes(8, "little") + h + b"".join(blobs)
    os.makedirs(d)

    def replace_config(c):
        c.clear()
        c.update(config)

    _hf_folder(d, replace_config, weights=weights)
    return d


def test_attention_biases_and_partial_rotary_survive_gguf():
    # Llama's attention_bias gives o_proj a bias too (transformers' LlamaAttention), and GGUF
    # Llama files carry whatever biases exist. partial_rotary_factor rotates a head's first
    # dimensions only: the GGUF q/k row order moves only those (model/rope_layout.h). Before,
    # the o bias was dropped (HF), all biases were (GGUF), and the partial-rotary GGUF ran
    # 16 nats off. The HF folder and its f32 GGUF must agree, and the o bias must matter.
    def ppl(model):
        out = ok(run(["perplexity", "-m", model, "-f", f"{SHARED}/data/wikitext2/wiki.test.raw", "-c", "64",
                      "--chunks", "2", "--json"]))
        return json.loads(out)["ppl"]

    with tempfile.TemporaryDirectory() as root:
        for name, config in (("bias", {"attention_bias": True}), ("rotary", {"partial_rotary_factor": 0.5})):
            hf = _tiny_llama(f"{root}/{name}", config)
            gguf = f"{root}/{name}.gguf"
            ok(run(["quantize", "-m", hf, "-o", gguf, "--type", "f32"]))
            a, b = ppl(hf), ppl(gguf)
            expect(abs(a - b) < 1e-4 * a, f"{name}: PPL {a} from the folder, {b} from its GGUF")
        # Zeroing the o biases in the GGUF's source changes the model: they are read.
        cut = _tiny_llama(f"{root}/cut", {"attention_bias": True})
        with open(f"{cut}/model.safetensors", "r+b") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            for key, info in header.items():
                if key.endswith("o_proj.bias"):
                    f.seek(8 + n + info["data_offsets"][0])
                    f.write(bytes(info["data_offsets"][1] - info["data_offsets"][0]))
        expect(abs(ppl(cut) - ppl(f"{root}/bias")) > 1e-3 * ppl(cut), "the o_proj biases change nothing")
        # A tensor no part of the architecture reads is named, not silently left out.
        extra = _tiny_llama(f"{root}/extra", {}, [("model.layers.1.mlp.gate_proj.bias", (128,))])
        p = run(["generate", "-m", extra, "-p", "The", "-n", "1"])
        err = p.stderr.decode()
        expect(p.returncode == 0 and "model.layers.1.mlp.gate_proj.bias" in err and "not used" in err, err)
        # A tied checkpoint that stores the head too: transformers ignores the copy, without a word.
        tied = _tiny_llama(f"{root}/tied", {"tie_word_embeddings": True})
        p = run(["generate", "-m", tied, "-p", "The", "-n", "1"])
        expect(p.returncode == 0 and "not used" not in p.stderr.decode(), p.stderr.decode())


def test_padded_embedding_gets_a_padded_gguf_vocabulary():
    """More embedding rows than tokens (Qwen2.5 pads to 151,936): the GGUF lists a [PAD<id>]
    token per extra row, as llama.cpp's converter writes it and its loader demands, and
    tokenizes and scores as the folder does."""
    with tempfile.TemporaryDirectory() as root:
        folder = _tiny_llama(f"{root}/padded", {"vocab_size": 4160})
        gguf = f"{root}/padded.gguf"
        ok(run(["quantize", "-m", folder, "-o", gguf, "--type", "f32"]))
        text = f"{root}/text.txt"
        with open(text, "w") as f:
            f.write(open(f"{SHARED}/data/wikitext2/wiki.test.raw", encoding="utf-8").read()[:6000] + " [PAD4100] ")
        ppl = []
        for model in (folder, gguf):
            p = run(["perplexity", "-m", model, "-f", text, "-c", "128", "--json"])
            expect(p.returncode == 0 and b"embedding rows" not in p.stderr, f"{model}: {p.stderr[-400:]!r}")
            ppl.append(json.loads(p.stdout)["ppl"])
        expect(abs(ppl[0] / ppl[1] - 1) < 1e-4, f"folder {ppl[0]} vs GGUF {ppl[1]}")
        tokens = gguf_file.read(gguf, with_tensors=False).metadata["tokenizer.ggml.tokens"]
        expect(len(tokens) == 4160 and tokens[4100] == "[PAD4100]", f"{len(tokens)} tokens, ends {tokens[-2:]}")


def test_quantize_says_which_tensors_fall_back():
    """Rows that do not hold whole blocks of the asked type (a 128-wide ffn_down for Q4_K's
    256) take llama.cpp's fallback type, and the log says so for each, as llama.cpp's does."""
    with tempfile.TemporaryDirectory() as root:
        folder = _tiny_llama(f"{root}/tiny", {})
        p = run(["quantize", "-m", folder, "-o", f"{root}/q4_k.gguf", "--type", "q4_k"])
        ok(p)
        err = p.stderr.decode()
        expect("blk.0.ffn_down.weight: rows of 128 do not hold whole q4_k blocks: written as q5_0" in err, err[-800:])


def test_bad_model_files():
    """Broken models: one error line naming the file and the problem, exit 1, no crash."""
    gen = ["generate", "-p", "Hi", "-n", "2", "-m"]
    with open(f"{WIKI_HF}/model.safetensors", "rb") as f:
        weights = f.read()
    with open(WIKI_GGUF, "rb") as f:
        gguf = f.read()
    with tempfile.TemporaryDirectory() as root:
        def folder(name, **kw):
            d = f"{root}/{name}"
            os.mkdir(d)
            return _hf_folder(d, **kw)

        d = folder("missing_key", config_edit=lambda c: c.pop("hidden_size"))
        expect_user_error(gen + [d], ["config.json", "hidden_size"])
        d = folder("unknown_arch", config_edit=lambda c: c.update(architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox"))
        expect_user_error(gen + [d], ["unknown architecture", "GPTNeoXForCausalLM", "llama"])
        d = folder("wrong_shape", config_edit=lambda c: c.update(intermediate_size=512))
        expect_user_error(gen + [d], ["mlp.gate_proj.weight", "[768, 256]", "[512, 256]"])
        d = folder("llama3_rope_without_its_keys",
                   config_edit=lambda c: c.update(rope_scaling={"rope_type": "llama3", "factor": 8.0}))
        expect_user_error(gen + [d], ["llama3", "low_freq_factor"])
        d = folder("absurd", config_edit=lambda c: c.update(num_hidden_layers=10**12))
        expect_user_error(gen + [d], ["layer count"])
        d = folder("no_tokenizer", tokenizer=False)
        expect_user_error(gen + [d], [d, "tokenizer"])
        d = folder("truncated_weights", weights=weights[: len(weights) // 2])
        expect_user_error(gen + [d], ["model.safetensors"])
        d = folder("garbage_weights", weights=os.urandom(4096))
        expect_user_error(gen + [d], ["model.safetensors"])
        d = folder("bad_json")
        with open(f"{d}/config.json", "w") as f:
            f.write("{\"hidden_size\": 256,")
        expect_user_error(gen + [d], ["config.json"])
        # A value of the wrong type where a string belongs: named, not an abort on an uncaught
        # JSON exception.
        d = folder("act_number", config_edit=lambda c: c.update(hidden_act=5))
        expect_user_error(gen + [d], ["config.json", "hidden_act", "string"])
        d = folder("rope_type_number", config_edit=lambda c: c.update(rope_scaling={"rope_type": 3, "factor": 2.0}))
        expect_user_error(gen + [d], ["rope_type", "string"])
        # A model_type that is no string was skipped (the architectures named the model), an
        # eos_token_id that is no id or list of ids too (generation would run past the end of the
        # text), and a generation_config.json holding a list read as one that sets nothing.
        d = folder("model_type_number", config_edit=lambda c: c.update(model_type=5))
        expect_user_error(gen + [d], [f"{d}/config.json", "model_type", "string"])
        d = folder("eos_string", config_edit=lambda c: c.update(eos_token_id="</s>"))
        expect_user_error(gen + [d], [f"{d}/config.json", "eos_token_id"])
        for name, text, words in (("generation_config_list", '[{"eos_token_id": 2}]', ["object"]),
                                  ("generation_eos_string", '{"eos_token_id": "x"}', ["eos_token_id"]),
                                  ("generation_eos_list_of_text", '{"eos_token_id": [2, "x"]}', ["eos_token_id"])):
            d = folder(name)
            with open(f"{d}/generation_config.json", "w") as f:
                f.write(text)
            expect_user_error(gen + [d], [f"{d}/generation_config.json"] + words)
        d = folder("generation_eos_list")
        with open(f"{d}/generation_config.json", "w") as f:
            f.write('{"eos_token_id": [2, 1], "bos_token_id": null}')
        ok(run(gen + [d]))
        # Values that overflow the rotary angles into NaN: refused by name.
        for name, edit, words in (
                ("tiny_theta", {"rope_theta": 1e-40}, ["rope theta", "at least 1"]),
                ("huge_theta", {"rope_theta": 1e300}, ["rope theta"]),
                ("tiny_linear", {"rope_scaling": {"type": "linear", "factor": 1e-38}}, ["factor", "at least 1"]),
                ("llama3_no_context", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                        "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 0}},
                 ["original_max_position_embeddings"])):
            d = folder(name, config_edit=lambda c, e=edit: c.update(e))
            expect_user_error(gen + [d], words)
        # Heads that do not divide the width (no head_dim): said so, not a floored head dimension
        # blamed on the rotary one; a negative window; an integer tensor where weights belong.
        def heads_not_dividing(c):
            c.update(num_attention_heads=12, num_key_value_heads=4)
            c.pop("head_dim")

        for name, edit, words in (
                ("heads_not_dividing", heads_not_dividing,
                 ["hidden size 256 is not a multiple of the 12 attention heads", "head_dim"]),
                ("negative_window", lambda c: c.update(sliding_window=-3), ["sliding window -3 is negative"])):
            d = folder(name, config_edit=edit)
            expect_user_error(gen + [d], [f"{d}/config.json"] + words)
        n = int.from_bytes(weights[:8], "little")
        header = json.loads(weights[8:8 + n])
        header["model.layers.0.input_layernorm.weight"]["dtype"] = "I32"
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (n - len(text))
        d = folder("integer_norm", weights=weights[:8] + text + weights[8 + n:])
        expect_user_error(gen + [d], ["model.layers.0.input_layernorm.weight", "integers (i32)"])
        # A tie in the config over a head that is not the embedding: ignored, as transformers
        # does, but said.
        d = folder("tied_over_a_head", config_edit=lambda c: c.update(tie_word_embeddings=True))
        p = run(gen + [d])
        expect(p.returncode == 0 and b"differs from the embedding" in p.stderr, f"tied over a head: {p.stderr!r}")
        d = folder("template_list_bad_name")
        os.unlink(f"{d}/tokenizer_config.json")
        with open(f"{d}/tokenizer_config.json", "w") as f:
            json.dump({"chat_template": [{"name": 5, "template": "x"}]}, f)
        ok(run(gen + [d]))

        path = f"{root}/truncated.gguf"
        with open(path, "wb") as f:
            f.write(gguf[: len(gguf) // 3])
        expect_user_error(gen + [path], [path])
        path = f"{root}/bad_magic.gguf"
        with open(path, "wb") as f:
            f.write(b"GGUX" + gguf[4:4096])
        expect_user_error(gen + [path], [path])
        path = f"{root}/empty.bin"
        open(path, "wb").close()
        expect_user_error(gen + [path], [path])


def test_help():
    for cmd in ["generate", "chat"]:
        p = subprocess.run([FRUGAL, cmd, "--help"], capture_output=True, timeout=30)
        expect(p.returncode == 0, f"{cmd} --help: exit status {p.returncode}")
        for flag in ["--model", "--temp", "--top-k", "--seed", "--ctx-size"]:
            expect(flag.encode() in p.stdout, f"{cmd} --help does not list {flag}")
    # --version: the version and commit a bug report needs, on stdout, exit 0.
    p = subprocess.run([FRUGAL, "--version"], capture_output=True, timeout=30)
    first = p.stdout.decode().splitlines()[0] if p.stdout else ""
    expect(p.returncode == 0 and re.fullmatch(r"frugal \d+\.\d+\.\d+ \(commit [0-9a-z-]+\)", first),
           f"--version: exit {p.returncode}, {p.stdout!r}")
    expect(b"kernels on this CPU: " in p.stdout, f"--version does not name the kernels: {p.stdout!r}")


# ---- chat -------------------------------------------------------------------------------------

CHAT = ["chat", "-m", WIKI_HF, "--chat-template", "chatml", "--system", "Be brief.", "-n", "6", "--temp", "0"]


def test_chat_piped_turns_and_reset():
    first = ok(run(CHAT, b"Hello there\n"))
    expect(first.endswith(b"\n") and len(first) > 1, f"no reply: {first!r}")
    # /reset starts over, so the same first message gets the same greedy reply; /exit ends
    # the conversation before "ignored" is read.
    out = ok(run(CHAT, b"Hello there\nTell me more\n\n/reset\nHello there\n/exit\nignored\n"))
    expect(out.startswith(first) and out.endswith(first), f"replies:\n{out!r}\nfirst alone:\n{first!r}")
    expect(len(out) > 2 * len(first), f"the second turn got no reply: {out!r}")
    # End of input ends it too.
    expect(ok(run(CHAT, b"Hello there")) == first, "a last line without newline was not answered")


def test_chat_reads_escapes_in_lines_and_system():
    # One line of input is one message, so a message of several lines is typed with \n, as in
    # llama-cli; the reply to "Hello\nthere" is generate's from the same ChatML text.
    chat = ["chat", "-m", WIKI_HF, "--chat-template", "chatml", "-n", "12", "--temp", "0"]
    two_lines = ok(run(chat, b"Hello\\nthere\n"))
    rendered = "<|im_start|>user\nHello\nthere<|im_end|>\n<|im_start|>assistant\n"
    expected = ok(run(["generate", "-m", WIKI_HF, "-n", "12", "--temp", "0", "-p", rendered])) + b"\n"
    expect(two_lines == expected, f"chat: {two_lines!r}, generate: {expected!r}")
    expect(two_lines != ok(run(chat + ["--no-escape"], b"Hello\\nthere\n")), "--no-escape still reads \\n")
    expect(ok(run(chat, b"Hello\\tthere\n")) == ok(run(chat + ["--no-escape"], b"Hello\tthere\n")), "\\t")
    expect(ok(run(chat + ["--system", "Be\\nbrief."], b"Hi\n")) ==
           ok(run(chat + ["--no-escape", "--system", "Be\nbrief."], b"Hi\n")), "--system Be\\nbrief.")


def test_chat_says_a_reply_filled_the_context():
    # generate says it; chat's reply (37 prompt tokens, 28 generated in a context of 64) stopped
    # without a word.
    args = ["chat", "-m", WIKI_HF, "--chat-template", "chatml", "-c", "64", "--temp", "0"]
    for n in ("100", "-1"):
        p = run(args + ["-n", n], b"Hello there\n")
        expect(p.returncode == 0 and len(p.stdout) > 1, f"-n {n}: exit {p.returncode}: {p.stderr!r}")
        expect(p.stderr == b"note: the reply stopped after 28 tokens, at the end of the context of 64 tokens "
                           b"(-c gives a larger one)\n", f"-n {n}: {p.stderr!r}")
    p = run(args + ["-n", "6"], b"Hello there\n")  # -n reached first: nothing to say
    expect(p.returncode == 0 and p.stderr == b"", f"-n 6: {p.stderr!r}")


def test_chat_context_overflow_drops_turns():
    lines = b"".join(b"This is message %d about the history of the city.\n" % i for i in range(8))
    p = run(CHAT + ["-c", "128"], lines)
    ok(p)
    expect(p.stdout.count(b"\n") >= 8, f"not every message was answered: {p.stdout!r}")
    expect(b"dropped" in p.stderr, f"no note about dropped turns: {p.stderr!r}")


def test_chat_ctrl_c_stops_the_reply_not_the_chat():
    # wiki-7m never writes ChatML's end of turn, so with no -n a reply runs to the full context;
    # Ctrl-C (SIGINT) stops it and the next message is answered, as in llama-cli.
    p = subprocess.Popen([FRUGAL, "chat", "-m", WIKI_HF, "--chat-template", "chatml", "-c", "2048", "-t", "1",
                          "--temp", "0", "-v"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b"Tell me about the history of France\n")
    p.stdin.flush()
    p.stdout.read(1)  # the reply has started
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(b"And of Spain?\n", timeout=120)
    err = err.decode(errors="replace")
    expect(p.returncode == 0, f"exit status {p.returncode}: {err[-500:]}")
    expect("reply stopped" in err and "finished: cancelled" in err, f"the first reply was not stopped: {err[-800:]}")
    expect(err.count("finished:") == 2, f"the second message was not answered: {err[-800:]}")


def test_chat_ctrl_c_while_a_reply_write_blocks():
    # A reply's write blocked on a slow terminal or a full pipe (`| less`) when Ctrl-C came: the
    # write failed with EINTR and the chat ended ("cannot write to standard output: Interrupted
    # system call", exit 1). Now the reply stops and the next message is answered.
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # a reply of 2048 tokens overfills it
    p = subprocess.Popen([FRUGAL, "chat", "-m", WIKI_HF, "--chat-template", "chatml", "-c", "2048", "-t", "1",
                          "--temp", "0", "-v"], stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        p.stdin.write(b"Tell me about the history of France\nAnd of Spain?\n")
        p.stdin.close()
        deadline = time.time() + 60
        while True:  # until the reply waits in write() for the pipe nobody reads yet
            with open(f"/proc/{p.pid}/wchan") as f:
                if "pipe_write" in f.read():
                    break
            expect(time.time() < deadline and p.poll() is None, "the reply never blocked on the full pipe")
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        time.sleep(0.2)  # the handler runs while the write still blocks
        with os.fdopen(read_end, "rb") as r:
            out = r.read()
        err = p.stderr.read().decode(errors="replace")
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    expect(p.returncode == 0, f"exit status {p.returncode}: {err[-500:]}")
    expect("finished: cancelled" in err and err.count("finished:") == 2,
           f"the first reply was not stopped, or the second message not answered: {err[-800:]}")
    expect(out.count(b"\n") >= 2 and len(out) > 4096, f"stdout: {len(out)} bytes")


def test_chat_n_0_is_refused():
    # -n 0 (generate's "evaluate the prompt only") made every reply silently empty; -1 is no
    # limit (test_chat_says_a_reply_filled_the_context).
    for n in ("0", "-2"):
        expect_user_error(["chat", "-m", WIKI_HF, "-n", n], ["-n/--n-predict", f"got {n}"], stdin=b"Hello\n")


def test_chat_template_file():
    # llama.cpp's --chat-template-file; a path given to --chat-template was read as a family
    # name ("unknown chat template './t.jinja'").
    jinja = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    chat = ["chat", "-m", WIKI_HF, "-n", "4", "--temp", "0"]
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/t.jinja"
        with open(path, "w") as f:
            f.write(jinja)
        p = run(chat + ["--chat-template-file", path], b"Hello there\n")
        expect(p.stdout == ok(run(chat + ["--chat-template", "chatml"], b"Hello there\n")) and p.returncode == 0,
               f"--chat-template-file: exit {p.returncode}, {p.stdout!r}")
        expect(b"--chat-template-file: frugal renders template families" in p.stderr and b"'chatml'" in p.stderr,
               f"no warning: {p.stderr!r}")
        expect_user_error(chat + ["--chat-template", path], ["--chat-template-file", path], b"Hi\n")
        expect_user_error(chat + ["--chat-template", "chatml", "--chat-template-file", path],
                          ["--chat-template and --chat-template-file"], b"Hi\n")
        for missing in (f"{d}/none.jinja", d):  # no such file; a folder
            expect_user_error(chat + ["--chat-template-file", missing], ["--chat-template-file", missing], b"Hi\n")
        with open(f"{d}/other.jinja", "w") as f:
            f.write("{{ messages }}")
        expect_user_error(chat + ["--chat-template-file", f"{d}/other.jinja"],
                          [f"{d}/other.jinja", "unsupported chat template"], b"Hi\n")
        # serve shares the flags; a bad one fails before the model loads.
        expect_user_error(["serve", "-m", WIKI_HF, "--port", "0", "--chat-template-file", f"{d}/none.jinja"],
                          ["--chat-template-file"])
        server = subprocess.Popen([FRUGAL, "serve", "-m", WIKI_HF, "--port", "0", "-t", "1", "--chat-template-file",
                                   path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            started = b""
            for line in server.stderr:
                started += line
                if b"listening on" in line:
                    # Answered once before the SIGTERM: one that comes before the listener runs
                    # is lost (seen 1 run in 3; left for the server's own fix).
                    port = re.search(rb"listening on http://[^:]+:(\d+)", line).group(1).decode()
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60).read()
                    break
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                raise
        expect(b"listening on" in started and b"chat template chatml" in started, f"serve: {started!r}")


def test_chat_template_fallback_and_choice():
    # A model without one gets ChatML, as in llama.cpp and `frugal serve`, with a warning.
    p = run(["chat", "-m", WIKI_HF, "-n", "2", "--temp", "0"], stdin=b"Hi\n")
    err = p.stderr.decode()
    expect(p.returncode == 0 and "no chat template" in err and "chatml" in err, f"{p.returncode}: {err}")
    expect(p.stdout == ok(run(["chat", "-m", WIKI_HF, "--chat-template", "chatml", "-n", "2", "--temp", "0"],
                              stdin=b"Hi\n")), "the fallback is not chatml")
    expect_user_error(["chat", "-m", WIKI_HF, "--chat-template", "no-such-family"], ["no-such-family"])
    # A model whose template is of no family frugal renders: the error says once how to choose
    # one (the hint was given twice).
    with tempfile.TemporaryDirectory() as root:
        d = _hf_folder(root, tokenizer=False)
        os.symlink(f"{WIKI_HF}/tokenizer.model", f"{d}/tokenizer.model")
        with open(f"{d}/tokenizer_config.json", "w") as f:
            json.dump({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}, f)
        for command in (["chat", "-n", "1"], ["serve", "--port", "0"]):
            p = run(command + ["-m", d], stdin=b"Hi\n")
            err = p.stderr.decode()
            expect(p.returncode == 1 and "unsupported chat template" in err and err.count("--chat-template") == 1,
                   f"{command[0]}: {p.returncode}: {err}")
        # finetune says whose template it is (the message named no model).
        with open(f"{root}/a.json", "w") as f:
            f.write(TINY_ALPACA)
        p = run(["finetune", "-m", d, "--data", f"{root}/a.json", "--steps", "1", "-o", f"{root}/out"])
        err = p.stderr.decode()
        expect(p.returncode == 1 and f"{d}: unsupported chat template" in err and not os.path.exists(f"{root}/out"),
               f"finetune: {p.returncode}: {err}")
    # A Jinja text is rendered as its family: said on stderr, since frugal does not run Jinja.
    jinja = ("{% for m in messages %}<|im_start|>{{ m.role }}\n[{{ m.role | upper }}] {{ m.content }}<|im_end|>\n"
             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    p = run(["chat", "-m", WIKI_HF, "--chat-template", jinja, "-n", "2"], stdin=b"Hi\n")
    ok(p)
    expect(b"does not run Jinja" in p.stderr and b"'chatml'" in p.stderr, f"no warning: {p.stderr!r}")
    # --no-thinking: Qwen3's switch (its template, wiki-7m's tokenizer counting the text); the
    # empty <think></think> block makes the prompt longer. Templates without it refuse the flag.
    with open(f"{SHARED}/tokenizers/qwen3/tokenizer_config.json", encoding="utf-8") as f:
        qwen3 = json.load(f)["chat_template"]

    def prompt_tokens(extra):
        p = run(["chat", "-m", WIKI_HF, "--chat-template", qwen3, "-n", "1", "-v"] + extra, stdin=b"Hi\n")
        ok(p)
        line = [l for l in p.stderr.decode().splitlines() if l.startswith("prompt: ")][0]
        return int(line.split()[1])

    expect(prompt_tokens(["--no-thinking"]) > prompt_tokens([]), "--no-thinking did not add the empty think block")
    expect_user_error(["chat", "-m", WIKI_HF, "--chat-template", "chatml", "--no-thinking"],
                      ["--no-thinking", "chatml"])


# ---- finetune, --lora, lora merge ------------------------------------------------------------

ADAPTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "reference", "wiki7m_lora")
TINY_ALPACA = "[" + ",".join(
    json.dumps({"instruction": f"Say something about topic {i}.", "input": "", "output": f"Topic {i} is about the river."})
    for i in range(12)) + "]"


def run_merge(args):
    # `lora merge` takes no -t (it runs no model).
    return subprocess.run([FRUGAL, "lora", "merge"] + args, capture_output=True, timeout=120)


def greedy(model_args):
    return ok(run(["generate"] + model_args + ["-p", "The history of the city", "--temp", "0", "--ignore-eos", "-n", "16"]))


def test_lora_generate_and_merge():
    plain = greedy(["-m", WIKI_HF])
    adapted = greedy(["-m", WIKI_HF, "--lora", ADAPTER])
    expect(adapted != plain, "the adapter did not change the greedy text")
    expect(greedy(["-m", WIKI_HF, "--lora", ADAPTER + ":0"]) == plain, "--lora DIR:0 changed the text")
    expect(greedy(["-m", WIKI_GGUF, "--lora", ADAPTER]) == adapted, "GGUF base with the adapter differs")
    expect(greedy(["-m", WIKI_HF, "--lora", ADAPTER + ":0.5", "--lora", ADAPTER + ":0.5"]) == adapted,
           "two adapters at 0.5 differ from one at 1")
    with tempfile.TemporaryDirectory() as d:
        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/merged"]))
        expect(greedy(["-m", f"{d}/merged"]) == adapted, "merged model differs from the unmerged adapter")
        # The copied config is the user's to edit, not read-only like the shared base's.
        expect(os.stat(f"{d}/merged/config.json").st_mode & 0o200, "the merged config.json is read-only")
        ok(run_merge(["-m", WIKI_GGUF, "--lora", ADAPTER, "-o", f"{d}/merged.gguf"]))
        expect(greedy(["-m", f"{d}/merged.gguf"]) == adapted, "merged GGUF differs from the unmerged adapter")
        p = run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/m2", "--type", "nope"])
        expect(p.returncode == 1 and b"nope" in p.stderr, f"bad --type: {p.returncode} {p.stderr!r}")
        expect(not os.path.exists(f"{d}/m2"), "a failed merge left output")
        # Re-quantizing a quantized base's merged weights is done, and said.
        p = run_merge(["-m", f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q4_0.gguf", "--lora", ADAPTER, "-o",
                       f"{d}/q4.gguf", "--type", "q4_0"])
        expect(p.returncode == 0 and b"rounded a second time" in p.stderr, f"q4_0 onto q4_0: {p.stderr!r}")
        # The file type says what the merge wrote (it copied the base's): an adapter on every
        # matrix but the embedding and head makes the merged type the file's, llama.cpp's 0
        # ALL_F32, 2 MOSTLY_Q4_0 or 7 MOSTLY_Q8_0; frugal's own types are marked.
        ok(run(["finetune", "-m", WIKI_HF, "--data", f"{SHARED}/data/instruct/wiki_demo.txt", "--steps", "1", "--seq",
                "32", "--targets", "q,k,v,o,gate,up,down", "-o", f"{d}/every"]))
        q8 = f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q8_0.gguf"
        for base, args, file_type in ((q8, [], 0), (WIKI_GGUF, ["--type", "q8_0"], 7), (q8, ["--type", "q4_0"], 2)):
            ok(run_merge(["-m", base, "--lora", f"{d}/every", "-o", f"{d}/ft.gguf"] + args))
            got = gguf_file.read(f"{d}/ft.gguf", with_tensors=False).metadata
            expect(got["general.file_type"] == file_type and "frugal.quant.types" not in got,
                   f"{base} {args}: file type {got['general.file_type']}, expected {file_type}")
        ok(run_merge(["-m", WIKI_GGUF, "--lora", f"{d}/every", "-o", f"{d}/ft.gguf", "--type", "nf4"]))
        got = gguf_file.read(f"{d}/ft.gguf", with_tensors=False).metadata
        expect(got["general.file_type"] == 1024 and "frugal.quant.types" in got, f"nf4 merge: {got}")
        # Into the adapter's own folder: refused, the adapter's files stay as they were.
        shutil.copytree(ADAPTER, f"{d}/adapter")
        p = run_merge(["-m", WIKI_HF, "--lora", f"{d}/adapter", "-o", f"{d}/adapter"])
        expect(p.returncode == 1 and b"is the input" in p.stderr, f"merge into the adapter: {p.stderr!r}")
        expect(sorted(os.listdir(f"{d}/adapter")) == sorted(os.listdir(ADAPTER)), "the adapter folder changed")
        # Into a folder that holds a sharded model: its index and shards would be what loaders
        # read, so they go once the merged weights are in place.
        os.makedirs(f"{d}/old")
        shutil.copy(f"{WIKI_HF}/config.json", f"{d}/old/config.json")
        with open(f"{d}/old/model.safetensors.index.json", "w") as f:
            f.write('{"weight_map": {}}')
        with open(f"{d}/old/model-00001-of-00002.safetensors", "w") as f:
            f.write("stale")
        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/old"]))
        expect(sorted(n for n in os.listdir(f"{d}/old") if "safetensors" in n) == ["model.safetensors"],
               f"stale shards left: {os.listdir(d + '/old')}")
        expect(sorted(os.listdir(f"{d}/old")) == sorted(os.listdir(f"{d}/merged")), "the old folder was not replaced")
        expect(greedy(["-m", f"{d}/old"]) == adapted, "merged over a sharded folder differs")
        # A llama2.c base: one error saying what to do instead (not two that send each other on).
        for out in (f"{d}/st", f"{d}/st.gguf"):
            p = run_merge(STORIES + ["--lora", ADAPTER, "-o", out])
            err = p.stderr.decode()
            expect(p.returncode == 1 and "llama2.c" in err and "--lora" in err, f"llama2.c merge: {err}")
            expect(not os.path.exists(out), "a failed merge left output")
    expect_user_error(["generate"] + STORIES + ["--lora", ADAPTER, "-p", "x"], ["another model"])


def test_lora_in_perplexity_and_bench():
    # Every command with the model flags applies --lora: perplexity with the adapter equals the
    # merged model's (fp32 both ways; the unmerged path adds the low-rank update in another
    # order, so the last digits may differ) and differs from the base's.
    text = f"{SHARED}/data/wikitext2/wiki.test.raw"

    def ppl(args):
        out = ok(run(["perplexity"] + args + ["-f", text, "-c", "128", "--chunks", "3", "--json"]))
        return json.loads(out)["ppl"]

    base = ppl(["-m", WIKI_HF])
    adapted = ppl(["-m", WIKI_HF, "--lora", ADAPTER])
    with tempfile.TemporaryDirectory() as d:
        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/merged"]))
        merged = ppl(["-m", f"{d}/merged"])
    expect(abs(adapted - merged) <= 1e-4 * merged, f"perplexity with --lora {adapted} != merged {merged}")
    expect(abs(adapted - base) > 1e-3 * base, f"perplexity with --lora {adapted} is the base's {base}")
    for cmd in (["perplexity", "-f", text, "-c", "128"], ["bench", "-p", "8", "-n", "8", "-r", "1"]):
        expect_user_error([cmd[0], "-m", WIKI_HF, "--lora", "/nonexistent-adapter"] + cmd[1:],
                          ["/nonexistent-adapter"])


def test_flag_limits_and_output_paths():
    # Values no machine needs are flag errors, not a crash; a bad output path fails before the work.
    expect_user_error(["generate", "-m", WIKI_HF, "-p", "x", "-t", "5000"], ["--threads", "1024"])
    expect_user_error(["perplexity", "-m", WIKI_HF, "-f", f"{SHARED}/data/wikitext2/wiki.test.raw", "-c", "128",
                       "--save-logits", tempfile.gettempdir()], ["is a folder"])
    expect_user_error(["perplexity", "-m", WIKI_HF, "-f", f"{SHARED}/data/wikitext2/wiki.test.raw", "-c", "128",
                       "--save-logits", "/dev/null"], ["not a regular file"])
    # An output never replaces an input: the text, the model file, a file of the model folder.
    with tempfile.TemporaryDirectory() as d:
        text = f"{d}/text.txt"
        shutil.copy(f"{SHARED}/data/wikitext2/wiki.test.raw", text)
        os.mkdir(f"{d}/model")
        for f in os.listdir(WIKI_HF):
            os.symlink(f"{WIKI_HF}/{f}", f"{d}/model/{f}")
        shutil.copy(f"{WIKI_HF}/config.json", f"{d}/model/config.json.copy")
        gguf = f"{d}/model.gguf"
        shutil.copy(f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q8_0.gguf", gguf)
        for model, out, words in ((WIKI_HF, text, ["is the input", text]),
                                  (gguf, gguf, ["is the input", gguf]),
                                  (f"{d}/model", f"{d}/model/config.json.copy", ["file of the input folder"])):
            before = open(out, "rb").read()
            expect_user_error(["perplexity", "-m", model, "-f", text, "-c", "128", "--save-logits", out], words)
            expect(open(out, "rb").read() == before, f"{out} changed")
    # A flag given twice: the last one wins, as in llama.cpp; lists still collect every value.
    p = run(["generate", "-m", WIKI_HF, "-p", "x", "-n", "2", "-t", "3", "-t", "1", "-v"])
    ok(p)
    expect(b"1 threads" in p.stderr, f"-t 3 -t 1: {p.stderr!r}")
    out = ok(run(["generate", "-m", WIKI_HF, "-p", "The history of the", "-n", "30", "--temp", "0",
                  "--stop", "zzz", "--stop", "unk"]))
    expect(not out.endswith(b"unk") and len(out) < 20, f"the second --stop was dropped: {out!r}")
    # A step holds a row for every --parallel sequence, beyond the default 512 rows.
    out = ok(run(["bench", "-m", WIKI_HF, "-p", "8", "-n", "4", "-r", "1", "--parallel", "600", "--json"]))
    expect(json.loads(out)["batched_decode_tokens_per_second"] > 0, "bench --parallel 600")


def test_finetune_and_merge_protect_their_files_and_values():
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(f"{d}/run")
        data = f"{d}/run/training_log.jsonl"  # JSONL data kept in the folder trained into
        with open(data, "w", encoding="utf-8") as f:
            for r in json.loads(TINY_ALPACA):
                f.write(json.dumps(r) + "\n")
        before = open(data, "rb").read()
        common = ["finetune", "-m", WIKI_HF, "--batch", "2", "--seq", "64", "--steps", "2"]
        # The default log OUTPUT/training_log.jsonl replaced the data, exit 0.
        expect_user_error(common + ["--data", data, "-o", f"{d}/run"], ["training log", "is the input", data])
        expect(open(data, "rb").read() == before, "the data changed")
        shutil.copy(data, f"{d}/data.jsonl")
        data = f"{d}/data.jsonl"
        # A log appended to the adapter's own file broke the adapter, exit 0.
        for own in ("adapter_config.json", "adapter_model.safetensors"):
            expect_user_error(common + ["--data", data, "-o", f"{d}/run", "--log-file", f"{d}/run/{own}"],
                              ["--log-file", own])
        expect(not os.path.exists(f"{d}/run/adapter_config.json"), "an adapter was written")
        # Values that pass as numbers but cannot train: an infinite epsilon gave B = 0 everywhere;
        # a negative seed wrapped to 2^64-1; an empty value was 0 (a whole epoch for --steps).
        expect_user_error(common + ["--data", data, "-o", f"{d}/o1", "--adam-eps", "inf"], ["--adam-eps", "finite"])
        expect_user_error(common + ["--data", data, "-o", f"{d}/o1", "--seed", "-1"], ["--seed", "0 or more"])
        expect_user_error(common + ["--data", data, "-o", f"{d}/o1", "--steps", ""], ["--steps", "empty"])
        expect_user_error(["generate", "-m", WIKI_HF, "-p", "x", "-n", ""], ["--n-predict", "empty"])
        # Held-out data that all falls past --seq trained without any held-out loss, warning only.
        long_val = f"{d}/long.jsonl"
        with open(long_val, "w", encoding="utf-8") as f:
            f.write(json.dumps({"instruction": "history " * 200, "output": "yes"}) + "\n")
        p = run(common + ["--data", data, "-o", f"{d}/o3", "--val-data", long_val])
        last = p.stderr.decode().strip().splitlines()[-1]
        said = f"frugal: error: {long_val}: no held-out example fits in --seq 64"
        expect(p.returncode == 1 and last.startswith(said), f"exit {p.returncode}: {last}")
        expect(not os.path.exists(f"{d}/o3/adapter_config.json"), "an adapter was written")
        p = run(common + ["--data", data, "-o", f"{d}/o2", "--val-data", data, "--val-split", "0.2", "-q"])
        expect(p.returncode == 0 and b"--val-split is not used beside --val-data" in p.stderr, f"{p.stderr!r}")
        # A merge whose weights overflow: inf as f32 (1e40 is finite only as a double), past
        # 65504 as f16. Named, nothing written.
        for args, words in (([ADAPTER + ":1e40"], ["is inf", "f32 cannot hold"]),
                            ([ADAPTER + ":1e7", "--type", "f16"], ["f16 cannot hold"])):
            p = run_merge(["-m", WIKI_HF, "--lora"] + args + ["-o", f"{d}/merged"])
            err = p.stderr.decode()
            expect(p.returncode == 1 and all(w in err for w in words + ["merged weight at row"]), f"{args}: {err}")
            expect(not os.path.exists(f"{d}/merged"), "a failed merge left output")


def write_safetensors(path, tensors):
    """A safetensors file of F32 tensors: {name: (shape, values)}."""
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def small_adapter(d, config, a="lora_A", b="lora_B", rank=4):
    """An adapter of q_proj in layer 0 of wiki-7m (256 wide), tensors named with `a` and `b`."""
    os.makedirs(d)
    with open(f"{d}/adapter_config.json", "w") as f:
        json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]} | config, f)
    m = "base_model.model.model.layers.0.self_attn.q_proj"
    write_safetensors(f"{d}/adapter_model.safetensors", {f"{m}.{a}.weight": ([rank, 256], [0.01] * (rank * 256)),
                                                          f"{m}.{b}.weight": ([256, rank], [0.01] * (rank * 256))})
    return d


def test_lora_merge_output_is_all_or_nothing():
    # A merge that failed after model.safetensors was written (a full disk while copying the
    # tokenizer) left a half-written folder; Ctrl-C left an empty folder behind. A model folder
    # being replaced stays as it was when the merge fails.
    import resource
    with tempfile.TemporaryDirectory() as d:
        base = f"{d}/base"
        os.mkdir(base)
        for f in os.listdir(WIKI_HF):
            os.symlink(f"{WIKI_HF}/{f}", f"{base}/{f}")
        size = os.path.getsize(f"{WIKI_HF}/model.safetensors")
        with open(f"{base}/notes.txt", "wb") as f:  # copied after the weights, larger than them
            f.write(b"x" * (size + (4 << 20)))

        def full_disk():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + (2 << 20), resource.RLIM_INFINITY))

        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/kept"]))
        before = {n: open(f"{d}/kept/{n}", "rb").read() for n in os.listdir(f"{d}/kept")}
        for out in (f"{d}/new", f"{d}/kept"):
            p = subprocess.run([FRUGAL, "lora", "merge", "-m", base, "--lora", ADAPTER, "-o", out],
                               capture_output=True, timeout=120, preexec_fn=full_disk)
            err = p.stderr.decode()
            expect(p.returncode == 1 and "cannot copy notes.txt" in err and "File too large" in err, f"{out}: {err}")
            expect(sorted(os.listdir(d)) == ["base", "kept"], f"{out}: left {os.listdir(d)}")
            expect({n: open(f"{d}/kept/{n}", "rb").read() for n in os.listdir(f"{d}/kept")} == before,
                   "the model folder was changed by a failed merge")
        # SIGINT at any moment: the output is whole or absent, no temporary stays.
        for i, delay in enumerate((0.02, 0.05, 0.08, 0.11, 0.15, 0.2)):
            out = f"{d}/int{i}"
            p = subprocess.Popen([FRUGAL, "lora", "merge", "-m", WIKI_HF, "--lora", ADAPTER, "-o", out],
                                 stderr=subprocess.DEVNULL)
            time.sleep(delay)
            p.send_signal(signal.SIGINT)
            code = p.wait(timeout=120)
            left = [n for n in os.listdir(d) if "int" in n]
            whole = left == [f"int{i}"] and sorted(os.listdir(out)) == sorted(before)
            expect(left == [] or whole, f"SIGINT after {delay}s (exit {code}): {left}")
            expect(code != 0 or whole, f"{out}: exit 0 without the whole model")
            shutil.rmtree(out, ignore_errors=True)


def test_lora_merge_output_folder_rules():
    # Merging into a folder kept its files (a foreign tokenizer.json broke the merged model), and
    # adapter and model folders got mixed (merge into an adapter's folder, finetune into a merged
    # model's). Now: new or empty folder, or a model written before (replaced whole); else refused.
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(f"{d}/stale")
        with open(f"{d}/stale/tokenizer.json", "w") as f:
            f.write('{"garbage": 1}')
        expect_error_line(["lora", "merge", "-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/stale"],
                          f"frugal: error: {d}/stale: is not empty and holds no model (config.json and .safetensors): "
                          "tokenizer.json; write to a new or empty folder")
        expect(os.listdir(f"{d}/stale") == ["tokenizer.json"], "the refused folder changed")
        shutil.copytree(ADAPTER, f"{d}/adapter")
        expect_user_error(["lora", "merge", "-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/adapter"],
                          [f"{d}/adapter", "holds an adapter (adapter_config.json)"])
        expect(sorted(os.listdir(f"{d}/adapter")) == sorted(os.listdir(ADAPTER)), "the adapter folder changed")
        os.mkdir(f"{d}/empty")
        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/empty"]))
        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/merged"]))
        with open(f"{d}/merged/extra.txt", "w") as f:
            f.write("from before")
        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER + ":0.5", "-o", f"{d}/merged"]))
        expect(sorted(os.listdir(f"{d}/merged")) == sorted(os.listdir(f"{d}/empty")), f"{os.listdir(d + '/merged')}")
        expect(greedy(["-m", f"{d}/merged"]) == greedy(["-m", WIKI_HF, "--lora", ADAPTER + ":0.5"]),
               "the replaced model is not the new merge")
        expect(sorted(os.listdir(d)) == ["adapter", "empty", "merged", "stale"], f"temporaries left: {os.listdir(d)}")
        # An adapter written into a model's folder: refused before training.
        expect_user_error(["finetune", "-m", WIKI_HF, "--data", f"{SHARED}/data/instruct/wiki_demo.txt", "--steps",
                           "1", "--seq", "32", "-o", f"{d}/merged"], [f"{d}/merged", "holds a model"])
        expect(not os.path.exists(f"{d}/merged/adapter_config.json"), "an adapter was written into the model")


def test_lora_merge_into_a_folder_that_holds_more():
    # A model folder that also held the merge's own inputs (in subfolders), a .git folder and
    # notes was replaced whole: all of it gone, exit 0. `-o .` and a symbolic link to a model
    # folder failed after the work; a chat_template.jinja was left behind (the merged model
    # chatted in another format); a disk too small was found once it filled.
    with tempfile.TemporaryDirectory() as d:
        def model_copy(to):  # writable, as a user's own folder (the shared one is read-only)
            shutil.copytree(WIKI_HF, to, copy_function=shutil.copyfile)
            os.chmod(to, 0o755)
            return to

        y = model_copy(f"{d}/y")
        model_copy(f"{y}/base")
        shutil.copytree(ADAPTER, f"{y}/lora")
        expect_user_error(["lora", "merge", "-m", f"{y}/base", "--lora", f"{y}/lora", "-o", y],
                          [y, "holds the input", f"{y}/lora"])
        shutil.rmtree(f"{y}/base")
        shutil.rmtree(f"{y}/lora")
        os.mkdir(f"{y}/.git")
        with open(f"{y}/NOTES.md", "w") as f:
            f.write("mine")
        before = sorted(os.listdir(y))
        expect_user_error(["lora", "merge", "-m", WIKI_HF, "--lora", ADAPTER, "-o", y],
                          [y, "holds a model, and also .git/, NOTES.md", "new or empty folder"])
        expect(sorted(os.listdir(y)) == before, f"the refused folder changed: {os.listdir(y)}")
        # The base's chat_template.jinja goes with the merged model.
        base = model_copy(f"{d}/base")
        with open(f"{base}/chat_template.jinja", "w") as f:
            f.write("{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>{% endfor %}")
        ok(run_merge(["-m", base, "--lora", ADAPTER, "-o", f"{d}/merged"]))
        expect(os.path.exists(f"{d}/merged/chat_template.jinja"), f"no template: {os.listdir(d + '/merged')}")
        # `-o .` from inside a model folder, and a link to one (written through, the link kept).
        p = subprocess.run([FRUGAL, "lora", "merge", "-m", WIKI_HF, "--lora", ADAPTER + ":0.5", "-o", "."],
                           cwd=f"{d}/merged", capture_output=True, timeout=120)
        expect(p.returncode == 0, f"-o .: {p.stderr.decode()}")
        os.symlink(f"{d}/merged", f"{d}/link")
        ok(run_merge(["-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{d}/link"]))
        expect(os.path.islink(f"{d}/link"), "the link was replaced")
        expect(greedy(["-m", f"{d}/link"]) == greedy(["-m", WIKI_HF, "--lora", ADAPTER]), "the merge through the link")
        expect(sorted(os.listdir(d)) == ["base", "link", "merged", "y"], f"left: {os.listdir(d)}")
        # A file system too small: said before the merge (needs root for a small tmpfs).
        small = f"{d}/small"
        os.mkdir(small)
        mount = ["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", small]
        if os.geteuid() == 0 and subprocess.run(mount, capture_output=True).returncode == 0:
            try:
                expect_user_error(["lora", "merge", "-m", WIKI_HF, "--lora", ADAPTER, "-o", f"{small}/m"],
                                  [f"{small}/m", "needs 27.", "MB free"])
                expect(os.listdir(small) == [], f"left: {os.listdir(small)}")
            finally:
                subprocess.run(["umount", small])
        else:
            print("skipped the small file system (no tmpfs can be mounted here)")


def test_peft_adapter_names_rank_and_init():
    with tempfile.TemporaryDirectory() as d:
        # lora_A of adapter "default" and lora_B of "other" were paired silently.
        two = small_adapter(f"{d}/two", {}, "lora_A.default", "lora_B.other")
        expect_user_error(["lora", "info", two], ["two adapters", "'default'", "'other'"])
        ok(run(["lora", "info", small_adapter(f"{d}/named", {}, "lora_A.default", "lora_B.default")]))
        # Rank 0 was reported as "has lora_B but no lora_A".
        rank0 = small_adapter(f"{d}/rank0", {}, rank=0)
        expect_user_error(["lora", "info", rank0], ["q_proj", "rank 0"])
        # An unconverted PiSSA/OLoRA/CorDA adapter applies to a base PEFT modified: refused.
        for init in ("pissa", "pissa_niter_4", "olora", "corda"):
            a = small_adapter(f"{d}/{init}", {"init_lora_weights": init})
            expect_user_error(["lora", "info", a], [init, "path_initial_model_for_weight_conversion"])
        p = run(["lora", "info", small_adapter(f"{d}/loftq", {"init_lora_weights": "loftq"})])
        expect(p.returncode == 0 and b"LoftQ" in p.stderr, f"loftq: {p.returncode} {p.stderr!r}")
        for i, init in enumerate((True, False, "gaussian", "eva")):
            ok(run(["lora", "info", small_adapter(f"{d}/init{i}", {"init_lora_weights": init})]))


def test_lora_flags_llama_cpp_forms():
    plain = greedy(["-m", WIKI_HF])
    adapted = greedy(["-m", WIKI_HF, "--lora", ADAPTER])
    with tempfile.TemporaryDirectory() as d:
        # A folder named like DIR:SCALE was read as DIR at that scale.
        shutil.copytree(ADAPTER, f"{d}/ad:500")
        expect(greedy(["-m", WIKI_HF, "--lora", f"{d}/ad:500"]) == adapted, "--lora ad:500 (a folder)")
        # llama.cpp's --lora-scaled FOLDER SCALE, repeatable, beside --lora.
        expect(greedy(["-m", WIKI_HF, "--lora-scaled", ADAPTER, "0"]) == plain, "--lora-scaled DIR 0")
        expect(greedy(["-m", WIKI_HF, "--lora-scaled", ADAPTER, "0.5", "--lora", ADAPTER + ":0.5"]) == adapted,
               "--lora-scaled 0.5 with --lora :0.5")
        expect_user_error(["perplexity", "-m", WIKI_HF, "-f", f"{SHARED}/data/wikitext2/wiki.test.raw",
                           "--lora-scaled", "/nonexistent-adapter", "1"], ["/nonexistent-adapter"])
        expect_user_error(["generate", "-m", WIKI_HF, "-p", "x", "--lora-scaled", ADAPTER, "half"],
                          ["--lora-scaled", "half", "finite number"])
        ok(run_merge(["-m", WIKI_HF, "--lora-scaled", ADAPTER, "1", "-o", f"{d}/merged"]))
        expect(greedy(["-m", f"{d}/merged"]) == adapted, "lora merge --lora-scaled")
        # A GGUF LoRA file: said what it is, not "not a folder".
        expect_user_error(["generate", "-m", WIKI_HF, "--lora", WIKI_GGUF, "-p", "x"],
                          ["GGUF LoRA adapters", "convert_lora_to_gguf.py", "PEFT folder"])
    # The help shows one value per flag, as parsed (it showed "TEXT ...", and `--lora a b` is refused).
    helps = ok(run(["generate", "--help"])).decode()
    lora_lines = [l for l in helps.splitlines() if l.startswith("  --lora")]
    expect(len(lora_lines) == 2 and lora_lines[0].startswith("  --lora FOLDER[:SCALE] ") and
           lora_lines[1].startswith("  --lora-scaled FOLDER SCALE ") and "..." not in "".join(lora_lines), helps)
    # `lora show` is `lora info`, as the group's help says.
    expect(ok(run(["lora", "show", ADAPTER])) == ok(run(["lora", "info", ADAPTER])), "lora show")
    expect(b"info" in ok(run(["lora", "--help"])), "lora --help does not name info")


def test_chat_stops_at_an_end_of_turn_the_vocabulary_lacks():
    # A chatml adapter on wiki-7m, whose vocabulary has no <|im_end|> token: the reply was
    # "Hi there<|im_end|>" and then ran on to the end of the context (2,013 tokens).
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/chat.jsonl", "w", encoding="utf-8") as f:
            for _ in range(64):
                f.write(json.dumps({"messages": [{"role": "user", "content": "hello"},
                                                 {"role": "assistant", "content": "Hi there"}]}) + "\n")
        ok(run(["finetune", "-m", WIKI_HF, "--data", f"{d}/chat.jsonl", "-o", f"{d}/adapter", "--steps", "40",
                "--batch", "8", "--seq", "64", "-q", "--lr", "1e-2", "--chat-template", "chatml", "--targets", "all",
                "--val-split", "0"]))
        p = run(["chat", "-m", WIKI_HF, "--lora", f"{d}/adapter", "--temp", "0", "--chat-template", "chatml", "-v"],
                b"hello\n")
        reply = ok(p).decode()
        err = p.stderr.decode()
        expect(reply == "Hi there\n", f"reply {reply[:200]!r}")
        expect("finished: stop" in err, f"{err[-500:]}")


def test_output_that_cannot_be_written_is_an_error():
    # generate > out.txt on a full disk ended with exit 0 and the text lost (/dev/full: ENOSPC).
    text = f"{SHARED}/data/wikitext2/wiki.test.raw"
    for args, stdin in ((["generate", "-m", WIKI_HF, "-p", "The history", "-n", "8", "--temp", "0"], None),
                        (["chat", "-m", WIKI_HF, "-n", "4", "--temp", "0"], b"hello\nagain\n"),
                        (["perplexity", "-m", WIKI_HF, "-f", text, "-c", "128", "--chunks", "1", "--json"], None)):
        with open("/dev/full", "wb") as full:
            p = subprocess.run([FRUGAL] + args + ["-t", "1"], input=stdin or b"", stdout=full,
                               stderr=subprocess.PIPE, timeout=120)
        err = p.stderr.decode(errors="replace")
        expect(p.returncode == 1 and "cannot write to standard output: No space left on device" in err,
               f"{args[0]} > /dev/full: exit {p.returncode}, stderr {err[-400:]!r}")
        # The chat ends at the first reply it cannot show, not after every line.
        expect(err.count("cannot write") == 1, f"{args[0]}: {err!r}")


def test_fifo_and_foreign_tokenizer_files_are_refused():
    with tempfile.TemporaryDirectory() as d:
        fifo = f"{d}/fifo"
        os.mkfifo(fifo)
        # Opening a FIFO waits for a writer: the run hung forever before the regular-file check.
        for args, words in ((["-m", fifo], [fifo, "not a regular file"]),
                            (["-m", WIKI_HF, "--tokenizer", fifo], [fifo, "not a regular file"]),
                            (STORIES[:2] + ["--tokenizer", fifo], [fifo, "not a regular file"])):
            p = subprocess.run([FRUGAL, "generate", "-p", "x", "-n", "2"] + args, capture_output=True, timeout=30)
            err = p.stderr.decode(errors="replace")
            expect(p.returncode == 1 and all(w in err for w in words), f"{args}: {p.returncode} {err!r}")
        # A llama2.c tokenizer with more tokens than the checkpoint is another model's: its first
        # 512 tokens were read and every id printed as the wrong text.
        llama2 = f"{SHARED}/tokenizers/llama2/tokenizer.bin"
        expect_user_error(["generate"] + STORIES[:2] + ["--tokenizer", llama2, "-p", "Once", "-n", "4"],
                          [llama2, "holds 32000 tokens", "vocabulary has 512"])
        longer = f"{d}/tok512-plus.bin"
        with open(longer, "wb") as f:
            f.write(open(STORIES[3], "rb").read() + b"abc")
        expect_user_error(["generate"] + STORIES[:2] + ["--tokenizer", longer, "-p", "Once", "-n", "4"],
                          [longer, "3 bytes follow the checkpoint's 512 tokens"])
        # Another format was parsed as llama2.c's and failed on a nonsense length; it is named.
        for tokenizer, kind in ((f"{WIKI_HF}/tokenizer.model", "a SentencePiece model"), (WIKI_GGUF, "a GGUF file"),
                                (WIKI_HF, "a folder")):
            expect_user_error(["generate"] + STORIES[:2] + ["--tokenizer", tokenizer, "-p", "Once"],
                              [tokenizer, kind, "tokenizer.bin"])
        # A file of a Hugging Face folder: the folder is the model.
        expect_user_error(["generate", "-m", f"{WIKI_HF}/model.safetensors", "-p", "x"],
                          ["one file of a Hugging Face model", f"pass its folder ({WIKI_HF})"])
        # The checkpoint's tokenizer.bin kept after converting it to GGUF (which carries the
        # vocabulary) was refused as "not a SentencePiece model ... it does not parse". It is
        # told by its records, not its name: the same bytes as tok.model are still named.
        ok(run(["quantize"] + STORIES + ["-o", f"{d}/st.gguf", "--type", "f32"]))
        shutil.copy(STORIES[3], f"{d}/tok.model")
        for model, says in ((f"{d}/st.gguf", "a GGUF file carries its own vocabulary"),
                            (WIKI_HF, "a Hugging Face folder reads its own tokenizer files")):
            for tokenizer in (STORIES[3], f"{d}/tok.model"):
                expect_user_error(["generate", "-m", model, "--tokenizer", tokenizer, "-p", "Once", "-n", "2"],
                                  [tokenizer, "a llama2.c tokenizer.bin", "llama2.c checkpoint", says,
                                   "leave out --tokenizer"])
        # A SentencePiece model is still read as one, and a file of neither format still refused so.
        ok(run(["generate", "-m", WIKI_HF, "--tokenizer", f"{WIKI_HF}/tokenizer.model", "-p", "Once", "-n", "2"]))
        with open(f"{d}/junk.model", "wb") as f:
            f.write(b"\x10\x00\x00\x00" + b"junk" * 10)
        expect_user_error(["generate", "-m", WIKI_HF, "--tokenizer", f"{d}/junk.model", "-p", "Once"],
                          [f"{d}/junk.model", "not a SentencePiece model"])


def test_generate_says_what_it_did_not_do():
    # -n 100 in a context of 16 stopped after 14 tokens with exit 0 and no word (only -v said it).
    p = run(["generate", "-m", WIKI_HF, "-p", "The history", "-c", "16", "-n", "100", "--temp", "0"])
    ok(p)
    err = p.stderr.decode()
    expect("the context of 16 tokens is full: stopped after 14 of the 100 tokens asked for" in err, err)
    # -n -1 runs to the end of the context by design: nothing to say.
    p = run(["generate", "-m", WIKI_HF, "-p", "The history", "-c", "16", "-n", "-1", "--temp", "0"])
    expect(p.returncode == 0 and b"is full" not in p.stderr, f"{p.stderr!r}")
    # --keep acts only with --truncate keep-end; -p "" beside -f is two prompts.
    p = run(["generate", "-m", WIKI_HF, "-p", "x", "-n", "2", "--keep", "5"])
    expect(p.returncode == 0 and b"--keep is not used without --truncate keep-end" in p.stderr, f"{p.stderr!r}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("The history")
        f.flush()
        expect_user_error(["generate", "-m", WIKI_HF, "-p", "", "-f", f.name], ["-p", "-f", "not both"])


def test_empty_text_values_are_errors():
    # An empty value is an unset shell variable ("$KEY"), not "not given": the API key was switched
    # off, --policy and --save-logits skipped, all with exit 0.
    text = f"{SHARED}/data/wikitext2/wiki.test.raw"
    for args, flag in ((["serve", "-m", WIKI_HF, "--api-key", ""], "--api-key"),
                       (["perplexity", "-m", WIKI_HF, "-f", text, "-c", "128", "--save-logits", ""], "--save-logits"),
                       (["perplexity", "-m", WIKI_HF, "-f", text, "-c", "128", "--kl-base", ""], "--kl-base"),
                       (["generate", "-m", "", "-p", "x"], "--model"),
                       (["generate", "-m", WIKI_HF, "-p", "x", "--lora", ""], "--lora"),
                       (["finetune", "-m", WIKI_HF, "--data", text, "-o", "out", "--init-adapter", ""],
                        "--init-adapter"),
                       (["lora", "merge", "-m", WIKI_HF, "--lora", "", "-o", "out"], "--lora")):
        expect_user_error(args, [flag, "empty"])
    # Where empty text means something, it stays allowed: an empty prompt generates from BOS.
    out = ok(run(["generate", "-m", WIKI_HF, "-p", "", "-n", "4", "--temp", "0"]))
    expect(len(out) > 0, "an empty prompt generated nothing")
    ok(run(["generate", "-m", WIKI_HF, "-p", "x", "-n", "2", "--stop", ""]))


def test_prompt_from_a_pipe():
    # -f /dev/stdin (a pipe here) reads the prompt to its end, as llama-cli's -f does.
    args = ["generate", "-m", WIKI_HF, "-n", "8", "--temp", "0"]
    piped = ok(run(args + ["-f", "/dev/stdin"], stdin=b"The history of the city"))
    expect(piped == ok(run(args + ["-p", "The history of the city"])), f"-f /dev/stdin gave {piped!r}")


def test_broken_weights_are_an_error():
    # A NaN in the final norm: llama.cpp prints "PPL = nan"; a saved base of NaN rows then
    # compared as a perfect match. frugal names the problem and writes nothing. Generation
    # says the same: min_p's stage kept no candidate (an abort), greedy printed <unk>.
    with tempfile.TemporaryDirectory() as d:
        for f in os.listdir(WIKI_HF):
            if f != "model.safetensors":
                os.symlink(f"{WIKI_HF}/{f}", f"{d}/{f}")
        data = bytearray(open(f"{WIKI_HF}/model.safetensors", "rb").read())
        n = int.from_bytes(data[:8], "little")
        begin = json.loads(data[8:8 + n])["model.norm.weight"]["data_offsets"][0]
        data[8 + n + begin:8 + n + begin + 4] = b"\x00\x00\xc0\x7f"  # float NaN
        open(f"{d}/model.safetensors", "wb").write(data)
        out = f"{d}/base.bin"
        p = run(["perplexity", "-m", d, "-f", f"{SHARED}/data/wikitext2/wiki.test.raw", "-c", "128", "--chunks", "2",
                 "--save-logits", out])
        err = p.stderr.decode()
        expect(p.returncode == 1 and "frugal: error: window 1" in err and "not finite" in err, f"{p.returncode}: {err}")
        expect(not os.path.exists(out), "a base of NaN rows was written")
        for sampling in ([], ["--temp", "0"], ["--min-p", "0.05", "-s", "1"]):
            expect_user_error(["generate", "-m", d, "-p", "Hello world", "-n", "4"] + sampling, ["not finite"])

        def broken(tensor, edit):
            weights = bytearray(original)
            begin, end = json.loads(original[8:8 + n])[tensor]["data_offsets"]
            values = struct.unpack(f"<{(end - begin) // 4}f", weights[8 + n + begin:8 + n + end])
            weights[8 + n + begin:8 + n + end] = struct.pack(f"<{len(values)}f", *edit(list(values)))
            open(f"{d}/model.safetensors", "wb").write(weights)

        original = bytes(open(f"{WIKI_HF}/model.safetensors", "rb").read())
        ppl = ["perplexity", "-f", f"{SHARED}/data/wikitext2/wiki.test.raw", "-c", "128", "--chunks", "2", "-m"]

        def refused(args, word):
            p = run(args)
            expect(p.returncode == 1 and word in p.stderr.decode(), f"{args}: {p.returncode} {p.stderr[-300:]!r}")

        # A NaN in layer 1's norm of a Q4_0 model: the integer products' activations coded it as
        # finite garbage, and the perplexity came out believable (109). Every kernel set.
        # quantize refuses such weights, so the NaN goes into the file it made of the clean ones
        # (a GGUF keeps a norm's f32 values as they are: found by its bytes).
        norm = "model.layers.1.input_layernorm.weight"
        broken(norm, lambda v: [float("nan")] + v[1:])
        q4 = f"{d}/nan-q4_0.gguf"
        refused(["quantize", "-m", d, "-o", q4, "--type", "q4_0"], "finite")
        broken(norm, lambda v: v)
        ok(run(["quantize", "-m", d, "-o", q4, "--type", "q4_0"]))
        begin, end = json.loads(original[8:8 + n])[norm]["data_offsets"]
        gguf = bytearray(open(q4, "rb").read())
        at = gguf.find(original[8 + n + begin:8 + n + end])
        expect(at > 0 and gguf.find(original[8 + n + begin:8 + n + end], at + 1) < 0, "the norm's bytes in the GGUF")
        gguf[at:at + 4] = b"\x00\x00\xc0\x7f"
        open(q4, "wb").write(gguf)
        for isa in ("scalar", "avx2", None):  # None: the best this CPU has
            if isa:
                os.environ["FRUGAL_ISA"] = isa
            try:
                refused(ppl + [q4], "not finite")
            finally:
                os.environ.pop("FRUGAL_ISA", None)
        # Finite but enormous logits: the perplexity overflows; an error, not "PPL = inf".
        broken("model.norm.weight", lambda v: [x * 1e30 for x in v])
        refused(ppl + [d], "overflows")


def test_perplexity_does_not_depend_on_the_batch_size_past_a_partition():
    # -b 17 over windows of 512 leaves a prompt chunk of one row past position 256 (a run of 16k
    # + 1 rows): that row attended to positions 0-255 only (PPL +4.7%).
    ppl = []
    for b in ("512", "17", "33"):
        out = ok(run(["perplexity", "-m", WIKI_HF, "-f", f"{SHARED}/data/wikitext2/wiki.test.raw", "-c", "512",
                      "-b", b, "--chunks", "2", "--json", "-t", "2"]))
        ppl.append(json.loads(out)["ppl"])
    expect(ppl[1] == ppl[0] and ppl[2] == ppl[0], f"perplexity by -b 512, 17, 33: {ppl}")


def test_truncated_llama2c_checkpoint_says_so():
    with tempfile.TemporaryDirectory() as d:
        with open(STORIES[1], "rb") as f:
            data = f.read()
        with open(f"{d}/cut.bin", "wb") as f:
            f.write(data[:-1])
        expect_user_error(["generate", "-m", f"{d}/cut.bin", "--tokenizer", STORIES[3], "-p", "x"],
                          ["cut.bin", f"is {len(data) - 1} bytes but its header", f"implies {len(data)}"])


def write_tiny_qwen2(d, tokenizer=None, vocab=4096, **config):
    """A one-layer Qwen2 in f32 with head_dim 32 (not hidden / heads = 16) and wiki-7m's tokenizer,
    or the tokenizer.json folder `tokenizer` (its weights zeros: Qwen's vocabulary is 38x larger)."""
    import random
    import shutil
    import struct
    rng = random.Random(5)
    D, F, H, KV, HD, V = 64, 128, 4, 2, 32, vocab
    shapes = [("model.embed_tokens.weight", (V, D)), ("model.norm.weight", (D,))]
    p = "model.layers.0."
    shapes += [(p + "input_layernorm.weight", (D,)), (p + "post_attention_layernorm.weight", (D,)),
               (p + "self_attn.q_proj.weight", (H * HD, D)), (p + "self_attn.q_proj.bias", (H * HD,)),
               (p + "self_attn.k_proj.weight", (KV * HD, D)), (p + "self_attn.k_proj.bias", (KV * HD,)),
               (p + "self_attn.v_proj.weight", (KV * HD, D)), (p + "self_attn.v_proj.bias", (KV * HD,)),
               (p + "self_attn.o_proj.weight", (D, H * HD)), (p + "mlp.gate_proj.weight", (F, D)),
               (p + "mlp.up_proj.weight", (F, D)), (p + "mlp.down_proj.weight", (D, F))]
    header, blobs, offset = {}, [], 0
    for name, shape in shapes:
        n = 1
        for x in shape:
            n *= x
        if tokenizer is not None:
            blob = bytes(4 * n)
        else:
            values = [1.0] * n if name.endswith("norm.weight") else [rng.gauss(0, 0.1) for _ in range(n)]
            blob = struct.pack(f"<{n}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": D, "intermediate_size": F,
           "num_hidden_layers": 1, "num_attention_heads": H, "num_key_value_heads": KV, "head_dim": HD,
           "vocab_size": V, "max_position_embeddings": 1024, "rms_norm_eps": 1e-6, "tie_word_embeddings": True}
    cfg.update(config)
    with open(f"{d}/config.json", "w") as f:
        json.dump(cfg, f)
    if tokenizer is None:
        shutil.copy(f"{WIKI_HF}/tokenizer.model", d)
    else:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(f"{tokenizer}/{name}", d)


def test_qwen2_head_dim_and_sliding_window():
    with tempfile.TemporaryDirectory() as d:
        # An explicit head_dim is the model's, as transformers' Qwen2 reads it.
        write_tiny_qwen2(f"{d}/hd")
        ok(run(["generate", "-m", f"{d}/hd", "-p", "The history", "-n", "4", "--temp", "0"]))
        # A sliding attention window frugal does not implement caps the context; asking for more
        # is an error, not a silently different model.
        write_tiny_qwen2(f"{d}/sw", use_sliding_window=True, sliding_window=64)
        expect_user_error(["generate", "-m", f"{d}/sw", "-p", "x", "-c", "128"], ["sliding", "64", "-c 64"])
        p = run(["generate", "-m", f"{d}/sw", "-p", "The history", "-n", "2", "-v"])
        ok(p)
        expect(b"sliding window of 64" in p.stderr and b"context 64" in p.stderr, f"{p.stderr!r}")
        # A window switched on but of no size would mask every key.
        write_tiny_qwen2(f"{d}/sw0", use_sliding_window=True, sliding_window=0)
        expect_user_error(["generate", "-m", f"{d}/sw0", "-p", "x"], ["use_sliding_window", "sliding_window is 0"])
        write_tiny_qwen2(f"{d}/off", use_sliding_window=False, sliding_window=64)  # Qwen2's released configs
        ok(run(["generate", "-m", f"{d}/off", "-p", "x", "-c", "128", "-n", "2"]))


def test_qwen_gguf_names_bos_and_pre_tokenizer_as_llama_cpp_does():
    # Qwen's tokenizer_config.json has no BOS (null) and its config.json names <|endoftext|>: the
    # GGUF names it, as llama.cpp's converter does (without the key, readers take id 11, ',' in
    # Qwen's vocabulary), and its pre-tokenizer is qwen2 (it was llama-bpe, whose detokenizer
    # cleans spaces differently).
    with tempfile.TemporaryDirectory() as d:
        write_tiny_qwen2(f"{d}/qwen", tokenizer=f"{SHARED}/tokenizers/qwen3", vocab=151936, bos_token_id=151643,
                         eos_token_id=151645)
        ok(run(["quantize", "-m", f"{d}/qwen", "-o", f"{d}/qwen.gguf", "--type", "f16"]))
        meta = gguf_file.read(f"{d}/qwen.gguf", with_tensors=False).metadata
        expect(meta.get("tokenizer.ggml.bos_token_id") == 151643 and meta["tokenizer.ggml.add_bos_token"] is False,
               f"BOS {meta.get('tokenizer.ggml.bos_token_id')}, add {meta.get('tokenizer.ggml.add_bos_token')}")
        expect(meta["tokenizer.ggml.pre"] == "qwen2", f"pre-tokenizer {meta['tokenizer.ggml.pre']}")


def test_prompt_filling_the_context_with_n_0():
    # -n 0 evaluates the prompt only: a whole context of it is fine; -n 1 needs one free position.
    prompt = "The history of the city is the first of the city is the first of the"  # 17 tokens with BOS
    ok(run(["generate", "-m", WIKI_HF, "-c", "17", "-p", prompt, "-n", "0"]))
    expect_user_error(["generate", "-m", WIKI_HF, "-c", "17", "-p", prompt, "-n", "1"], ["17 tokens", "context"])


def test_random_seed_is_reported_and_reproduces():
    p = run(["generate", "-m", WIKI_HF, "-p", "The history", "-n", "12", "--temp", "1", "-v"])
    ok(p)
    seeds = [line.split()[1] for line in p.stderr.decode().splitlines() if line.startswith("seed ")]
    expect(len(seeds) == 1, f"-v does not say which seed was drawn: {p.stderr.decode()}")
    again = ok(run(["generate", "-m", WIKI_HF, "-p", "The history", "-n", "12", "--temp", "1", "-s", seeds[0]]))
    expect(again == p.stdout, f"-s {seeds[0]} does not reproduce the run: {again!r} != {p.stdout!r}")


def test_finetune_cli():
    with tempfile.TemporaryDirectory() as d:
        data = f"{d}/data.json"
        with open(data, "w", encoding="utf-8") as f:
            f.write(TINY_ALPACA)
        common = ["finetune", "-m", WIKI_HF, "--data", data, "--batch", "2", "--seq", "64"]
        p = run(common + ["--lora-r", "4", "-o", f"{d}/out", "--steps", "3", "--save-every", "2"])
        ok(p)
        err = p.stderr.decode()
        expect("held-out loss" in err and "tokens/s" in err, f"no progress or evaluation lines: {err}")
        with open(f"{d}/out/adapter_config.json", encoding="utf-8") as f:
            config = json.load(f)
        expect(config["peft_type"] == "LORA" and config["r"] == 4, f"adapter_config.json: {config}")
        expect(sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"], f"{config}")
        expect(os.path.isdir(f"{d}/out/checkpoint-2"), "no checkpoint at step 2")
        ok(run(["generate", "-m", WIKI_HF, "--lora", f"{d}/out", "-p", "Topic 3", "-n", "4"]))
        # A warm start: the adapter trained further, with its config as it was.
        p = run(common + ["--init-adapter", f"{d}/out", "-o", f"{d}/warm", "--steps", "2", "--lora-dropout", "0"])
        ok(p)
        with open(f"{d}/warm/adapter_config.json", encoding="utf-8") as f:
            warm = json.load(f)
        expect({**warm, "lora_dropout": config["lora_dropout"]} == config, f"warm start config {warm} vs {config}")
        expect(warm["lora_dropout"] == 0, f"the dropout of the warm start: {warm}")
        expect(b"LoRA r=4 alpha=32" in p.stderr, f"the warm start's adapter line: {p.stderr.decode()}")
        # Records whose prompt fills --seq are left out with a warning, not trained on as
        # rows without a loss (a NaN loss and a held-out loss over 0 tokens).
        long_prompt = " ".join(["word"] * 200)
        with open(f"{d}/mixed.json", "w", encoding="utf-8") as f:
            json.dump(json.loads(TINY_ALPACA) + [{"instruction": long_prompt, "input": "", "output": "Yes."}] * 4, f)
        p = run(["finetune", "-m", WIKI_HF, "--data", f"{d}/mixed.json", "--batch", "2", "--seq", "64",
                           "--lora-r", "4", "-o", f"{d}/mixed_out", "--steps", "4", "--log-every", "1"])
        ok(p)
        err = p.stderr.decode()
        expect("4 of 16 examples left out" in err, f"no warning about the records that do not fit: {err}")
        expect("nan" not in err.lower(), f"a NaN loss: {err}")
        with open(f"{d}/mixed_out/training_log.jsonl", encoding="utf-8") as f:
            log = [json.loads(line) for line in f]
        losses = [r[k] for r in log for k in ("loss", "eval_loss") if k in r]
        expect(losses and all(isinstance(x, float) for x in losses), f"losses in the log: {losses}")
        # Bad input: one error line naming the problem, and nothing written.
        with open(f"{d}/bad.jsonl", "w", encoding="utf-8") as f:
            f.write('{"text": "fine"}\n{"text": "broken\n')
        for args, mentions in [
            (["finetune", "-m", WIKI_HF, "--data", f"{d}/bad.jsonl"], ["bad.jsonl:2"]),
            (common + ["--lora-r", "1000"], ["rank 1000"]),
            (common + ["--lora-r", "0"], ["rank", "at least 1"]),  # not "alpha/r overflows"
            (common + ["--targets", "q,query"], ["'query'"]),
            (common + ["--lora-dropout", "1.5"], ["dropout"]),
            # A warm start keeps the adapter's own shape: a flag that would change it is refused.
            (common + ["--init-adapter", f"{d}/out", "--lora-r", "8"], ["--lora-r", "--init-adapter", f"{d}/out"]),
            (common + ["--init-adapter", f"{d}/out", "--targets", "q"], ["--targets", "adapter_config.json"]),
            (common + ["--init-adapter", f"{d}/no_such_adapter"], ["no_such_adapter"]),
        ]:
            expect_user_error(args + ["-o", f"{d}/bad_out"], mentions)
            expect(not os.path.exists(f"{d}/bad_out"), f"{args}: output written")



def test_finetune_chat_template_file():
    # finetune took family names only: llama.cpp's --chat-template-file (and Jinja text given to
    # --chat-template) now render records as the detected family, as chat and serve do.
    jinja = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with tempfile.TemporaryDirectory() as d:
        data, template = f"{d}/data.json", f"{d}/t.jinja"
        with open(data, "w", encoding="utf-8") as f:
            f.write(TINY_ALPACA)
        with open(template, "w", encoding="utf-8") as f:
            f.write(jinja)
        common = ["finetune", "-m", WIKI_HF, "--data", data, "--batch", "2", "--seq", "64", "--lora-r", "2",
                  "--steps", "1"]
        for flags in (["--chat-template-file", template], ["--chat-template", jinja]):
            p = run(common + flags + ["-o", f"{d}/out-{len(flags[1])}"])
            ok(p)
            err = p.stderr.decode()
            expect("using --chat-template chatml" in err and "renders template families" in err, f"{flags[0]}: {err}")
        expect_user_error(common + ["-o", f"{d}/x", "--chat-template-file", f"{d}/none.jinja"],
                          ["--chat-template-file", f"{d}/none.jinja"])


def test_finetune_peak_memory_is_in_mb():
    # MB is 10^6 bytes in every command (bench's memory line, quantize's file size): finetune's
    # "peak memory" and its log's peak_rss_mb were MiB, 108 "MB" for a 113.7 MB process.
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([FRUGAL, "finetune", "-m", WIKI_HF, "--data",
                                 f"{SHARED}/data/instruct/wiki_demo.txt", "-o", f"{d}/out", "--steps", "2",
                                 "--batch", "2", "--seq", "64", "-t", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = proc.stderr.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        expect(proc.returncode == 0, f"finetune: {proc.returncode}: {err}")
        with open(f"{d}/out/training_log.jsonl", encoding="utf-8") as f:
            logged = [json.loads(line) for line in f][-1]["peak_rss_mb"]
        printed = float(re.search(r"peak memory ([0-9.]+) MB", err).group(1))
        process_mb = usage.ru_maxrss * 1024 / 1e6  # the kernel's peak, in kB
        # VmHWM (what finetune reads) and ru_maxrss are two readings of the same peak that differ
        # by the kernel's per-thread RSS batching (132.0 against 131.9 MB once in CI): 2% either
        # way, while MiB under the name MB reads 4.6% low.
        expect(0.98 * process_mb <= logged <= 1.02 * process_mb and abs(printed - logged) <= 0.5,
               f"peak memory printed {printed} MB, logged {logged}, the process's peak {process_mb:.1f} MB")


def finetune_records(p):
    """The record count of finetune's "N records" line (a failure ends the test)."""
    ok(p)
    m = re.search(rb"(\d+) records", p.stderr)
    expect(m is not None, f"no record count in: {p.stderr.decode(errors='replace')}")
    return int(m.group(1))


def test_finetune_data_from_a_pipe_and_of_any_size():
    with tempfile.TemporaryDirectory() as d:
        # 100 records of 1 KiB: through a pipe, the first 64 KiB used to go to the checkpoint's
        # fingerprint and never reach the loader; a pipe under 64 KiB reached it empty.
        for name, records in [("big.jsonl", 100), ("small.jsonl", 10)]:
            data = f"{d}/{name}"
            with open(data, "w", encoding="utf-8") as f:
                for i in range(records):
                    f.write(json.dumps({"text": f"Record {i:03d} " + "x" * 1000}) + "\n")
            common = ["finetune", "-m", WIKI_HF, "--steps", "1", "--seq", "32", "--val-split", "0"]
            from_file = finetune_records(run(common + ["--data", data, "-o", f"{d}/file_{name}"]))
            with open(data, "rb") as f:
                piped = finetune_records(run(common + ["--data", "/dev/stdin", "--data-format", "jsonl",
                                                       "-o", f"{d}/pipe_{name}"], stdin=f.read()))
            expect(from_file == records and piped == records, f"{name}: {from_file} records from the file, "
                   f"{piped} from a pipe, expected {records}")
        # Data is not bounded like a config file (it was refused above 256 MiB): 300 MiB, sparse,
        # read to the zeros after the last record.
        with open(f"{d}/huge.jsonl", "wb") as f:
            f.write(b'{"text": "a record"}\n' * 3)
            f.truncate(300 << 20)
        expect_user_error(["finetune", "-m", WIKI_HF, "--data", f"{d}/huge.jsonl", "-o", f"{d}/huge"],
                          ["huge.jsonl:4", "not valid JSON"])



def test_finetune_data_with_a_byte_order_mark():
    # The BOM hid the '{' of a JSONL file without an extension: it was trained on as plain text.
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/records", "wb") as f:
            f.write(b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in json.loads(TINY_ALPACA)).encode() + b"\n")
        p = run(["finetune", "-m", WIKI_HF, "--data", f"{d}/records", "-o", f"{d}/out", "--steps", "1", "--seq", "64"])
        ok(p)
        expect(b"12 records (alpaca)" in p.stderr, f"not read as 12 Alpaca records: {p.stderr.decode()}")



def test_finetune_resume_checks_contents_not_paths():
    """A checkpoint resumes on its run's inputs, wherever they are now, and on nothing else."""
    stories = f"{SHARED}/models/stories260K"
    failures = []
    with tempfile.TemporaryDirectory() as d:
        def run_twice(name, first, then, change):
            # A whole run with a checkpoint at step 2 of 4; without its adapter it is resumable.
            out = f"{d}/{name}"
            common = ["--steps", "4", "--save-every", "2", "--batch", "2", "--seq", "64", "-o", out]
            ok(run(["finetune"] + first + common))
            for f in ("adapter_config.json", "adapter_model.safetensors"):
                os.remove(f"{out}/{f}")
            change()
            return run(["finetune"] + then + common + ["--resume"])

        with open(f"{d}/a.json", "w", encoding="utf-8") as f:
            f.write(TINY_ALPACA)
        p = run_twice("moved", ["-m", WIKI_HF, "--data", f"{d}/a.json"], ["-m", WIKI_HF, "--data", f"{d}/b.json"],
                      lambda: os.rename(f"{d}/a.json", f"{d}/b.json"))
        if p.returncode != 0:
            failures.append(f"the same data under another name was refused: {p.stderr.decode()}")
        shutil.copy(f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q8_0.gguf", f"{d}/base.gguf")
        model = ["-m", f"{d}/base.gguf", "--data", f"{d}/b.json"]
        p = run_twice("model", model, model,
                      lambda: shutil.copy(f"{SHARED}/models/wiki-7m-gguf/wiki-7m-q4_0.gguf", f"{d}/base.gguf"))
        if p.returncode != 1 or b"model_contents" not in p.stderr:
            failures.append(f"resumed on another base model under the same name: {p.stderr.decode()}")
        shutil.copy(f"{stories}/tok512.bin", f"{d}/tok.bin")
        tiny = ["-m", f"{stories}/stories260K.bin", "--tokenizer", f"{d}/tok.bin", "--data",
                f"{SHARED}/data/tinystories/TinyStories-valid-excerpt.txt"]

        def negate_merge_scores():
            # The same vocabulary with every merge score negated: other merges, other tokens.
            with open(f"{d}/tok.bin", "r+b") as f:
                b = bytearray(f.read())
                o = 4
                while o < len(b):
                    b[o:o + 4] = struct.pack("<f", -struct.unpack_from("<f", b, o)[0])
                    o += 8 + struct.unpack_from("<i", b, o + 4)[0]
                f.seek(0)
                f.write(b)
        p = run_twice("tokenizer", tiny, tiny, negate_merge_scores)
        if p.returncode != 1 or b"tokenizer_contents" not in p.stderr:
            failures.append(f"resumed with another tokenizer: {p.stderr.decode()}")
    expect(not failures, "\n".join(failures))



def test_finetune_removes_checkpoints_left_half_written():
    # A process killed while writing a checkpoint leaves .checkpoint-N.tmp-PID (a whole adapter
    # and optimizer state); they stayed forever. Those of a live process are left alone.
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/data.json", "w", encoding="utf-8") as f:
            f.write(TINY_ALPACA)
        out = f"{d}/out"
        dead, live = f"{out}/.checkpoint-3.tmp-999999999", f"{out}/.checkpoint-3.tmp-{os.getpid()}"
        for folder in (dead, live):
            os.makedirs(folder)
            with open(f"{folder}/optimizer.safetensors", "wb") as f:
                f.write(b"half")
        common = ["finetune", "-m", WIKI_HF, "--data", f"{d}/data.json", "--steps", "2", "--save-every", "1",
                  "--seq", "64", "-o", out]
        ok(run(common))
        expect(not os.path.exists(dead) and os.path.exists(live), f"a new run left {os.listdir(out)}")
        os.remove(f"{out}/adapter_config.json")  # unfinished again: resumable from checkpoint-1
        os.makedirs(dead)
        ok(run(common + ["--resume"]))
        expect(not os.path.exists(dead) and os.path.exists(live), f"--resume left {os.listdir(out)}")



def test_finetune_one_run_at_a_time_in_a_folder():
    # Two runs started together into one new folder both found it free of checkpoints, trained
    # and wrote one log and one set of checkpoints between them, with exit 0. Now the second is
    # refused at once, and a run killed with SIGKILL leaves no lock behind: --resume continues.
    with tempfile.TemporaryDirectory() as d:
        out = f"{d}/out"
        args = [FRUGAL, "finetune", *STORIES, "--data", f"{SHARED}/data/tinystories/TinyStories-valid-excerpt.txt",
                "--steps", "20000", "--save-every", "2", "--batch", "1", "--seq", "32", "--eval-batches", "1",
                "-t", "1", "-o", out]

        def start(more=()):
            p = subprocess.Popen(args + list(more), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for line in p.stderr:
                if b"trainable parameters" in line:  # training from here on
                    return p
            p.kill()
            sys.exit(f"finetune {list(more)} ended before training: {p.wait()}")

        first = start()
        try:
            try:
                p = subprocess.run(args, capture_output=True, timeout=30)
            except subprocess.TimeoutExpired:
                sys.exit(f"FAILED: a second run into {out} trained beside the first")
            expect(p.returncode == 1 and f"{out}: another finetune run is writing into this folder".encode()
                   in p.stderr, f"a second run into {out}: exit {p.returncode}, {p.stderr.decode()}")
            expect(first.poll() is None, f"the first run ended: {first.returncode}")
            deadline = time.time() + 60
            while not any(n.startswith("checkpoint-") for n in os.listdir(out)) and time.time() < deadline:
                time.sleep(0.05)
        finally:
            first.kill()
            first.wait()
        expect(any(n.startswith("checkpoint-") for n in os.listdir(out)), f"no checkpoint: {os.listdir(out)}")
        resumed = start(["--resume"])
        resumed.send_signal(signal.SIGTERM)  # it writes a checkpoint and stops
        err = resumed.stderr.read().decode()
        expect(resumed.wait(timeout=60) == 143, f"--resume after SIGKILL: exit {resumed.returncode}: {err}")
        with open(f"{out}/training_log.jsonl", encoding="utf-8") as f:
            events = [json.loads(line).get("event") for line in f]
        expect(events.count("start") == 1 and events.count("resume") == 1, f"the log's events: {events}")


def test_finetune_log_file_in_its_new_output_folder():
    # finetune makes -o itself, but a --log-file inside it was refused while it did not exist yet
    # ("the folder 'out' does not exist"). Other missing folders are still refused, and a refused
    # run leaves no -o folder behind.
    with tempfile.TemporaryDirectory() as d:
        common = ["finetune", *STORIES, "--data", f"{SHARED}/data/tinystories/TinyStories-valid-excerpt.txt",
                  "--steps", "1", "--batch", "1", "--seq", "32", "--eval-batches", "1"]
        ok(run(common + ["-o", f"{d}/out/sub", "--log-file", f"{d}/out/sub/metrics.jsonl"]))
        with open(f"{d}/out/sub/metrics.jsonl", encoding="utf-8") as f:
            events = [json.loads(line).get("event") for line in f]
        expect(events[0] == "start" and events[-1] == "done", f"the log's events: {events}")
        expect(not os.path.exists(f"{d}/out/sub/training_log.jsonl"), "the default log was written too")
        expect_user_error(common + ["-o", f"{d}/new/sub", "--log-file", f"{d}/logs/metrics.jsonl"],
                          [f"{d}/logs/metrics.jsonl", "does not exist"])
        expect(not os.path.exists(f"{d}/new"), "the refused run left its output folder")


def test_finetune_warns_past_the_trained_context():
    # generate -c and perplexity -c past the trained positions warn; finetune --seq 1024 on
    # stories260K (512) trained there silently. Rows give each example positions from 0, so
    # --seq alone is not enough: a text cut into 1025-token pieces reaches them, short records
    # do not.
    with tempfile.TemporaryDirectory() as d:
        common = ["finetune", *STORIES, "--steps", "1", "--batch", "1", "--eval-batches", "1"]
        warning = b"--seq 1024 is longer than the 512 positions the model was trained for"
        text = f"{SHARED}/data/tinystories/TinyStories-valid-excerpt.txt"
        p = run(common + ["--data", text, "--seq", "1024", "-o", f"{d}/long"])
        ok(p)
        expect(warning in p.stderr, f"no warning: {p.stderr.decode()}")
        p = run(common + ["--data", text, "--seq", "512", "-o", f"{d}/fits"])
        ok(p)
        expect(b"positions the model was trained for" not in p.stderr, f"a warning at --seq 512: {p.stderr.decode()}")
        with open(f"{d}/short.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": "Once upon a time there was a cat."}) + "\n" for _ in range(8))
        p = run(common + ["--data", f"{d}/short.jsonl", "--seq", "1024", "-o", f"{d}/short"])
        ok(p)
        expect(warning not in p.stderr, f"a warning for records of 10 tokens: {p.stderr.decode()}")


def test_finetune_log_holds_each_step_once():
    def log_of(out):
        # Its events and the steps of its loss lines; a line that is not JSON is an event "broken".
        def parse(line):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return {"event": "broken"}
        with open(f"{out}/training_log.jsonl", encoding="utf-8") as f:
            lines = [parse(line) for line in f]
        return [r.get("event") for r in lines if "event" in r], [r["step"] for r in lines if "loss" in r]

    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/data.json", "w", encoding="utf-8") as f:
            f.write(TINY_ALPACA)
        out = f"{d}/out"
        # A run killed before its first checkpoint left a log; the next run starts it afresh
        # (it appended a second "start": steps 1, 2, 1, 2, 3, 4).
        os.makedirs(out)
        with open(f"{out}/training_log.jsonl", "w", encoding="utf-8") as f:
            f.write('{"event": "start", "step": 0}\n{"step": 1, "loss": 5.0}\n{"step": 2, "lo')
        common = ["finetune", "-m", WIKI_HF, "--data", f"{d}/data.json", "--steps", "4", "--save-every", "2",
                  "--seq", "64", "-o", out]
        ok(run(common))
        expect(log_of(out) == (["start", "done"], [1, 2, 3, 4]), f"a new run's log: {log_of(out)}")
        # Killed after step 4 (no adapter yet): the resumed run redoes steps 3 and 4 from
        # checkpoint-2 and logs them once.
        os.remove(f"{out}/adapter_config.json")
        ok(run(common + ["--resume"]))
        expect(log_of(out) == (["start", "resume", "done"], [1, 2, 3, 4]), f"a resumed run's log: {log_of(out)}")
        # --resume of a finished run trains nothing and says so (it redid the steps after the
        # newest checkpoint and logged them again).
        with open(f"{out}/adapter_model.safetensors", "rb") as f:
            adapter = f.read()
        p = run(common + ["--resume"])
        ok(p)
        expect(b"nothing to resume" in p.stderr, f"no word about the finished run: {p.stderr.decode()}")
        expect(log_of(out) == (["start", "resume", "done"], [1, 2, 3, 4]), f"the log after that: {log_of(out)}")
        with open(f"{out}/adapter_model.safetensors", "rb") as f:
            expect(f.read() == adapter, "the adapter was written again")



def test_finetune_refuses_f16_overflow_and_keeps_the_weights():
    # Weights above 65504 (finite in f32) were written as f16 infinities that no loader takes.
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/data.json", "w", encoding="utf-8") as f:
            f.write(TINY_ALPACA)
        out = f"{d}/out"
        common = ["finetune", "-m", WIKI_HF, "--data", f"{d}/data.json", "--steps", "1", "--seq", "64", "--lr", "1e5",
                  "--warmup", "0", "--schedule", "constant", "-o", out]
        p = run(common + ["--save-type", "f16"])
        err = p.stderr.decode()
        expect(p.returncode == 1 and "beyond the range of f16" in err and "bf16" in err, f"rc {p.returncode}: {err}")
        expect(not os.path.exists(f"{out}/adapter_model.safetensors"), "an adapter was written")
        # The trained weights wait in a checkpoint of the last step: --resume writes them.
        ok(run(common + ["--save-type", "bf16", "--resume"]))
        # The adapter loads (its weights at lr 1e5 are too large to give finite logits, which
        # generation would refuse: reading it is the check).
        ok(subprocess.run([FRUGAL, "lora", "info", out], capture_output=True, timeout=60))


def test_finetune_sigterm_during_evaluation():
    # SIGTERM (or Ctrl-C) during a long held-out evaluation stops it, finishes one step, writes a
    # checkpoint and exits with 128 + the signal (it evaluated to the end, then exited with 130).
    with tempfile.TemporaryDirectory() as d:
        with open(f"{SHARED}/data/wikitext2/wiki.valid.tokens", "rb") as f, open(f"{d}/wiki.txt", "wb") as g:
            g.write(f.read(200000))
        out = f"{d}/out"
        p = subprocess.Popen([FRUGAL, "finetune", "-m", WIKI_HF, "--data", f"{d}/wiki.txt", "--val-split", "0.5",
                              "--steps", "100", "--batch", "4", "--seq", "64", "-t", "1", "-o", out],
                             stderr=subprocess.PIPE)
        for line in p.stderr:
            if b"trainable parameters" in line:  # the evaluation comes next
                break
        p.send_signal(signal.SIGTERM)
        p.stderr.read()
        expect(p.wait(timeout=120) == 143, f"exit status {p.returncode}, expected 143")
        expect(os.path.isdir(f"{out}/checkpoint-1"), f"no checkpoint: {os.listdir(out)}")
        with open(f"{out}/training_log.jsonl", encoding="utf-8") as f:
            expect("eval_loss" not in f.read(), "the interrupted evaluation was logged")


tests = {name[5:]: f for name, f in globals().items() if name.startswith("test_")}
if NAME == "--list":
    print(";".join(sorted(tests)))
    sys.exit(0)
if NAME not in tests:
    sys.exit(f"unknown test {NAME}; known: {', '.join(sorted(tests))}")
tests[NAME]()
print(f"{NAME}: ok")
