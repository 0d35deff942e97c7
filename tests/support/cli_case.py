"""Shared pieces of the Python tests that run the `frugal` program, one case per invocation:

    SCRIPT --frugal BIN --shared DIR --tmp DIR CASE [ARGS...]

A case is a function of a Runner (and the case's extra arguments) that raises Failed when
what it checks does not hold; main() runs one and turns the outcome into the exit code."""
import argparse
import os
import subprocess
import time


class Failed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failed(message)


class Runner:
    """Runs `frugal COMMAND ...` (command: the subcommand a script mostly runs)."""

    def __init__(self, args, command):
        self.frugal = args.frugal
        self.shared = args.shared
        self.tmp = args.tmp
        self.command = command
        os.makedirs(self.tmp, exist_ok=True)

    def path(self, rel):
        return os.path.join(self.shared, rel)

    def run(self, *argv, expect_ok=True, command=None):
        cmd = [self.frugal, command or self.command, *argv]
        print("$", " ".join(cmd), flush=True)
        start = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True)
        print(f"(exit {p.returncode} after {time.monotonic() - start:.1f} s)")
        if p.stderr:
            print("stderr:", p.stderr[-3000:])
        if expect_ok and p.returncode != 0:
            raise Failed(f"exit code {p.returncode}")
        if not expect_ok and p.returncode == 0:
            raise Failed("succeeded where an error was expected; stdout: " + p.stdout[-2000:])
        return p


def main(runner_class, cases):
    """Parses the command line, builds runner_class(args) and runs cases[CASE](runner, *ARGS);
    returns the exit code (0 when the case holds)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--frugal", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("case", choices=sorted(cases))
    ap.add_argument("args", nargs="*")
    args = ap.parse_args()
    r = runner_class(args)
    try:
        cases[args.case](r, *args.args)
    except Failed as e:
        print(f"FAILED: {args.case}: {e}")
        return 1
    print(f"ok: {args.case}")
    return 0
