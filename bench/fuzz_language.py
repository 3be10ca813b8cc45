"""Fuzz the tnc language front: generated and mutated programs, each under a time limit.

    python bench/fuzz_language.py --seed 0 --count 20000 --timeout 2
    python bench/fuzz_language.py --seed 0 --only 1234         # rerun one case, verbosely

Seeds are the library networks (``tnc/lang/networks/*.tn``), the sketches in
``tests/dsl/`` (copied from ``../shared/dsl/``), the networks and model blocks of the README
and a few model blocks written here; programs are drawn from a small random
generator or mutated from a seed (delete, duplicate, swap or insert tokens,
random characters, huge numbers, deep nesting, odd whitespace and line breaks,
huge ranges and sizes, splices). Each program goes through
``tnc.compile_all`` (as text: ``allow_path=False``) and, when it parses to a
model block, ``tnc.compile_model``, in a worker process that is killed past
the limit. Outcomes, per program (the worst of its calls):

    accepted          a network (or model) came back
    located           a TncError with line:column
    unlocated         a TncError without a place          (reproducer printed)
    other             any other exception                  (reproducer printed)
    over-limit        a call took more than --timeout CPU seconds, or the program was
                      killed past 5x that (plus 5 s) of wall time

Case ``k`` of seed ``s`` is drawn from ``random.Random(f"{s}:{k}")`` alone, so
``--only k`` reproduces it. The exit status is 1 when anything but accepted or
located occurred. Workers run with a 4 GiB address-space limit.
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout

OUTCOMES = ("accepted", "located", "unlocated", "other", "over-limit")
SEVERITY = {name: rank for rank, name in enumerate(OUTCOMES)}
MEMORY_LIMIT = 4 * 2**30

TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\.|//|\s+|\S")
VOCABULARY = ["network", "index", "tensor", "data", "output", "for", "in", "model", "fit",
              "to", "loss", "weight", "penalty", "nonneg", "along", "l2", "tv", "..", "//",
              "(", ")", "{", "}", "[", "]", ",", ":", "?", "*", "+", "-", "%", "=", "#",
              "\n", "0", "1", "-1", "99", "N", "n", "i", "j", "p", "r", "G", "A", "X", "T",
              "0.5", "1e-3", "huber", "poisson", "gaussian"]
ODD_WHITESPACE = ["\f", "\r", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\t",
                  "\r\n", "\n\n\n", " " * 200, "\u00a0", "\u3000", "\x00"]
ODD_CHARACTERS = ["$", "@", "!", "~", "`", "'", '"', "\\", ";", "<", ">", "^", "&", "|",
                  "\x7f", "\x01", "\ufeff", "\ud800", "\U0001f600", "é", "π", "\u200b"]

MODEL_SEEDS = [
    """network X1(I = 4, J = 3, R = 2) {
    index i: I, j: J, r: R
    tensor A(i, r), B(j, r)
    output i, j
}
network X2(I = 4, K = 5, R = 2) {
    index i: I, k: K, r: R
    tensor A(i, r), C(k, r)
    output i, k
}
model linked(lambda = 0.1) {
    fit X1 to T1
    fit X2 to T2 loss poisson weight 0.5
    penalty l2(lambda) A, B
    penalty tv(0.01) C along k
    nonneg A
}
""",
    """network cp(I = 5, J = 4, K = 3, R = 2) {
    index i: I, j: J, k: K, r: R
    tensor A(i, r), B(j, r), C(k, r)
    output i, j, k
}
model m() { fit cp to X loss huber(0.5) weight 2  penalty l2(1e-3) A }
""",
    """network H(I = 3, J = 4, R = 2) { index i: I, j: J, r: R  tensor U(i, r), V(j, r)  output i, j }
model reg(mu = 1) { fit H to Y loss negative_binomial(r=5)  penalty l2(mu) U, V  nonneg U, V }
""",
]


# -- seeds --------------------------------------------------------------------------------
def _blocks(text: str) -> list[str]:
    """The ``network``/``model`` blocks of a text (tnc blocks hold no nested braces)."""
    pattern = re.compile(r"(?:network|model)\s+\w+\s*(?:\([^(){}]*\))?\s*\{[^{}]*\}")
    return [m.group(0).replace("... ", "").replace("...", "") for m in pattern.finditer(text)]


def seeds() -> list[str]:
    """Every seed program, in a fixed order."""
    found: list[str] = []
    for folder in (ROOT / "tnc" / "lang" / "networks", ROOT / "tests" / "dsl"):
        if folder.is_dir():
            found += [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.tn"))]
    readme = ROOT / "README.md"
    if readme.is_file():
        blocks = _blocks(readme.read_text(encoding="utf-8"))
        found += blocks
        found += ["\n".join(blocks[k:k + 3]) for k in range(0, len(blocks), 3)]
    return found + MODEL_SEEDS


# -- generation ---------------------------------------------------------------------------
def _expr(rng: random.Random, names: list[str], depth: int = 0) -> str:
    if depth > 2 or rng.random() < 0.5:
        return rng.choice(names + [str(rng.randint(0, 9))])
    op = rng.choice(["+", "-", "*", "//", "%"])
    text = f"{_expr(rng, names, depth + 1)} {op} {_expr(rng, names, depth + 1)}"
    return f"({text})" if rng.random() < 0.3 else text


def generated(rng: random.Random) -> str:
    """A random program from a small grammar: often valid, often subtly not."""
    params = rng.sample(["N", "d", "r", "L", "K"], rng.randint(0, 3))
    header = ", ".join(f"{p} = {rng.randint(1, 6)}" if rng.random() < 0.9 else p
                       for p in params)
    lines, families = [], []
    for _ in range(rng.randint(1, 4)):
        family, looped = rng.choice("ijkpb"), rng.random() < 0.5
        families.append((family, looped))
        ref = f"{family}[n]" if looped else family
        loop = f"  for n in 1..{rng.choice(params or ['3'])}" if looped else ""
        lines.append(f"    index {ref}: {_expr(rng, params)}{loop}")
    for _ in range(rng.randint(0, 3)):
        legs = []
        for family, looped in rng.sample(families, rng.randint(0, len(families))):
            shift = rng.choice(["n", "n-1", "n+1", "1", "*", "1..2"]) if looped else None
            leg = f"{family}[{shift}]" if looped else family
            legs.append(leg + ("?" if rng.random() < 0.3 else ""))
        kind = rng.choice(["tensor", "tensor", "data"])
        name = rng.choice("ABGH") + ("[n]" if rng.random() < 0.3 else "")
        loop = f"  for n in 1..{rng.choice(params or ['2'])}" if "[n]" in name else ""
        lines.append(f"    {kind} {name}({', '.join(legs)}){loop}")
    out = [f[0] for f in families if not f[1]][:2]
    lines.append("    output " + ", ".join(out))
    text = f"network g({header}) {{\n" + "\n".join(lines) + "\n}\n"
    if rng.random() < 0.3:
        text += (f"model m(a = {rng.random():.3g}) {{ fit g to T"
                 + rng.choice(["", " loss poisson", " loss huber(0.5)", " weight a"])
                 + rng.choice(["", " penalty l2(a) A", " nonneg A", " penalty tv(1) A along i"])
                 + " }\n")
    return text


# -- mutation -----------------------------------------------------------------------------
def _number_positions(tokens: list[str]) -> list[int]:
    return [k for k, t in enumerate(tokens) if t[:1].isdigit()] or [0]


def _huge_number(rng: random.Random) -> str:
    return rng.choice(["9" * rng.randint(20, 6000), "1e999", "1" + "0" * 400 + ".5",
                       str(10 ** rng.randint(6, 40)), "0" * 5000 + "1", "1e-999",
                       "9" * 309 + ".0"])


def _deep(rng: random.Random, token: str) -> str:
    depth = rng.choice([10, 250, 500, 1000, 3000, 10000])
    form = rng.randrange(4)
    if form == 0:
        return "-" * depth + token
    if form == 1:
        return "(" * depth + token + ")" * depth
    if form == 2:
        return " + ".join([token] * depth)
    return "(" * depth + token                                   # unbalanced


def _huge_range(rng: random.Random) -> str:
    big = rng.choice(["1000000", "100000", "1000000000000", "N*N*N", "N*1000000"])
    return rng.choice([f"[1..{big}, 1..{big}]", f"[1..{big}]", f"[*, 1..{big}]",
                       f" for n in 1..{big}", f" for n in 1..{big}, m in 1..{big}"])


def mutate(rng: random.Random, text: str, pool: list[str]) -> str:
    """``text`` changed one to four times."""
    for _ in range(rng.randint(1, 4)):
        tokens = TOKEN.findall(text) or [""]
        k = rng.randrange(len(tokens))
        kind = rng.randrange(11)
        if kind == 0:
            del tokens[k]
        elif kind == 1:
            tokens.insert(k, tokens[k])
        elif kind == 2:
            j = rng.randrange(len(tokens))
            tokens[k], tokens[j] = tokens[j], tokens[k]
        elif kind == 3:
            tokens.insert(k, rng.choice(VOCABULARY) + rng.choice(["", " "]))
        elif kind == 4:
            tokens.insert(k, "".join(rng.choice(ODD_CHARACTERS + [chr(rng.randrange(1, 0x3000))])
                                     for _ in range(rng.randint(1, 3))))
        elif kind == 5:
            tokens[rng.choice(_number_positions(tokens))] = _huge_number(rng)
        elif kind == 6:
            j = rng.choice(_number_positions(tokens))
            tokens[j] = _deep(rng, tokens[j])
        elif kind == 7:
            spaces = [j for j, t in enumerate(tokens) if t.isspace()] or [k]
            for j in rng.sample(spaces, min(len(spaces), rng.randint(1, 5))):
                tokens[j] = rng.choice(ODD_WHITESPACE)
        elif kind == 8:
            names = [j for j, t in enumerate(tokens) if t[:1].isalpha()] or [k]
            tokens.insert(rng.choice(names) + 1, _huge_range(rng))
        elif kind == 9:
            j = rng.choice(_number_positions(tokens))
            tokens[j] = rng.choice(["1000000", "999999", "100000", "0", "-1", "2000000"])
        else:
            other = TOKEN.findall(rng.choice(pool)) or [""]
            cut = rng.randrange(len(other))
            tokens = tokens[:k] + other[cut:cut + rng.randint(1, 60)] + tokens[k:]
        text = "".join(tokens)
    return text


def program(seed: int, case: int, pool: list[str]) -> str:
    """Case ``case`` of ``seed``: a seed, a generated program, or a mutation of either."""
    rng = random.Random(f"{seed}:{case}")
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(pool)
    base = generated(rng) if roll < 0.35 else rng.choice(pool)
    return base if roll < 0.1 else mutate(rng, base, pool)


# -- running ------------------------------------------------------------------------------
def _classify(call) -> tuple[str, str]:
    import tnc
    try:
        call()
        return "accepted", ""
    except tnc.TncError as error:
        if error.line is None:
            return "unlocated", f"{type(error).__name__}: {error}"
        return "located", ""
    except BaseException as error:      # noqa: BLE001 - the harness reports everything
        if isinstance(error, KeyboardInterrupt):
            raise
        return "other", "".join(traceback.format_exception(error)[-6:])


def _timed(call) -> tuple[str, str, float]:
    start = time.process_time()
    outcome, detail = _classify(call)
    return outcome, detail, time.process_time() - start


def run_one(text: str) -> tuple[str, str, float]:
    """The worst outcome of ``compile_all`` and (for a model) ``compile_model`` on ``text``,
    and the CPU seconds of the slower call."""
    import tnc
    from tnc.lang.parser import parse
    results = [_timed(lambda: tnc.compile_all(text, allow_path=False))]
    try:
        models = parse(text).models
    except tnc.TncError:
        models = ()
    if models:
        results.append(_timed(lambda: tnc.compile_model(text, name=models[0].name,
                                                         allow_path=False)))
    worst = max(results, key=lambda r: SEVERITY[r[0]])
    return worst[0], worst[1], max(r[2] for r in results)


def _mapped_bytes(resource) -> int:
    """This process's mapped address space (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _worker(connection) -> None:
    try:
        import resource
        # beyond what the worker already maps: forked from a test run that loaded torch and
        # jax, it starts with gigabytes of address space, and a plain 4 GiB cap left it
        # none to parse with (the worker died instead of running over the time limit)
        limit = _mapped_bytes(resource) + MEMORY_LIMIT
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    import tnc  # noqa: F401 - imported once, before the clock starts
    while True:
        text = connection.recv()
        if text is None:
            return
        connection.send(run_one(text))


class Runner:
    """One worker process, replaced when a case outlives the wall-clock guard."""

    def __init__(self, timeout: float):
        self.timeout, self.context = timeout, multiprocessing.get_context("fork")
        self.process = self.connection = None

    def start(self) -> None:
        self.connection, child = self.context.Pipe()
        self.process = self.context.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()

    def run(self, text: str) -> tuple[str, str, float]:
        if self.process is None or not self.process.is_alive():
            self.start()
        self.connection.send(text)
        if self.connection.poll(5 * self.timeout + 5):
            try:
                outcome, detail, seconds = self.connection.recv()
            except (EOFError, OSError):          # the worker died (a crash, the memory cap)
                self.process = None
                return "other", "the worker process died", float("nan")
            if seconds > self.timeout:
                return "over-limit", f"{seconds:.2f} s of CPU", seconds
            return outcome, detail, seconds
        self.stop()
        return "over-limit", f"killed after {5 * self.timeout + 5:.0f} s of wall time", float("inf")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process = None


def campaign(seed: int, count: int, timeout: float, start: int = 0,
             report=print) -> tuple[Counter, list, tuple[float, int]]:
    """Run cases ``start .. start+count-1``: the counts, the (case, outcome, detail,
    program) of every case neither accepted nor located, and the slowest (seconds, case)."""
    import tnc  # noqa: F401 - once here, so forked workers start warm
    pool, runner = seeds(), Runner(timeout)
    counts, bad, slowest = Counter(), [], (0.0, -1)
    try:
        for case in range(start, start + count):
            text = program(seed, case, pool)
            outcome, detail, seconds = runner.run(text)
            counts[outcome] += 1
            slowest = max(slowest, (seconds if seconds == seconds else 0.0, case))
            if outcome not in ("accepted", "located"):
                bad.append((case, outcome, detail, text))
                report(f"case {case}: {outcome}: {detail.strip().splitlines()[-1] if detail else ''}"
                       f"\n    reproducer: {_shown(text)}")
    finally:
        runner.stop()
    return counts, bad, slowest


def _shown(text: str, limit: int = 600) -> str:
    shown = ascii(text)
    return shown if len(shown) <= limit else shown[:limit] + f"... ({len(text)} characters)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--count", type=int, default=20000, help="programs to run (20000)")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="CPU seconds a program may take (default 2)")
    parser.add_argument("--start", type=int, default=0, help="first case number (default 0)")
    parser.add_argument("--only", type=int, help="run just this case and show it in full")
    args = parser.parse_args(argv)
    if args.count < 1 or args.timeout <= 0:
        parser.error("--count must be positive and --timeout above 0")
    if args.only is not None:
        text = program(args.seed, args.only, seeds())
        print(f"case {args.only} of seed {args.seed}: {_shown(text, 10**6)}")
        outcome, detail, seconds = run_one(text)
        print(outcome, f"{seconds:.2f} s CPU", detail)
        return 0 if outcome in ("accepted", "located") else 1
    began = time.time()
    counts, bad, slowest = campaign(args.seed, args.count, args.timeout, args.start)
    print(f"\n{args.count} programs, seed {args.seed}, limit {args.timeout:g} s, "
          f"{time.time() - began:.0f} s in all; slowest case {slowest[1]} "
          f"({slowest[0]:.2f} s CPU)")
    for outcome in OUTCOMES:
        print(f"  {outcome:12s} {counts[outcome]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
