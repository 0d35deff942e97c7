#!/usr/bin/python3
"""End-to-end benchmark of `frugal serve` over loopback HTTP (not part of `make test`).

  1. Aggregate decode throughput with 1, 4 and 16 concurrent streaming clients, and time to
     first token (TTFT) and inter-token latency (ITL) percentiles at each level.
  2. TTFT of requests that share a 1,000-token system prompt, with and without prefix caching.

The synthetic models of ../shared/tools/synth_model.py have random weights and no tokenizer, so
prompts are token ids (the completions endpoint takes a list of ids, as OpenAI's does) drawn
from a seeded generator, and every request decodes a fixed number of tokens (greedy, or sampled with --temperature,
ignore_eos; without a tokenizer there is no end-of-text token anyway). Token counts come from
the streamed `token_ids` (vLLM's return_token_ids), not from text. Latencies are measured by
the client: TTFT from sending the request to the first chunk carrying a token, ITL between
consecutive token chunks of one stream. Decode throughput counts the tokens streamed while
every client is decoding (from the last stream's first token to the first stream's last
token), so no prompt is being fed in that window; all tokens over the wall-clock time of the
level, prefill and ramp included, are printed next to it.

bench/run_serve_bench.sh runs it on the bf16 synthetic SmolLM2-135M and a Q4_0 copy.
usage: serve_bench.py FRUGAL MODEL [--threads 2] [--ctx 2048] [--decode 64] [--prompt 32] [--trials 3]
       [--temperature T [--top-p P]] [--server-arg=--w8a8]
Standard library only. The machine is shared: the load average is printed with the figures.
"""
import argparse
import http.client
import json
import random
import re
import signal
import statistics
import subprocess
import threading
import time


class Server:
    def __init__(self, frugal, model, threads, ctx, parallel, extra=(), sampling=None):
        self.sampling = sampling or {"temperature": 0}  # the request's sampling fields: greedy by default
        cmd = [frugal, "serve", "-m", model, "--port", "0", "-t", str(threads), "--ctx", str(ctx),
               "--parallel", str(parallel), "--queue", "64"] + list(extra)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.port = None
        self.lines = []
        ready = threading.Event()

        def drain():
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(300) or self.port is None:
            self.proc.kill()
            raise SystemExit("the server did not start:\n" + "".join(self.lines))
        print("  " + self.lines[-1].strip())

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def n_vocab(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", "/v1/models")
        n = json.loads(c.getresponse().read())["data"][0]["meta"]["n_vocab"]
        c.close()
        return n

    def stream(self, prompt, max_tokens, model=None):
        """Streams one completion (with "model": model when given); returns (send time,
        [(time, n_tokens) per token chunk])."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        body = {"prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
                "stream": True, "return_token_ids": True, **self.sampling}
        if model:
            body["model"] = model
        t0 = time.perf_counter()
        c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}: {r.read()[:300]!r}")
        chunks = []
        while True:
            line = r.readline()
            if not line:
                raise RuntimeError("the stream ended without [DONE]")
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                break
            event = json.loads(payload)
            if "error" in event:
                raise RuntimeError(f"error event {event}")
            ids = event["choices"][0].get("token_ids", []) if event["choices"] else []
            if ids:
                chunks.append((time.perf_counter(), len(ids)))
        c.close()
        total = sum(n for _, n in chunks)
        if total != max_tokens:
            raise RuntimeError(f"got {total} tokens, expected {max_tokens}")
        return t0, chunks


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_level(server, streams, rounds, prompt_len, decode, vocab, rng, models=(None,)):
    results, errors = [], []
    lock = threading.Lock()
    prompts = [[rng.randrange(3, vocab) for _ in range(prompt_len)] for _ in range(streams * rounds)]

    def client(i):
        try:
            for k in range(rounds):
                r = server.stream(prompts[i * rounds + k], decode, models[i % len(models)])
                with lock:
                    results.append(r)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    wall0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    if errors:
        raise SystemExit(f"{len(errors)} clients failed: {errors[0]}")
    ttft = [chunks[0][0] - t0 for t0, chunks in results]
    itl = [b[0] - a[0] for _, chunks in results for a, b in zip(chunks, chunks[1:])]
    # Steady decode: from the moment the last stream got its first token (every stream is
    # decoding, no prompt is being fed) to the moment the first stream got its last one.
    start = max(chunks[0][0] for _, chunks in results)
    end = min(chunks[-1][0] for _, chunks in results)
    steady = sum(n for _, chunks in results for t, n in chunks if start < t <= end)
    total = sum(sum(n for _, n in chunks) for _, chunks in results)
    return {"streams": streams, "requests": len(results), "decode_tps": steady / (end - start),
            "wall_tps": total / wall, "ttft": ttft, "itl": itl}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("frugal")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--prompt", type=int, default=32, help="prompt tokens of the throughput requests")
    ap.add_argument("--decode", type=int, default=64, help="tokens each throughput request decodes")
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--system", type=int, default=1000, help="tokens of the shared system prompt")
    ap.add_argument("--repeats", type=int, default=5, help="requests per prefix-cache run")
    ap.add_argument("--trials", type=int, default=5, help="runs per concurrency level (the median is reported)")
    ap.add_argument("--skip-prefix", action="store_true")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="sample at this temperature (0: greedy), as an OpenAI client sends it (with a fixed seed)")
    ap.add_argument("--top-p", type=float, default=None, help="also send top_p (no top_k, as OpenAI clients)")
    ap.add_argument("--models", default="",
                    help="model names the throughput streams take in turn (serve's --lora-module NAMEs, "
                         "given with --server-arg); default: none sent")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="an extra argument for `frugal serve` (repeatable), e.g. --server-arg=--w8a8")
    args = ap.parse_args()
    rng = random.Random(1234)
    levels = [int(x) for x in args.levels.split(",") if x]
    models = [m for m in args.models.split(",") if m] or [None]
    sampling = {"temperature": args.temperature, "seed": 7}
    if args.top_p is not None:
        sampling["top_p"] = args.top_p

    how = "greedy" if args.temperature == 0 else f"sampled ({sampling})"
    if args.models:
        how += f", streams in turn on models {args.models}"
    print(f"== decode throughput: prompts of {args.prompt} token ids, {args.decode} tokens each, {how}; "
          f"{args.threads} threads; load average before: {load_average()}")
    rows = []
    with Server(args.frugal, args.model, args.threads, args.ctx, max(levels), args.server_arg, sampling) as s:
        vocab = s.n_vocab()
        run_level(s, 1, 1, args.prompt, 8, vocab, rng)  # warm-up: page the weights in
        # Trials go round the levels in turn, so that the load of a shared machine falls on
        # every level alike; each level reports its median trial.
        trials = {n: [] for n in levels}
        for _ in range(args.trials):
            for n in levels:
                trials[n].append(run_level(s, n, 1, args.prompt, args.decode, vocab, rng, models))
        for n in levels:
            ts = trials[n]
            r = sorted(ts, key=lambda t: t["decode_tps"])[len(ts) // 2]
            ttft = [x for t in ts for x in t["ttft"]]
            itl = [x for t in ts for x in t["itl"]]
            rows.append(r)
            print(f"  {n:2d} streams ({r['requests']} requests x {len(ts)} trials): decode {r['decode_tps']:7.1f} "
                  f"tok/s aggregate, median trial ({r['wall_tps']:.1f} overall incl. prefill; trials "
                  f"{', '.join(format(t['decode_tps'], '.1f') for t in ts)}) | TTFT p50 "
                  f"{percentile(ttft, 50) * 1e3:7.1f} ms p99 {percentile(ttft, 99) * 1e3:7.1f} ms | ITL p50 "
                  f"{percentile(itl, 50) * 1e3:6.1f} ms p99 {percentile(itl, 99) * 1e3:6.1f} ms", flush=True)
        print(f"  load average after: {load_average()}")
    if len(rows) > 1:
        # Also per round: the levels of one round run seconds apart, so a change of the shared
        # machine's memory speed (it halves for minutes at times) falls on both figures alike.
        first, last = trials[levels[0]], trials[levels[-1]]
        per_round = [b["decode_tps"] / a["decode_tps"] for a, b in zip(first, last)]
        print(f"  scaling {rows[-1]['streams']} streams vs {rows[0]['streams']}: {rows[-1]['decode_tps'] / rows[0]['decode_tps']:.1f}x "
              f"of the medians; median of the rounds' ratios {statistics.median(per_round):.1f}x "
              f"(rounds {', '.join(format(x, '.1f') for x in per_round)})")

    if args.skip_prefix:
        return
    if not rows:
        with Server(args.frugal, args.model, args.threads, args.ctx, 1, args.server_arg, sampling) as s:
            vocab = s.n_vocab()
    print(f"== TTFT with a shared {args.system}-token system prompt ({args.repeats} requests, each its own "
          f"16-token question, 4 tokens decoded); load average before: {load_average()}")
    system = [rng.randrange(3, vocab) for _ in range(args.system)]
    questions = [[rng.randrange(3, vocab) for _ in range(16)] for _ in range(args.repeats)]
    # Both servers run at once and take the requests in turn, so a busy moment of a shared
    # machine does not fall on one of them only.
    with Server(args.frugal, args.model, args.threads, args.ctx, 4, args.server_arg, sampling) as on, \
            Server(args.frugal, args.model, args.threads, args.ctx, 4, args.server_arg + ["--no-prefix-cache"], sampling) as off:
        ttft = {"on": [], "off": []}
        for server in (on, off):
            server.stream(questions[0][:4], 2)  # warm-up with an unrelated prompt
        for q in questions:
            for name, server in (("on", on), ("off", off)):
                t0, chunks = server.stream(system + q, 4)
                ttft[name].append(chunks[0][0] - t0)
    on_later = ttft["on"][1:]
    print(f"  prefix cache on : first request (nothing cached) {ttft['on'][0] * 1e3:7.1f} ms, later ones median "
          f"{statistics.median(on_later) * 1e3:7.1f} ms (min {min(on_later) * 1e3:.1f}, max {max(on_later) * 1e3:.1f})")
    print(f"  prefix cache off: median {statistics.median(ttft['off']) * 1e3:7.1f} ms (min {min(ttft['off']) * 1e3:.1f}, "
          f"max {max(ttft['off']) * 1e3:.1f}) | load average after: {load_average()}", flush=True)

if __name__ == "__main__":
    main()
