"""``tnc show ARCHIVE`` reads every archive kind through the one loader, ``tnc.load``."""
import numpy as np

import tnc
from tnc.cli import main
from tnc.mps.born import BornMachine


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_show_reads_archives_through_tnc_load(capsys, tmp_path, monkeypatch):
    """A fit result shown the same way, by way of tnc.load (the per-kind loader unused)."""
    import tnc.fitting.records as records
    net = tnc.library("cp", I=3, J=4, K=5, R=2)
    path = tmp_path / "fit.npz"
    tnc.fit(net, net.contract(net.random(seed=1)), max_iter=2, progress=False).save(path)
    loads = []
    load = records.load
    monkeypatch.setattr(records, "load", lambda p: loads.append(p) or load(p))
    code, out, _ = run(capsys, "show", path)
    assert code == 0 and loads == [str(path)]
    assert "network cp(I=3, J=4, K=5, R=2)" in out
    assert "fitted tensors: A (3, 2), B (4, 2), C (5, 2)" in out


def test_show_a_born_machine(capsys, tmp_path):
    """A kind tnc.load reads but show had no describer for (it said 'cannot show')."""
    rng = np.random.default_rng(0)
    cores = [rng.standard_normal(shape) for shape in [(1, 2, 3), (3, 2, 3), (3, 2, 1)]]
    path = tmp_path / "born.npz"
    BornMachine(cores).save(path)
    code, out, _ = run(capsys, "show", path)
    assert code == 0
    loaded = tnc.load(path)
    assert out.startswith("BornMachine: centre 0, 0 iterations, converged False")
    assert "tensors: " + ", ".join(f"cores[{k}] {c.shape}" for k, c in
                                   enumerate(loaded.cores)) in out


def test_show_names_an_archive_of_an_unknown_kind(capsys, tmp_path):
    from tnc.fitting.result import write_archive
    path = tmp_path / "odd.npz"
    write_archive(path, {"format": 1, "kind": "hologram"}, {})
    code, out, err = run(capsys, "show", path)
    assert code != 0 and out == ""
    assert "kind 'hologram'" in err and str(path) in err
