"""A seeded slice of the language fuzz campaign (bench/fuzz_language.py): every program
gives a network, a model or a located TncError, never another exception."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tnc

HARNESS = Path(__file__).resolve().parents[1] / "bench" / "fuzz_language.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_language", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_seeded_slice_gives_only_networks_and_located_errors(fuzz):
    count = int(os.environ.get("TNC_FUZZ_PROGRAMS", 300))
    counts, bad, _ = fuzz.campaign(seed=12, count=count, timeout=2.0, report=lambda line: None)
    shown = "\n".join(f"case {c}: {o}: {d}\n{fuzz._shown(t)}" for c, o, d, t in bad
                      if o != "over-limit")
    assert counts["other"] == 0 and counts["unlocated"] == 0, shown
    assert counts["accepted"] > 0 and counts["located"] > 0          # both kinds are drawn
    assert sum(counts.values()) == count


def test_cases_are_reproducible(fuzz):
    pool = fuzz.seeds()
    assert len(pool) >= 10
    assert [fuzz.program(3, k, pool) for k in range(20)] == [fuzz.program(3, k, pool)
                                                             for k in range(20)]


def test_the_harness_tells_outcomes_apart(fuzz):
    assert fuzz._classify(lambda: tnc.compile("network n() { index i: 2 tensor A(i) output }",
                                              allow_path=False))[0] == "accepted"
    assert fuzz._classify(lambda: tnc.compile("network n() { index i: 0 }"))[0] == "located"
    assert fuzz._classify(lambda: tnc.library("nope"))[0] == "unlocated"
    outcome, detail = fuzz._classify(lambda: int("x"))
    assert outcome == "other" and "ValueError" in detail


def test_a_program_past_the_limit_is_stopped(fuzz):
    runner = fuzz.Runner(timeout=0.2)
    try:
        text = "network n(N = 10) { index p[n]: 2 for n in 1..N " + " tensor A(p[1])" * 2 + " output }"
        runner.run(text)      # warm-up: a fresh install's first parse (grammar cache) took > 0.2 s
        assert runner.run(text)[0] == "accepted"
        outcome, detail, _ = runner.run("network n() { index i: " + " + ".join(["1"] * 40000)
                                        + " tensor A(i) output i }")
        assert outcome == "over-limit", detail
    finally:
        runner.stop()


WORDS = ["network", "n()", "model", "m", "{", "}", "index", "i", ":", "2", "tensor", "A(i)",
         "output", "for", "n", "in", "1..3", "[", "]", "-", "(", ")", "+", "1e999",
         "9" * 5000, "fit", "to", "T", "weight", "loss", "huber(", ",", "?", "*"]
BREAKS = [" ", "\n", "\f", "\r", "\v", "\x85", "\u2028", "\t", "\x1c"]


@settings(max_examples=int(os.environ.get("TNC_FUZZ_EXAMPLES", 150)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(BREAKS)), max_size=40))
def test_token_soup_is_accepted_or_located(pairs):
    text = "".join(word + gap for word, gap in pairs)
    try:
        tnc.compile_all(text, allow_path=False)
    except tnc.TncError as error:
        assert error.line is not None and error.column is not None, str(error)
        lines = str(error).splitlines()
        if len(lines) >= 3 and lines[-1].strip().startswith("^"):
            assert lines[-1].index("^") - 4 == error.column - 1
