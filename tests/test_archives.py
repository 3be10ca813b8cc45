"""Saved results are data, never paths or code: every loader (tnc.load_result,
tnc.load_coupled, tnc.models.stratified.load_stratified) and `tnc show` turn a damaged,
tampered or foreign archive into one located TncError, never a traceback, a hang or
a file read off the archive's say-so."""
import io
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import tnc
from tnc.cli import main
from tnc.models.stratified import load_stratified, ntf

NETWORKS = """
network X1(I = 6, J = 5, K = 4, R = 2) { index i: I, j: J, k: K, r: R  tensor A(i, r), B(j, r), C(k, r)  output i, j, k }
network X2(I = 6, L = 7, R = 2) { index i: I, l: L, r: R  tensor A(i, r), D(l, r)  output i, l }
model linked { fit X1 to T1  fit X2 to T2 weight 0.5 }
"""
REGRESSION = "network reg(I = 4, J = 3) { index i: I, j: J  data H(i, j)  tensor a(j)  output i }"
LOADERS = {"fit": tnc.load_result, "inputs": tnc.load_result, "coupled": tnc.load_coupled,
           "stratified": load_stratified}
DAMAGED = "not a tnc result archive"


def save_fit(path):
    net = tnc.library("cp", I=4, J=5, K=6, R=2)
    tnc.fit(net, net.contract(net.random(seed=1)), method="als", seed=0, max_iter=5,
            progress=False).save(path)


def save_inputs(path):
    net = tnc.compile(REGRESSION)
    rng = np.random.default_rng(2)
    tnc.FitResult(net, {"a": rng.random(3)}, "als", [{"loss": 0.5, "rel_error": 0.1}], True, 1,
                  0.01, inputs={"H": rng.random((4, 3))}).save(path)


def save_coupled(path):
    model = tnc.compile_model(NETWORKS)
    data = model.contract(model.random(seed=3))
    tnc.fit_model(model, data, progress=False, max_iter=5).save(path)


def save_stratified(path):
    ntf(np.random.default_rng(4).random((5, 4, 3)), rank=2, max_iter=3, progress=False).save(path)


SAVERS = {"fit": save_fit, "inputs": save_inputs, "coupled": save_coupled,
          "stratified": save_stratified}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One archive of each kind, written by tnc's own save methods."""
    folder = tmp_path_factory.mktemp("originals")
    paths = {}
    for kind, save in SAVERS.items():
        paths[kind] = folder / f"{kind}.npz"
        save(paths[kind])
    return paths


def contents(path) -> tuple[dict, dict]:
    """``(meta, arrays)`` of an archive, read with numpy alone."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return json.loads(str(arrays.pop("__meta__"))), arrays


KEEP = object()


def rewrite(path, out, meta=KEEP, arrays=None):
    """``out``: ``path``'s archive with ``meta`` (any JSON value) and/or ``arrays``."""
    old_meta, old_arrays = contents(path)
    meta = old_meta if meta is KEEP else meta
    np.savez_compressed(out, __meta__=np.array(json.dumps(meta)),
                        **(old_arrays if arrays is None else arrays))
    return out


def refused(load, path, *fragments):
    """The loader's TncError on ``path``: one line, naming the file and ``fragments``."""
    with pytest.raises(tnc.TncError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_round_trips_still_work(originals):
    """The checks refuse nothing tnc itself wrote (the reference: numpy's own reading)."""
    for kind, path in originals.items():
        loaded = LOADERS[kind](path)
        meta, arrays = contents(path)
        assert loaded.history == meta["history"] and loaded.converged == meta["converged"]
        if kind in ("fit", "inputs", "coupled"):
            for name, array in loaded.tensors.items():
                np.testing.assert_array_equal(array, arrays[f"tensor:{name}"])
    np.testing.assert_array_equal(tnc.load_result(originals["inputs"]).inputs["H"],
                                  contents(originals["inputs"])[1]["input:H"])


# -- files that are not archives at all ---------------------------------------------------

@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("body", [b"", b"junk", b"network n() { output }", b"\x93NUMPY\x01\x00",
                                  b"PK\x03\x04" + bytes(60), b"PK\x05\x06" + bytes(18)],
                         ids=["empty", "junk", "tnc text", "npy magic", "zip header",
                              "empty zip"])
def test_a_file_that_is_not_an_archive(tmp_path, kind, body):
    path = tmp_path / "x.npz"
    path.write_bytes(body)
    refused(LOADERS[kind], path, DAMAGED)


def test_a_single_npy_pickle_or_missing_file(tmp_path):
    npy = tmp_path / "one.npz"
    with open(npy, "wb") as handle:
        np.save(handle, np.arange(3))
    refused(tnc.load_result, npy, DAMAGED, "not an .npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __meta__=np.array([{"format": 1}], dtype=object))
    refused(tnc.load_result, pickled, DAMAGED, "pickled")
    refused(tnc.load_result, tmp_path / "missing.npz", "cannot read")
    refused(tnc.load_result, tmp_path, "cannot read")          # a directory


def test_a_foreign_npz(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(4.0), y=np.eye(2))
    refused(tnc.load_result, foreign, DAMAGED, "__meta__")
    numeric = tmp_path / "numeric.npz"
    np.savez(numeric, __meta__=np.arange(3))
    refused(tnc.load_coupled, numeric, DAMAGED, "__meta__ is a int64 array")


# -- damaged archives ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("kept", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_a_truncated_archive(originals, tmp_path, kind, kept):
    whole = originals[kind].read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(whole[:int(len(whole) * kept)])
    refused(LOADERS[kind], path, DAMAGED)


@pytest.mark.parametrize("kind", list(LOADERS))
def test_bit_flips_anywhere(originals, tmp_path, kind):
    """200 single-bit flips at seeded places: each archive either loads to exactly the
    original (the flip hit a field nothing reads, such as a timestamp) or is refused as
    damaged; nothing else, and quickly."""
    whole = originals[kind].read_bytes()
    rng = np.random.default_rng(7)
    expected = contents(originals[kind])
    outcomes = {"refused": 0, "same": 0}
    path = tmp_path / "flipped.npz"
    for place in rng.integers(0, len(whole), 200):
        flipped = bytearray(whole)
        flipped[place] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        start = time.perf_counter()
        try:
            LOADERS[kind](path)
        except tnc.TncError as error:
            assert DAMAGED in str(error) and "\n" not in str(error), (place, str(error))
            outcomes["refused"] += 1
        else:
            meta, arrays = contents(path)
            assert meta == expected[0] and arrays.keys() == expected[1].keys(), place
            for key, array in arrays.items():
                np.testing.assert_array_equal(array, expected[1][key])
            outcomes["same"] += 1
        assert time.perf_counter() - start < 2, place
    assert outcomes["refused"] > 100, outcomes          # most bytes are data, CRC-checked


def test_a_shape_in_an_npy_header_blown_up(originals, tmp_path):
    """A tensor whose .npy header claims 10^15 rows: refused quickly, without reading
    (or allocating) them."""
    meta, arrays = contents(originals["fit"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, array in {"__meta__": np.array(json.dumps(meta)), **arrays}.items():
            raw = io.BytesIO()
            if key == "tensor:A":
                np.lib.format.write_array_header_1_0(raw, {
                    "descr": "<f8", "fortran_order": False, "shape": (10**15, 2)})
                raw.write(array.tobytes())
            else:
                np.save(raw, array)
            archive.writestr(f"{key}.npy", raw.getvalue())
    path = tmp_path / "huge.npz"
    path.write_bytes(buffer.getvalue())
    start = time.perf_counter()
    refused(tnc.load_result, path, DAMAGED)
    assert time.perf_counter() - start < 2


def test_a_zip_bomb_is_refused_before_it_is_unpacked(originals, tmp_path, monkeypatch):
    """64 MiB of zeros packed into about 64 KiB, read with 16 MiB of memory to spare."""
    meta, arrays = contents(originals["fit"])
    bomb = rewrite(originals["fit"], tmp_path / "bomb.npz",
                   arrays={**arrays, "tensor:A": np.zeros((2**23, 1))})
    assert bomb.stat().st_size < 2**20
    monkeypatch.setattr(tnc.engine.plan, "available_memory", lambda: 16 * 2**20)
    with pytest.raises(tnc.MemoryLimitError, match=r"reading .*bomb.npz needs 64 MiB"):
        tnc.load_result(bomb)


# -- meta that is not what tnc wrote --------------------------------------------------------

@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("meta", [[1, 2], 7, "text", None, 1.5, True],
                         ids=["list", "int", "string", "null", "float", "bool"])
def test_meta_that_is_not_an_object(originals, tmp_path, kind, meta):
    path = rewrite(originals[kind], tmp_path / "m.npz", meta=meta)
    refused(LOADERS[kind], path, DAMAGED, "not an object")


def required_fields(kind, originals) -> list[str]:
    return [key for key in contents(originals[kind])[0] if key not in ("info", "settings")]


@pytest.mark.parametrize("kind", list(LOADERS))
def test_every_missing_meta_field_is_named(originals, tmp_path, kind):
    meta = contents(originals[kind])[0]
    names = required_fields(kind, originals)
    assert len(names) >= 6
    for name in names:
        if name == "kind":
            continue                      # without it the archive is a plain fit's
        path = rewrite(originals[kind], tmp_path / f"{name}.npz",
                       meta={k: v for k, v in meta.items() if k != name})
        refused(LOADERS[kind], path, DAMAGED, f"meta field {name!r} is missing")


WRONG_VALUES = [[], {}, "x", -1, 1.5, True, None, [{"loss": "high"}]]


@pytest.mark.parametrize("kind", list(LOADERS))
def test_every_meta_field_of_the_wrong_type_is_named(originals, tmp_path, kind):
    """Each field set to each value of another type than the saved one: refused (naming
    the field) or, where the value is of a type the field allows, loaded."""
    meta = contents(originals[kind])[0]
    for name in [*required_fields(kind, originals), "info"]:
        for value in WRONG_VALUES:
            if type(value) is type(meta.get(name)) or (meta.get(name) is None and value is None):
                continue
            path = rewrite(originals[kind], tmp_path / "t.npz", meta={**meta, name: value})
            try:
                LOADERS[kind](path)
            except tnc.TncError as error:
                message = str(error)
                assert "\n" not in message, message
                assert f"'{name}'" in message or DAMAGED in message or "fit result" in message
            else:
                assert (name, type(value)) in ALLOWED_OTHER_TYPES, (name, value)


# what the saved meta may also hold in place of the type tnc wrote
ALLOWED_OTHER_TYPES = {("wall_time", int), ("wall_time", float), ("filename", type(None)),
                       ("filename", str),
                       ("name", type(None)), ("source", type(None)), ("weight", int),
                       ("history", list), ("tv", dict), ("l2", dict), ("nonneg", list),
                       ("sizes", dict), ("info", dict), ("settings", dict)}


def test_a_future_format_or_an_unknown_kind(originals, tmp_path):
    meta = contents(originals["fit"])[0]
    path = rewrite(originals["fit"], tmp_path / "f.npz", meta={**meta, "format": 2})
    refused(tnc.load_result, path, DAMAGED, "'format'")
    path = rewrite(originals["fit"], tmp_path / "k.npz", meta={**meta, "kind": "hologram"})
    refused(tnc.load_result, path, "a hologram one", "a newer tnc")
    path = rewrite(originals["fit"], tmp_path / "l.npz", meta={**meta, "kind": ["coupled"]})
    refused(tnc.load_result, path, DAMAGED, "'kind'")


def test_nested_fields_of_a_coupled_archive(originals, tmp_path):
    meta = contents(originals["coupled"])[0]
    term = meta["terms"][0]
    cases = {"terms": [{**term, "sizes": {"I": "6"}}], "tv": {"A": [0.1]},
             "l2": {"A": "lots"}, "nonneg": ["A", 3]}
    for name, value in cases.items():
        path = rewrite(originals["coupled"], tmp_path / "c.npz", meta={**meta, name: value})
        refused(tnc.load_coupled, path, DAMAGED, f"meta field {name!r}")
    bad_loss = {**meta, "terms": [{**term, "loss": "quantum"}, *meta["terms"][1:]]}
    refused(tnc.load_coupled, rewrite(originals["coupled"], tmp_path / "l.npz", bad_loss),
            DAMAGED, "its loss")
    unknown = {**meta, "l2": {"Z": 1.0}}
    refused(tnc.load_coupled, rewrite(originals["coupled"], tmp_path / "u.npz", unknown),
            DAMAGED, "its model")


# -- sources are text, never paths, and cannot make a loader hang ---------------------------

@pytest.mark.parametrize("kind", ["fit", "coupled"])
def test_a_source_that_names_a_file_is_not_read(originals, tmp_path, kind):
    """The archive's source set to a path: of /etc/passwd, and of a .tn file holding the
    very network saved (which a path-reading loader would load without complaint)."""
    meta = contents(originals[kind])[0]
    real = tmp_path / "same.tn"
    real.write_text(meta["terms"][0]["source"] if kind == "coupled" else meta["source"])
    for source in ("/etc/passwd", str(real)):
        if kind == "coupled":
            changed = {**meta, "terms": [{**meta["terms"][0], "source": source},
                                         *meta["terms"][1:]]}
        else:
            changed = {**meta, "source": source}
        message = refused(LOADERS[kind], rewrite(originals[kind], tmp_path / "p.npz", changed),
                          DAMAGED, "does not compile")
        assert "root:" not in message and "cannot read tnc file" not in message


def test_a_coupled_model_source_that_names_a_file(originals, tmp_path):
    meta = contents(originals["coupled"])[0]
    path = rewrite(originals["coupled"], tmp_path / "p.npz", {**meta, "source": "/etc/passwd"})
    message = refused(tnc.load_coupled, path, DAMAGED, "model source does not parse")
    assert "root:" not in message


HOSTILE = """network n() {
  index i: 2
  output i[1..1000, 1..1000, 1..1000, 1..1000, 1..1000, 1..1000, 1..1000]
}"""


@pytest.mark.parametrize("kind", ["fit", "coupled"])
def test_a_hostile_source_fails_fast(originals, tmp_path, kind):
    meta = contents(originals[kind])[0]
    if kind == "coupled":
        changed = {**meta, "terms": [{**meta["terms"][0], "source": HOSTILE, "network": "n",
                                      "sizes": {}}, *meta["terms"][1:]]}
    else:
        changed = {**meta, "source": HOSTILE, "name": "n", "sizes": {}}
    path = rewrite(originals[kind], tmp_path / "evil.npz", changed)
    start = time.perf_counter()
    refused(LOADERS[kind], path, DAMAGED, "expands to more than")
    assert time.perf_counter() - start < 2
    assert show(path) == (2, 1)


# -- tensors must fit the saved model --------------------------------------------------------

def with_array(originals, tmp_path, kind, key, value):
    arrays = dict(contents(originals[kind])[1])
    if value is None:
        arrays.pop(key)
    else:
        arrays[key] = value
    return rewrite(originals[kind], tmp_path / "a.npz", arrays=arrays)


@pytest.mark.parametrize("kind, key", [("fit", "tensor:A"), ("inputs", "tensor:a"),
                                       ("inputs", "input:H"), ("coupled", "tensor:D"),
                                       ("stratified", "topic:0"), ("stratified", "weight:0")])
def test_a_tensor_of_the_wrong_shape(originals, tmp_path, kind, key):
    array = contents(originals[kind])[1][key]
    for shape in [(array.shape[0] + 1, *array.shape[1:]), array.shape + (1,), (array.size,)]:
        if shape == array.shape:
            continue
        path = with_array(originals, tmp_path, kind, key, np.zeros(shape))
        message = refused(LOADERS[kind], path, DAMAGED)
        assert f"has shape {tuple(shape)}" in message or (
            kind == "stratified" and "records parameter_count" in message), message  # d_k free


@pytest.mark.parametrize("kind, key", [("fit", "tensor:B"), ("inputs", "input:H"),
                                       ("coupled", "tensor:A"), ("stratified", "topic:1")])
def test_a_missing_or_extra_tensor(originals, tmp_path, kind, key):
    refused(LOADERS[kind], with_array(originals, tmp_path, kind, key, None), DAMAGED, "missing")
    extra = with_array(originals, tmp_path, kind, key.split(":")[0] + ":Zed", np.zeros(2))
    refused(LOADERS[kind], extra, DAMAGED, "Zed")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_arrays_that_are_not_numbers(originals, tmp_path, kind):
    key = next(k for k in contents(originals[kind])[1] if ":" in k)
    path = with_array(originals, tmp_path, kind, key, np.array(["a", "b"]))
    refused(LOADERS[kind], path, DAMAGED, "not numbers")
    unnamed = with_array(originals, tmp_path, kind, "loose", np.zeros(2))
    refused(LOADERS[kind], unnamed, DAMAGED, "group:name")


# -- tnc show: exit status 2 and one line on stderr ---------------------------------------------

def show(path) -> tuple[int, int]:
    """``tnc show path`` in this process: (exit status, lines on stderr)."""
    import contextlib
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = main(["show", str(path)])
    return status, len(err.getvalue().splitlines())


def damaged_archives(originals, folder) -> list:
    """One archive of each kind of damage, for `tnc show`."""
    meta, arrays = contents(originals["fit"])
    whole = originals["fit"].read_bytes()
    (folder / "cut.npz").write_bytes(whole[:len(whole) // 2])
    flipped = bytearray(whole)
    flipped[len(whole) // 3] ^= 4
    (folder / "flip.npz").write_bytes(bytes(flipped))
    (folder / "text.npz").write_text("hello")
    np.savez(folder / "foreign.npz", x=np.zeros(3))
    return [folder / "cut.npz", folder / "flip.npz", folder / "text.npz", folder / "foreign.npz",
            rewrite(originals["fit"], folder / "list.npz", meta=[1]),
            rewrite(originals["coupled"], folder / "int.npz", meta=3),
            rewrite(originals["fit"], folder / "nokeys.npz", meta={"format": 1}),
            rewrite(originals["stratified"], folder / "nostrata.npz",
                    meta={k: v for k, v in contents(originals["stratified"])[0].items()
                          if k != "strata"}),
            rewrite(originals["fit"], folder / "passwd.npz", meta={**meta, "source": "/etc/passwd"}),
            rewrite(originals["fit"], folder / "shape.npz",
                    arrays={**arrays, "tensor:A": np.zeros((9, 9))})]


def test_show_refuses_every_damage_with_one_line(originals, tmp_path):
    for path in damaged_archives(originals, tmp_path):
        assert show(path) == (2, 1), path
    for path in originals.values():
        assert show(path) == (0, 0), path


@pytest.mark.parametrize("name", ["cut", "flip", "text", "passwd", "shape"])
def test_show_in_a_shell(originals, tmp_path, name):
    damaged_archives(originals, tmp_path)
    done = subprocess.run([sys.executable, "-m", "tnc.cli", "show", str(tmp_path / f"{name}.npz")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tnc show: error: "), done.stderr
    assert DAMAGED in lines[0] and "Traceback" not in done.stderr and "root:" not in done.stderr
