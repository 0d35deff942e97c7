#!/usr/bin/env python3
"""Checks of `frugal quantize` run as a program, one case per invocation (see CMakeLists.txt).

    quant_cli_test.py --frugal BIN --shared DIR --tmp DIR CASE

Every case exits 0 when it holds and prints why not otherwise."""
import json
import os
import re
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import cli_case  # noqa: E402
import gguf_file  # noqa: E402
from cli_case import Failed, check  # noqa: E402

HF = "models/wiki-7m"
F32 = "models/wiki-7m-gguf/wiki-7m-f32.gguf"
Q8 = "models/wiki-7m-gguf/wiki-7m-q8_0.gguf"
CALIB = "data/wikitext2/wiki.valid.tokens"  # calibration text: not the test text
TEST_TEXT = "data/wikitext2/wiki.test.raw"


class Runner(cli_case.Runner):
    def __init__(self, args):
        super().__init__(args, "quantize")

    def out(self, name):
        return os.path.join(self.tmp, name)

    def quantize_json(self, *argv):
        p = self.run(*argv, "--json", "-t", "2")
        try:
            return json.loads(p.stdout)
        except json.JSONDecodeError as e:
            raise Failed(f"stdout is not one JSON object ({e}): {p.stdout[:2000]}")

    def leftovers(self, directory):
        return [f for f in os.listdir(directory) if ".tmp" in f]

    def error_of(self, output, *argv, expect=()):
        """Runs a failing quantize writing `output`; checks the message and that nothing was written."""
        before = set(os.listdir(self.tmp))
        p = self.run("-o", output, *argv, expect_ok=False)
        check(p.returncode == 1, f"exit code {p.returncode}, expected 1")
        lines = [l for l in p.stderr.splitlines() if l.startswith("frugal: error: ")]
        check(len(lines) == 1, "not exactly one 'frugal: error:' line on stderr")
        for e in expect:
            check(e in lines[0], f"the message does not say '{e}': {lines[0]}")
        check(not os.path.exists(output) or open(output).read() == "old contents\n",
              f"{output} was written or changed")
        check(set(os.listdir(self.tmp)) - before <= {os.path.basename(output)}, "files left behind")
        check(not self.leftovers(self.tmp), f"temporary files left: {self.leftovers(self.tmp)}")
        return lines[0]


def write_with_weight(source, dest, tensor, row, col, value):
    """Copies an f32 GGUF file with one weight of `tensor` set to `value`."""
    t = gguf_file.read(source).tensors[tensor]
    check(t.type == 0, f"{tensor} is not f32")
    data = bytearray(open(source, "rb").read())
    struct.pack_into("<f", data, t.file_offset + 4 * (row * t.shape[0] + col), value)
    open(dest, "wb").write(data)


def case_bad_input(r):
    """Every error a user can cause: exit 1, one line naming the problem, nothing written."""
    out = r.out("bad.gguf")
    if os.path.exists(out):
        os.remove(out)
    m = ["-m", r.path(HF)]
    r.error_of(out, *m, "--type", "q4_9", expect=("q4_9", "q4_0"))
    r.error_of(out, *m, "--type", "q4_0", "--method", "smoothquant", expect=("smoothquant", "rtn, gptq, awq"))
    r.error_of(out, *m, "--type", "q4_0", "--method", "gptq", expect=("--calib",))
    missing = r.out("no-such-calibration.txt")
    r.error_of(out, *m, "--type", "q4_0", "--method", "gptq", "--calib", missing, expect=(missing, "does not exist"))
    empty = r.out("empty.txt")
    open(empty, "w").write("\n  \n")
    r.error_of(out, *m, "--type", "q4_0", "--method", "awq", "--calib", empty, expect=(empty, "empty"))
    short = r.out("short.txt")
    open(short, "w").write("Only a few words of calibration text here.\n" * 20)
    r.error_of(out, *m, "--type", "q4_0", "--method", "gptq", "--calib", short, expect=(short, "too short", "windows"))
    r.error_of(out, *m, "--type", "q4_0", "--method", "gptq", "--calib", r.path(CALIB), "--calib-chunks", "100000",
               expect=("too short", "100000"))
    nodir = os.path.join(r.tmp, "no-such-dir", "out.gguf")
    r.error_of(nodir, *m, "--type", "q4_0", expect=("no-such-dir", "does not exist"))
    check(not os.path.exists(os.path.dirname(nodir)), "the missing directory was created")
    for method in ("gptq", "awq"):
        r.error_of(out, "-m", r.path(Q8), "--type", "q4_0", "--method", method, "--calib", r.path(CALIB),
                   expect=("already quantized", "q8_0", method))
    r.error_of(out, "-m", r.path(Q8), "--type", "q4_0", expect=("already quantized", "--allow-requantize"))
    r.run("-m", r.path(Q8), "-o", out, "--type", "q4_0", "--allow-requantize", "-t", "2")
    r.run("-m", out, "-p", "The", "-n", "4", "-t", "2", command="generate")
    os.remove(out)
    # f32 holds every quantized value exactly: dequantizing needs no --allow-requantize.
    r.run("-m", r.path(Q8), "-o", out, "--type", "f32", "-t", "2")
    r.run("-m", out, "-p", "The", "-n", "4", "-t", "2", command="generate")
    os.remove(out)
    r.error_of(out, "-m", r.out("no-such-model"), "--type", "q4_0", expect=("no-such-model",))
    r.error_of(out, *m, "--type", "q4_0", "--policy", "output", expect=("output",))
    r.error_of(out, *m, "--type", "q4_0", "--policy", "output=q9", expect=("q9",))
    r.error_of(out, *m, "--type", "q4_0", "--imatrix", r.path(CALIB), expect=(r.path(CALIB),))
    r.error_of(out, *m, "--bpw", "4", expect=("--calib",))
    r.error_of(out, *m, "--target-bpw", "40", "--calib", r.path(CALIB), expect=("40", "range"))
    # --bpw chooses every type: a --type beside it was dropped without a word (q4_0 asked, a
    # q2_k..q6_k mixture written, exit 0).
    r.error_of(out, *m, "--type", "q4_0", "--bpw", "5", "--calib", r.path(CALIB),
               expect=("--type q4_0", "--bpw 5", "--bpw-types"))
    r.error_of(out, *m, "--bpw", "nan", "--calib", r.path(CALIB), expect=("nan", "range"))
    # 0 used to mean "not given": the file came out in the --type without a word.
    r.error_of(out, *m, "--bpw", "0", "--calib", r.path(CALIB), expect=("--bpw 0", "range"))
    # Below the smallest mixture (every matrix in q2_k, 2.625 bits): refused, not quietly exceeded.
    r.error_of(out, *m, "--bpw", "1", "--calib", r.path(CALIB), expect=("--bpw 1", "smallest mixture", "2.625"))
    r.error_of(out, *m, "--bpw", "3", "--bpw-types", "q4_k,q8_0", "--calib", r.path(CALIB),
               expect=("--bpw 3", "smallest mixture", "4.500"))
    # --bpw-types errors name --bpw-types (the list reuses the policy's parser).
    bpw = ["--bpw", "4", "--calib", r.path(CALIB)]
    r.error_of(out, *m, *bpw, "--bpw-types", "q4_k,q9", expect=("--bpw-types", "q9", "unknown"))
    r.error_of(out, *m, *bpw, "--bpw-types", "q4_k,q4_k_m", expect=("--bpw-types", "q4_k_m", "mixture"))
    r.error_of(out, *m, *bpw, "--bpw-types", " , ", expect=("--bpw-types is empty",))
    # An empty value (an unset shell variable) is an error, not "not given".
    r.error_of(out, *m, "--type", "q4_0", "--policy", "", expect=("--policy", "empty"))
    r.error_of(out, *m, "--type", "", expect=("--type", "empty"))
    # The window size is checked before the engine's options divide by it (SIGFPE), calibration or not.
    r.error_of(out, *m, "--type", "q4_0", "--calib-ctx", "0", expect=("--calib-ctx", "0"))
    r.error_of(out, *m, "--type", "q4_0", "--calib-chunks", "0", expect=("--calib-chunks",))
    r.error_of(out, *m, "--type", "q4_0", "--calib", r.path(CALIB), "--save-imatrix", out,
               expect=("--save-imatrix", "output file"))
    # The same new file by another path: "dir/./x" against "dir/x".
    dotted = os.path.join(os.path.dirname(out), ".", os.path.basename(out))
    r.error_of(out, *m, "--type", "q4_0", "--calib", r.path(CALIB), "--save-imatrix", dotted,
               expect=("--save-imatrix", "output file"))
    # An output that is an input (here the importance matrix) is refused before anything runs.
    old = r.out("old.dat")
    open(old, "w").write("old contents\n")
    r.error_of(old, *m, "--type", "q4_0", "--imatrix", old, expect=("is the input", old))
    os.remove(old)
    # A NaN or infinity in the weights is named with its place, not quantized into NaN blocks.
    for bad, word in ((float("nan"), "NaN"), (float("-inf"), "-inf")):
        damaged = r.out("damaged.gguf")
        write_with_weight(r.path(F32), damaged, "blk.2.ffn_up.weight", 3, 5, bad)
        r.error_of(out, "-m", damaged, "--type", "q4_0",
                   expect=(damaged, "blk.2.ffn_up.weight", word, "row 3, column 5", "finite"))
        os.remove(damaged)
    # An existing output is left as it was when quantization fails.
    open(out, "w").write("old contents\n")
    r.error_of(out, *m, "--type", "q4_0", "--method", "gptq", "--calib", short, expect=("too short",))
    check(open(out).read() == "old contents\n", "the old output changed")
    os.remove(out)


def case_end_to_end(r):
    """Hugging Face folder to Q4_0: progress, the summary table, and a file frugal runs."""
    out = r.out("e2e-q4_0.gguf")
    p = r.run("-m", r.path(HF), "-o", out, "--type", "q4_0", "-t", "2")
    print(p.stdout[-3000:])
    lines = p.stdout.splitlines()
    check(lines[0].split()[:4] == ["tensor", "shape", "type", "bits"], "summary header")
    rows = [l.split() for l in lines[1:] if l.startswith(("blk.", "token_embd", "output"))]
    check(len(rows) == 2 + 7 * 6, f"{len(rows)} tensor rows in the summary")
    types = {row[0]: row[2] for row in rows}
    check(types["output.weight"] == "q6_k" and types["blk.0.ffn_down.weight"] == "q4_0", "types as llama-quantize")
    for row in rows:
        err = float(row[5])
        check(0 < err < 0.2, f"relative error {err} of {row[0]}")
    check("bits per weight" in p.stdout and os.path.basename(out) in p.stdout, "file line of the summary")
    # stderr is a pipe here: the progress bar leaves its final line only (ETA on a terminal).
    check(re.search(r"^quantize: \d+ units in [0-9.]+s", p.stderr, re.M), "no progress line on stderr")
    size = os.path.getsize(out)
    check(3_500_000 < size < 5_000_000, f"file size {size}")
    j = json.loads(r.run("-m", out, "-f", r.path(TEST_TEXT), "-c", "128", "--chunks", "4", "-t", "2", "--json",
                         command="perplexity").stdout)
    check(1 < j["ppl"] < 200, f"perplexity {j['ppl']} of the quantized model")
    check(not r.leftovers(r.tmp), "temporary files left")
    os.remove(out)


def case_same_type_is_copied(r):
    """A tensor asked for in the type it already has is copied as it is, not rounded a second
    time, and needs no --allow-requantize (llama.cpp's quantize does the same)."""
    out = r.out("copied.gguf")
    p = r.run("-m", r.path(Q8), "-o", out, "--type", "q8_0", "-t", "2")
    src, got = gguf_file.read(r.path(Q8)), gguf_file.read(out)
    same = [n for n, t in src.tensors.items() if t.type == gguf_file.Q8_0 and n in got.tensors
            and got.tensors[n].type == gguf_file.Q8_0]
    check(len(same) == 2 + 7 * 6, f"{len(same)} q8_0 tensors in both files")
    for name in same:
        check(got.tensors[name].data == src.tensors[name].data, f"{name} was rounded again")
    rows = {l.split()[0]: l.split() for l in p.stdout.splitlines() if l.startswith(("blk.", "token_embd", "output"))}
    check(all(float(rows[n][5]) == 0 for n in same), "a copied tensor reports an error")
    r.run("-m", out, "-p", "The", "-n", "4", "-t", "2", command="generate")
    # llama-quantize's importance-matrix provenance describes how the source was made, not this
    # file: it is not carried over (other metadata is).
    marked = r.out("marked.gguf")
    gguf_file.with_string_key(r.path(Q8), marked, "quantize.imatrix.file", "imatrix.gguf")
    check(gguf_file.read(marked).metadata["quantize.imatrix.file"] == "imatrix.gguf", "the marked copy")
    r.run("-m", marked, "-o", out, "--type", "q8_0", "-t", "2")
    got = gguf_file.read(out).metadata
    check("quantize.imatrix.file" not in got and got["general.architecture"] == "llama", "the source's provenance")
    os.remove(marked)
    # A tensor changing type still needs the flag: that is a second rounding.
    r.error_of(r.out("q4.gguf"), "-m", r.path(Q8), "--type", "q4_0", expect=("already quantized", "--allow-requantize"))
    check(not r.leftovers(r.tmp), "temporary files left")
    os.remove(out)


def case_w8a8(r):
    """W8A8: int8_row weights with int8 activations per token (--w8a8) on wiki-7m. Its KL-divergence
    to the f32 model is above the default int8_row products' (which quantize activations per 32
    elements) and far below any 4-bit format's (300 windows: 0.00047 against 0.00012; Q4_0
    0.005); a model without int8_row weights is refused with a message saying how to make one."""
    out = r.out("w8a8-int8_row.gguf")
    r.run("-m", r.path(HF), "-o", out, "--type", "int8_row", "-t", "2")
    base = r.out("w8a8-base.bin")
    window = ["-f", r.path(TEST_TEXT), "-c", "256", "--chunks", "24", "-t", "2", "--json"]
    r.run("-m", r.path(HF), *window, "--save-logits", base, command="perplexity")
    kld = {}
    for mode in ("default", "w8a8"):
        extra = ["--w8a8"] if mode == "w8a8" else []
        j = json.loads(r.run("-m", out, *window, "--kl-base", base, *extra, command="perplexity").stdout)
        kld[mode] = j["kl"]["kld"]
        check(j["kl"]["same_top"] > 0.97, f"{mode}: top-1 agreement {j['kl']['same_top']}")
    print(f"KLD against f32: int8_row {kld['default']:.6f}, int8_row --w8a8 {kld['w8a8']:.6f}")
    check(kld["default"] < kld["w8a8"] < 0.0015, f"KLD {kld}")
    p = r.run("-m", r.path(HF), *window, "--w8a8", command="perplexity", expect_ok=False)
    lines = [l for l in p.stderr.splitlines() if l.startswith("frugal: error: ")]
    check(p.returncode == 1 and len(lines) == 1, f"--w8a8 on an f32 model: exit {p.returncode}, stderr {p.stderr!r}")
    check("--w8a8" in lines[0] and "int8_row" in lines[0] and "frugal quantize" in lines[0], lines[0])
    for f in (out, base):
        os.remove(f)


def case_llama2c(r):
    """A llama2.c checkpoint (its tokenizer.bin given) to a GGUF that carries the vocabulary:
    greedy generation from the Q8_0 file starts as llama2.c's own run of the f32 checkpoint."""
    out = r.out("stories260K-q8_0.gguf")
    d = r.path("models/stories260K")
    r.run("-m", os.path.join(d, "stories260K.bin"), "--tokenizer", os.path.join(d, "tok512.bin"), "-o", out,
          "--type", "q8_0", "--pure", "-t", "2")
    p = r.run("-m", out, "-n", "30", "--temp", "0", "-t", "2", command="generate")
    reference = open(os.path.join(d, "reference_llama2c_run_t0_n200.txt")).read()
    print("generated:", p.stdout)
    check(len(p.stdout.strip()) > 60, "generated too little")
    check(reference.startswith(p.stdout.strip()[:60]), "greedy output differs from llama2.c's")
    # The vocabulary is stored as llama.cpp's "llama" model reads it ('▁' for llama2.c's ' '), so
    # text tokenizes as with tokenizer.bin: the same windows, and the perplexity of Q8_0 weights.
    text = r.path("data/tinystories/TinyStories-valid-excerpt.txt")
    ppl = [json.loads(r.run("-m", *m, "-f", text, "-c", "128", "-t", "2", "--chunks", "40", "--json",
                            command="perplexity").stdout)
           for m in ([os.path.join(d, "stories260K.bin"), "--tokenizer", os.path.join(d, "tok512.bin")], [out])]
    print("perplexity: checkpoint", ppl[0]["ppl"], "GGUF", ppl[1]["ppl"])
    check(ppl[0]["tokens_scored"] == ppl[1]["tokens_scored"] and ppl[0]["chunks"] == ppl[1]["chunks"],
          "the GGUF tokenizes the text differently")
    check(abs(ppl[1]["ppl"] / ppl[0]["ppl"] - 1) < 0.01, "the GGUF's perplexity is not the checkpoint's")
    # BOS ends a story (run.c stops on it); the GGUF carries that as its end-of-turn token.
    p = r.run("-m", out, "--temp", "0", "-t", "2", "-v", command="generate")
    check("finished: eos" in p.stderr, f"the GGUF's generation did not stop at the end of the story: {p.stderr[-300:]}")
    os.remove(out)


def case_policy(r):
    """--policy by name pattern and role, first match wins; frugal's own types marked."""
    out = r.out("policy.gguf")
    j = r.quantize_json("-m", r.path(F32), "-o", out, "--type", "q4_k",
                        "--policy", "output=q8_0,token_embd=q8_0,blk.?.ffn_up=int4_g64,blk.1.ffn_down=q6_k,ffn_down=nf4")
    types = {t["name"]: t["type"] for t in j["tensors"]}
    check(types["output.weight"] == "q8_0" and types["token_embd.weight"] == "q8_0", "head and embedding rule")
    check(types["blk.0.attn_q.weight"] == "q4_k", "base type")
    check(types["blk.3.ffn_down.weight"] == "nf4", "role rule")
    check(types["blk.1.ffn_down.weight"] == "q6_k", "name rule before the role rule")
    check(all(types[f"blk.{i}.ffn_up.weight"] == "int4_g64" for i in range(6)), "glob rule")
    j2 = r.quantize_json("-m", r.path(F32), "-o", out, "--type", "q4_k", "--policy", "ffn_down=nf4,*=int4_g128")
    types = {t["name"]: t["type"] for t in j2["tensors"]}
    check(types["blk.0.ffn_down.weight"] == "nf4" and types["blk.0.attn_k.weight"] == "int4_g128", "first match wins")
    out_bytes = open(out, "rb").read()
    check(b"frugal.quant.types" in out_bytes, "frugal's own types are not marked in the metadata")
    # Names match without case, as in llama-quantize; one K type everywhere is labelled as
    # llama.cpp's "mostly" _S file type (14: MOSTLY_Q4_K_S), not the Q4_K_M mixture (15).
    p = r.run("-m", r.path(F32), "-o", out, "--type", "q4_0", "--policy", "blk.0.atn_q=q8_0", "-t", "2")
    check("'blk.0.atn_q' matches no matrix" in p.stderr, f"no warning for a pattern that matches nothing: {p.stderr}")
    # A rule after one that takes all its matrices is dead: said so, naming the rule that wins.
    p = r.run("-m", r.path(F32), "-o", out, "--type", "q4_0", "--policy", "*=q4_k,output=q8_0", "-t", "2")
    check("'output' decides no matrix" in p.stderr and "such as '*'" in p.stderr,
          f"no warning for a rule an earlier one shadows: {p.stderr}")
    p = r.run("-m", r.path(F32), "-o", out, "--type", "q4_0", "--policy", "output=q8_0,*=q4_k", "-t", "2")
    check("decides no matrix" not in p.stderr, f"a warning for rules in the right order: {p.stderr}")
    p = r.run("-m", r.path(F32), "-o", out, "--type", "q4_0", "--bpw-types", "q4_k", "-t", "2")
    check("--bpw-types is not used without --bpw" in p.stderr, f"no warning for an unused --bpw-types: {p.stderr}")
    j3 = r.quantize_json("-m", r.path(F32), "-o", out, "--type", "Q4_K")
    check(j3["file_type"] == 14, f"file_type {j3['file_type']} for one Q4_K everywhere")
    check(r.quantize_json("-m", r.path(F32), "-o", out, "--type", "Q4_K_M")["file_type"] == 15, "Q4_K_M")
    # Rules keep the asked-for file type, as llama-quantize's --tensor-type does (it was 1024,
    # LLAMA_FTYPE_GUESSED, which llama.cpp names "all F32 (guessed)"); frugal's own types are none.
    check(r.quantize_json("-m", r.path(F32), "-o", out, "--type", "Q4_K_M", "--policy", "output=q8_0")["file_type"]
          == 15, "Q4_K_M with a rule")
    check(j2["file_type"] == 1024, f"file_type {j2['file_type']} with frugal's own types")
    os.remove(out)


def read_imatrix_dat(path):
    """llama.cpp's imatrix.dat: {name: (ncall, values as saved, the means times ncall)}."""
    data = open(path, "rb").read()
    at, entries = 4, {}
    for _ in range(struct.unpack_from("<i", data, 0)[0]):
        n = struct.unpack_from("<i", data, at)[0]
        name = data[at + 4:at + 4 + n].decode()
        at += 4 + n
        ncall, nval = struct.unpack_from("<ii", data, at)
        entries[name] = (ncall, list(struct.unpack_from(f"<{nval}f", data, at + 8)))
        at += 8 + 4 * nval
    return entries


def write_imatrix_gguf(path, entries, n_mat=1):
    """An importance matrix laid out as llama-imatrix writes it (GGUF, tools/imatrix):
    general.type, imatrix.datasets/chunk_count/chunk_size, NAME.in_sum2 [n_mat][n] and
    NAME.counts [n_mat][1] F32 tensors. `entries`: {name: (rows seen, sums of x^2)}."""
    string = gguf_file.pack_string
    kv = [string("general.type") + struct.pack("<I", 8) + string("imatrix"),
          string("imatrix.datasets") + struct.pack("<IIQ", 9, 8, 1) + string("calib.txt"),
          string("imatrix.chunk_count") + struct.pack("<II", 4, 16),
          string("imatrix.chunk_size") + struct.pack("<II", 4, 256)]
    infos, blobs, offset = [], [], 0
    for name, (rows, sums) in entries.items():
        for tname, ne, values in ((name + ".in_sum2", (len(sums), n_mat), sums * n_mat),
                                  (name + ".counts", (1, n_mat), [rows] * n_mat)):
            infos.append(string(tname) + struct.pack("<I", 2) + struct.pack("<QQ", *ne) + struct.pack("<IQ", 0, offset))
            blob = struct.pack(f"<{len(values)}f", *values)
            blob += b"\0" * (-len(blob) % 32)
            blobs.append(blob)
            offset += len(blob)
    head = b"GGUF" + struct.pack("<IQQ", 3, 2 * len(entries), len(kv)) + b"".join(kv) + b"".join(infos)
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head + b"".join(blobs))


def case_imatrix(r):
    """An importance matrix saved from calibration text and reused gives the same file, in
    llama.cpp's imatrix.dat layout and in the GGUF one llama-imatrix writes by default."""
    im = r.out("wiki-7m.imatrix")
    a, b = r.out("im-a.gguf"), r.out("im-b.gguf")
    calib = ["--calib", r.path(CALIB), "--calib-chunks", "16"]
    ja = r.quantize_json("-m", r.path(F32), "-o", a, "--type", "iq4_nl", *calib, "--save-imatrix", im)
    check(os.path.getsize(im) > 1000, "imatrix file")
    check(any(t["method"] == "rtn+imatrix" for t in ja["tensors"]), "the imatrix was not used")
    jb = r.quantize_json("-m", r.path(F32), "-o", b, "--type", "iq4_nl", "--imatrix", im)
    # --calib alone collects the matrix and uses it: no warning that it is unused.
    p = r.run("-m", r.path(F32), "-o", b, "--type", "iq4_nl", *calib, "-t", "2")
    check("is not used" not in p.stderr, f"--calib is said to be unused where it made the importance matrix: {p.stderr}")
    check(open(a, "rb").read() == open(b, "rb").read(), "--calib alone gives another file than --save-imatrix")
    p = r.run("-m", r.path(F32), "-o", b, "--type", "iq4_nl", "--imatrix", im, *calib, "-t", "2")
    check("is not used" in p.stderr, f"no warning that --calib beside --imatrix is unused: {p.stderr}")
    check(open(a, "rb").read() == open(b, "rb").read(), "quantizing with the saved imatrix gives another file")
    plain = r.out("im-none.gguf")
    r.quantize_json("-m", r.path(F32), "-o", plain, "--type", "iq4_nl")
    check(open(a, "rb").read() != open(plain, "rb").read(), "the imatrix changes nothing")

    # Saved as GGUF (by the name), it is llama-imatrix's layout and quantizes alike.
    im_gguf = r.out("wiki-7m.imatrix.gguf")
    r.quantize_json("-m", r.path(F32), "-o", b, "--type", "iq4_nl", *calib, "--save-imatrix", im_gguf)
    g, dat = gguf_file.read(im_gguf), read_imatrix_dat(im)
    check(g.metadata.get("general.type") == "imatrix" and g.metadata.get("imatrix.chunk_count") == 16
          and g.metadata.get("imatrix.chunk_size", 0) > 0 and g.metadata.get("imatrix.datasets") == [r.path(CALIB)],
          f"imatrix GGUF metadata: { {k: v for k, v in g.metadata.items() if 'imatrix' in k or 'type' in k} }")
    check(set(g.tensors) == {n + s for n in dat for s in (".in_sum2", ".counts")}, "imatrix GGUF tensors")
    for name, (ncall, saved) in dat.items():
        sums, counts = g.tensors[name + ".in_sum2"], g.tensors[name + ".counts"]
        check(sums.shape == [len(saved), 1] and counts.shape == [1, 1], f"{name}: shapes {sums.shape} {counts.shape}")
        rows = struct.unpack("<f", counts.data)[0]
        means = struct.unpack(f"<{len(saved)}f", sums.data)
        check(all(abs(m / rows - v / ncall) <= 1e-6 * (v / ncall) for m, v in zip(means, saved)), f"{name}: values")
    r.quantize_json("-m", r.path(F32), "-o", b, "--type", "iq4_nl", "--imatrix", im_gguf)
    check(open(a, "rb").read() == open(b, "rb").read(), "quantizing with the GGUF imatrix gives another file")
    # One written as llama-imatrix does (other row counts, two files' datasets) reads the same.
    theirs = r.out("llama-imatrix.gguf")
    write_imatrix_gguf(theirs, {n: (4096.0, [v / ncall * 4096 for v in saved]) for n, (ncall, saved) in dat.items()})
    r.quantize_json("-m", r.path(F32), "-o", b, "--type", "iq4_nl", "--imatrix", theirs)
    check(open(a, "rb").read() == open(b, "rb").read(), "llama-imatrix's GGUF layout gives another file")
    # A mixture of experts' matrices, and a model given as an imatrix, are named as such.
    write_imatrix_gguf(theirs, {n: (4096.0, [1.0] * len(v)) for n, (_, v) in dat.items()}, n_mat=2)
    refused = r.out("im-refused.gguf")
    r.error_of(refused, "-m", r.path(F32), "--type", "iq4_nl", "--imatrix", theirs, expect=("2 experts",))
    r.error_of(refused, "-m", r.path(F32), "--type", "iq4_nl", "--imatrix", r.path(Q8),
               expect=("not an importance matrix",))
    for f in (im, im_gguf, theirs, a, b, plain):
        os.remove(f)


def case_bpw(r):
    """--bpw: a mixture chosen from measured sensitivity within the budget."""
    out = r.out("bpw.gguf")
    j = r.quantize_json("-m", r.path(F32), "-o", out, "--bpw", "4.5",
                        "--calib", r.path(CALIB), "--calib-chunks", "8")
    matrices = [t for t in j["tensors"]]
    bits = sum(t["bits"] * t["shape"][0] * t["shape"][1] for t in matrices)
    n = sum(t["shape"][0] * t["shape"][1] for t in matrices)
    print(f"matrices: {bits / n:.3f} bits per weight; types: {sorted(set(t['type'] for t in matrices))}")
    check(bits / n <= 4.5 + 1e-6, f"{bits / n} bits per weight over the 4.5 budget")
    check(bits / n > 4.0, f"{bits / n} bits per weight: the budget is not used")
    check(len(set(t["type"] for t in matrices)) >= 2, "not a mixture")
    check(j["type"] == "mixed", f"the summary's type is {j['type']}, not 'mixed'")
    os.remove(out)


def write_large_llama(folder, shared, h=3072, ffn=3072, vocab=4096, layers=1):
    """A Llama whose large matrices are larger than glibc's largest dynamic mmap threshold (32
    MiB), so memory a run frees goes back to the system and its peak is what it held at once: by
    default one layer, hidden 3072, 24 heads, no GQA, FFN 3072, wiki-7m's 4096-token tokenizer
    (a larger vocab pads the embedding past it). Returns its bytes."""
    os.makedirs(folder, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
              "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": h // 128,
              "num_key_value_heads": h // 128, "vocab_size": vocab, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    shutil.copy(os.path.join(shared, HF, "tokenizer.model"), folder)
    shapes = {"model.embed_tokens.weight": [vocab, h], "lm_head.weight": [vocab, h], "model.norm.weight": [h]}
    for layer in range(layers):
        p = f"model.layers.{layer}."
        shapes.update({p + "input_layernorm.weight": [h], p + "post_attention_layernorm.weight": [h],
                       p + "mlp.down_proj.weight": [h, ffn], p + "mlp.gate_proj.weight": [ffn, h],
                       p + "mlp.up_proj.weight": [ffn, h]})
        for m in "qkvo":
            shapes[p + f"self_attn.{m}_proj.weight"] = [h, h]
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 4 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    pattern = struct.pack("<8f", 0.02, -0.01, 0.03, -0.025, 0.005, -0.04, 0.015, -0.002)
    path = os.path.join(folder, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for meta in header.values():
            n = meta["data_offsets"][1] - meta["data_offsets"][0]
            f.write(pattern * (n // len(pattern)))
    return os.path.getsize(path)


def case_rtn_memory(r):
    """Round-to-nearest holds one matrix in f32 at a time: every matrix was made f32 at the start
    and kept to the end, 4 bytes a weight beside the source (a 135M-parameter bf16 model peaked
    at 1,009 MB, now 424)."""
    folder = r.out("large-llama")
    source = write_large_llama(folder, r.shared)
    out = r.out("large-q4_0.gguf")
    j = r.quantize_json("-m", folder, "-o", out, "--type", "q4_0")
    # The source is mapped and read whole (counted once), the largest matrix in f32, the output
    # (4.5 bits a weight) and the process's own ~20 MB: 1.36 times the source here, 2.3 before.
    print(f"peak RSS {j['peak_rss_bytes'] / 1e6:.1f} MB for a {source / 1e6:.1f} MB f32 source")
    check(j["peak_rss_bytes"] < 1.6 * source,
          f"peak RSS {j['peak_rss_bytes'] / 1e6:.1f} MB, over 1.6 times the {source / 1e6:.1f} MB source")
    check(all(t["type"] == "q4_0" or t["name"] == "output.weight" for t in j["tensors"]), "not q4_0")
    shutil.rmtree(folder)
    os.remove(out)


def case_gptq_memory(r):
    """GPTQ makes each matrix's f32 values when it quantizes it, as RTN does: its pass for layer
    l depends only on the layers before l, already quantized. Every value was made at the start
    (4 bytes a weight beside the source: SmolLM2-135M bf16 peaked at 1,090 MB, now 531). Here
    the head and the padded embedding (40960 x 256, 42 MB each in f32) are most of the weights:
    2.3 times the source at the peak, 3.5 before."""
    folder = r.out("wide-llama")
    source = write_large_llama(folder, r.shared, h=256, ffn=768, vocab=40960)
    out = r.out("wide-gptq.gguf")
    j = r.quantize_json("-m", folder, "-o", out, "--type", "q4_0", "--method", "gptq", "--calib", r.path(CALIB),
                        "--calib-chunks", "1", "--calib-ctx", "16")
    print(f"peak RSS {j['peak_rss_bytes'] / 1e6:.1f} MB for a {source / 1e6:.1f} MB f32 source")
    check(j["peak_rss_bytes"] < 2.8 * source,
          f"peak RSS {j['peak_rss_bytes'] / 1e6:.1f} MB, over 2.8 times the {source / 1e6:.1f} MB source")
    check(any(t["method"] == "gptq" for t in j["tensors"]), "no tensor quantized by GPTQ")
    shutil.rmtree(folder)
    os.remove(out)


def write_sentencepiece_bpe_folder(folder, shared, text_handling):
    """wiki-7m with the tokenizer.json that transformers' LlamaConverter makes of its
    tokenizer.model (every split of a piece into two pieces a merge, ranked by the piece's score;
    byte fallback) and `text_handling`: "prepend_replace" (Llama 2's normalizer) or a Metaspace
    prepend_scheme. No tokenizer.model: a repository that ships only the tokenizer.json."""
    os.makedirs(folder, exist_ok=True)
    for f in ("config.json", "generation_config.json", "tokenizer_config.json", "model.safetensors"):
        if not os.path.exists(os.path.join(folder, f)):
            os.symlink(os.path.join(shared, HF, f), os.path.join(folder, f))
    g = gguf_file.read(os.path.join(shared, F32), with_tensors=False).metadata
    tokens, scores = g["tokenizer.ggml.tokens"], g["tokenizer.ggml.scores"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for piece, _ in sorted(zip(tokens, scores), key=lambda x: -x[1]):
        splits = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        merges += sorted(splits, key=lambda p: (vocab[p[0]], vocab[p[1]]))
    added = [{"id": i, "content": tokens[i], "special": True, "lstrip": False, "rstrip": False,
              "normalized": False, "single_word": False} for i in range(3)]
    j = {"version": "1.0", "added_tokens": added, "normalizer": None, "pre_tokenizer": None,
         "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True, "vocab": vocab,
                   "merges": [list(m) for m in merges]}}
    if text_handling == "prepend_replace":
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        j["pre_tokenizer"] = j["decoder"] = {"type": "Metaspace", "replacement": "\u2581",
                                             "prepend_scheme": text_handling, "split": False}
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)


def case_sentencepiece_bpe(r):
    """A Llama-2-style folder whose tokenizer is a '\u2581' BPE tokenizer.json (no tokenizer.model)
    is written as a "llama" vocabulary: the GGUF tokenizes as the folder (in f32, perplexity's
    log-probabilities the folder's up to rounding, and greedy generation the folder's; q8_0 holds
    the same tokenizer);
    with the tokenizer.model beside it, the GGUF holds the tokenizer.model's scores, as llama.cpp's
    converter writes. Refused before ("matches none that llama.cpp knows by name")."""
    prompts = ["The history of the", " Leading space,  two spaces\nand a new line", "Z\u00fcrich \U0001F999 na\u00efve"]
    window = ["-f", r.path(TEST_TEXT), "-c", "128", "--chunks", "6", "-t", "2", "--json"]
    for handling in ("prepend_replace", "first"):
        folder = r.out(f"spbpe-{handling}")
        write_sentencepiece_bpe_folder(folder, r.shared, handling)
        base = r.out("spbpe-base.bin")
        r.run("-m", folder, *window, "--save-logits", base, command="perplexity")
        written = {}
        for qtype in ("f32", "q8_0"):
            out = r.out(f"spbpe-{handling}-{qtype}.gguf")
            r.run("-m", folder, "-o", out, "--type", qtype, "-t", "2")
            meta = gguf_file.read(out, with_tensors=False).metadata
            written[qtype] = {k: v for k, v in meta.items() if k.startswith(("tokenizer.", "frugal.tokenizer."))}
            check(meta["tokenizer.ggml.model"] == "llama", "not a llama vocabulary")
            # The text starts with a space, which Metaspace and SentencePiece prefix differently: a
            # token apart would put the windows' predictions far apart. f32 weights in GGUF give the
            # folder's log-probabilities up to float rounding (wiki-7m's own tokenizer.model folder
            # too: its nll 4.584916 as a folder, 4.584913 as f32 GGUF).
            j = json.loads(r.run("-m", out, *window, "--kl-base", base, command="perplexity").stdout)
            print(f"{handling} {qtype}: KLD {j['kl']['kld']}, max {j['kl']['kld_max']}, same top {j['kl']['same_top']}")
            check(j["kl"]["kld"] < 0.01, f"{qtype}: KLD {j['kl']['kld']}")
            if qtype == "f32":
                check(j["kl"]["kld_max"] < 1e-3 and j["kl"]["same_top"] == 1,
                      f"f32 log-probabilities differ: {j['kl']}")
                for prompt in prompts:
                    gen = [r.run("-m", m, "-p", prompt, "-n", "24", "--temp", "0", "-t", "2",
                                 command="generate").stdout for m in (folder, out)]
                    check(gen[0] == gen[1],
                          f"{handling} {prompt!r}: the GGUF generates {gen[1]!r}, the folder {gen[0]!r}")
            os.remove(out)
        check(written["q8_0"] == written["f32"], "the q8_0 file's tokenizer is not the f32 file's")
        os.remove(base)
        if handling == "first":
            os.symlink(r.path(os.path.join(HF, "tokenizer.model")), os.path.join(folder, "tokenizer.model"))
            out = r.out("spbpe-with-model.gguf")
            r.run("-m", folder, "-o", out, "--type", "q8_0", "-t", "2")
            got = gguf_file.read(out, with_tensors=False).metadata
            want = gguf_file.read(r.path(F32), with_tensors=False).metadata
            check(got["tokenizer.ggml.scores"] == want["tokenizer.ggml.scores"], "not the tokenizer.model's scores")
            check(got["tokenizer.ggml.tokens"] == want["tokenizer.ggml.tokens"], "not the tokenizer.model's pieces")
            os.remove(out)
        shutil.rmtree(folder)


def calibrated_peak(r, name, layers, h, ffn, *argv):
    """The peak RSS in MB of quantizing a Llama of `layers` layers to q4_0 with argv and one
    window of a short calibration text, the summary, and the f32 source's size in MB. (RTN's own
    peak on these models varies by 30 MB from run to run; the calibrated runs' by a few.)"""
    folder, out, calib = r.out(name), r.out(name + ".gguf"), r.out(name + ".txt")
    source = write_large_llama(folder, r.shared, h=h, ffn=ffn, layers=layers) / 1e6
    with open(r.path(CALIB), encoding="utf-8") as f, open(calib, "w", encoding="utf-8") as g:
        g.write(f.read(20000))  # tokenizing the whole text costs ~70 MB at the start, which hides little
    type_args = [] if "--bpw" in argv else ["--type", "q4_0"]  # --bpw chooses the types
    j = r.quantize_json("-m", folder, "-o", out, *type_args, "--calib", calib, "--calib-chunks", "1",
                        "--calib-ctx", "16", *argv)
    peak = j["peak_rss_bytes"] / 1e6
    print(f"peak RSS {peak:.1f} MB for a {source:.1f} MB f32 source")
    shutil.rmtree(folder)
    os.remove(out)
    os.remove(calib)
    return j, peak, source


def case_imatrix_memory(r):
    """The importance matrix is collected a layer at a time, each layer's matrices in f32 only
    while it runs (SmolLM2-135M bf16 with --calib: peak RSS 963 -> 526 MB). Here 12 layers of
    hidden 512 and FFN 1536, 90% of the weights: 1.4 to 1.6 times the source at the peak (the source, a
    layer in f32, the output, the process), 2.3 when every matrix was made f32 first."""
    imatrix = r.out("deep.imatrix")
    _, peak, source = calibrated_peak(r, "deep", 12, 512, 1536, "--save-imatrix", imatrix)
    check(peak < 1.95 * source, f"peak RSS {peak:.1f} MB, over 1.95 times the {source:.1f} MB source")
    check(os.path.getsize(imatrix) > 12 * 7 * 512 * 4, "the importance matrix file is short")
    os.remove(imatrix)


def case_bpw_memory(r):
    """--bpw's sensitivity forwards run a layer at a time from the full-precision residual stream
    at each matrix's layer, each layer in f32 only while it runs; every value was made first
    (SmolLM2-135M bf16, one window of 32: peak RSS 1,076 -> 660 MB). Here 16 layers of hidden
    256 and FFN 768: 1.7 to 2.1 times the source at the peak, 2.95 before."""
    j, peak, source = calibrated_peak(r, "mid-bpw", 16, 256, 768, "--bpw", "6", "--bpw-types", "q4_0,q8_0")
    check(peak < 2.5 * source, f"peak RSS {peak:.1f} MB, over 2.5 times the {source:.1f} MB source")
    check(len(set(t["type"] for t in j["tensors"])) >= 2, "not a mixture")


def case_awq_memory(r):
    """AWQ collects, searches and quantizes a layer at a time: one layer's f32 values and input
    Hessians at once, not the whole model's (SmolLM2-135M bf16: 1,712 MB at the peak, 495).
    Here 48 thin layers (hidden and FFN 128, so that the search is quick; the process's own
    memory weighs more beside this small source): 2.5 times the source at the peak, 3.7 before."""
    j, peak, source = calibrated_peak(r, "thin", 48, 128, 128, "--method", "awq")
    check(peak < 3.1 * source, f"peak RSS {peak:.1f} MB, over 3.1 times the {source:.1f} MB source")
    check(sum(t["method"] == "awq" for t in j["tensors"]) == 48 * 7, "not every layer's matrix quantized by AWQ")


CASES = {"bad_input": case_bad_input, "end_to_end": case_end_to_end, "llama2c": case_llama2c, "policy": case_policy,
         "imatrix": case_imatrix, "bpw": case_bpw, "w8a8": case_w8a8,
         "same_type_is_copied": case_same_type_is_copied, "rtn_memory": case_rtn_memory,
         "gptq_memory": case_gptq_memory, "sentencepiece_bpe": case_sentencepiece_bpe,
         "imatrix_memory": case_imatrix_memory, "awq_memory": case_awq_memory, "bpw_memory": case_bpw_memory}


if __name__ == "__main__":
    sys.exit(cli_case.main(Runner, CASES))
