"""The built Lark parser kept in tnc's private cache directory: loaded by the next
process instead of rebuilt, rebuilt when damaged, skipped when it cannot be written."""
import lark
import pytest

import tnc
from tnc.lang import parser

TEXT = "network n(I = 3, R = 2) { index i: I, r: R  tensor A(i, r), B(i, r)  output i }"


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A private cache directory of this test and no parser built in this process."""
    monkeypatch.setenv("TNC_CACHE_DIR", str(tmp_path / "cache"))
    parser.lark_parser.cache_clear()
    yield tmp_path / "cache"
    parser.lark_parser.cache_clear()


class NoBuild(lark.Lark):
    """A Lark that can be loaded (``Lark.load`` skips ``__init__``) but not built."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("the parser was built, not loaded")


def test_the_second_parser_is_loaded_and_parses_alike(fresh, monkeypatch):
    built = parser.lark_parser().parse(TEXT)
    assert [p.name for p in fresh.glob("parser-*.lark")]          # kept for the next one
    parser.lark_parser.cache_clear()
    monkeypatch.setattr(parser, "Lark", NoBuild)
    assert parser.lark_parser().parse(TEXT) == built
    with pytest.raises(tnc.TncSyntaxError, match="index declaration needs a size"):
        parser.parse("network n() { index i }")          # the hints run on the loaded one


def test_a_damaged_cache_file_is_rebuilt(fresh):
    parser.lark_parser()
    [kept] = fresh.glob("parser-*.lark")
    kept.write_bytes(b"not a pickle")
    parser.lark_parser.cache_clear()
    assert parser.lark_parser().parse(TEXT) is not None
    assert kept.read_bytes() != b"not a pickle"


def test_no_cache_directory_still_parses(tmp_path, monkeypatch):
    other = tmp_path / "shared"
    other.mkdir(mode=0o777)
    other.chmod(0o777)                                  # writable by others: refused
    monkeypatch.setenv("TNC_CACHE_DIR", str(other))
    parser.lark_parser.cache_clear()
    try:
        assert parser.parser_cache_path(parser.grammar_text()) is None
        assert parser.lark_parser().parse(TEXT) is not None
    finally:
        parser.lark_parser.cache_clear()
    assert not list(other.glob("parser-*"))
