"""The moving environment shared by ground states, DMRG fits and the MPS classifier."""
import subprocess
import sys

import numpy as np
import pytest

import tnc
from tnc.mps.chain import canonicalize, find_chain, random_cores, truncated_svd
from tnc.mps.dmrg_fit import canonical_loss, fit_sweep, model_of, projected_data
from tnc.mps.environments import DataEnvironment, MovingEnvironment, sweep


def chain_and_cores(net, rank, seed=0):
    chain = find_chain(net)
    cores = random_cores(chain, net.spec.index_sizes, rank, np.random.default_rng(seed))
    canonicalize(chain, cores, 0)
    return chain, cores


class CountingData:
    """Stands in for the data array and counts how often the whole of it is read."""

    def __init__(self, array):
        self.array, self.reads = array, 0

    def reshape(self, *shape):
        self.reads += 1
        return self.array.reshape(*shape)


def test_sweep_moves_each_block_once_and_stops_at_the_last_pair():
    calls = []
    env = MovingEnvironment(6, lambda b, k: calls.append(("L", k)) or b + 1,
                            lambda b, k: calls.append(("R", k)) or b + 1, 0, 0)
    assert calls == [("R", 5), ("R", 4), ("R", 3), ("R", 2)]
    calls.clear()
    worst, last = sweep(env, True, lambda k: float(k == 2))
    assert (worst, last) == (1.0, 4)
    assert calls == [("L", k) for k in range(4)]          # L[1]..L[4]; none after pair 4
    calls.clear()
    sweep(env, False, lambda k: 0.0)
    assert calls == [("R", k) for k in range(5, 1, -1)]
    assert env.pair(0) == (0, 4)                          # R[2] holds sites 2..5


@pytest.mark.parametrize("name, sizes", [("tt", dict(N=6, d=3, r=5)),
                                         ("ttm", dict(N=4, m=2, k=3, r=4)),
                                         ("tt", dict(N=3, d=4, r=3)),
                                         ("tt", dict(N=2, d=3, r=3))])
def test_projected_data_matches_a_full_contraction_through_two_sweeps(name, sizes):
    net = tnc.library(name, **sizes)
    x = np.random.default_rng(1).standard_normal(net.output_shape)
    chain, cores = chain_and_cores(net, 3)
    env = DataEnvironment(chain, cores, x, net.output)
    for number in range(2):
        to_right = number % 2 == 0

        def update(k):
            b = env.projected(k)
            np.testing.assert_allclose(b, projected_data(chain, cores, x, net.output, k),
                                       rtol=1e-12, atol=1e-12)
            from tnc.mps.chain import split
            return split(chain, cores, k, b, 3, 1e-12, to_right).error

        sweep(env.moving, to_right, update)


def test_projected_data_of_a_tt_against_numpy_einsum():
    net = tnc.library("tt", N=4, d=3, r=4)
    x = np.random.default_rng(2).standard_normal(net.output_shape)
    chain, cores = chain_and_cores(net, 4)
    env = DataEnvironment(chain, cores, x, net.output)
    g = [cores[c.name] for c in chain.cores]               # (p, b), (b, p, b), (b, p, b), (b, p)
    np.testing.assert_allclose(env.projected(0), np.einsum("ijkl,akc,cl->ija", x, g[2], g[3]),
                               rtol=1e-12, atol=1e-12)


def test_a_sweep_reads_the_data_once():
    net = tnc.library("tt", N=8, d=2, r=4)
    x = np.random.default_rng(3).standard_normal(net.output_shape)
    chain, cores = chain_and_cores(net, 4)
    env = DataEnvironment(chain, cores, x, net.output)
    counting = env.x = CountingData(env.x)
    for number in range(4):
        before = counting.reads
        fit_sweep(chain, cores, None, net.output, 4, 1e-12, number % 2 == 0, env=env)
        assert counting.reads - before == 1


def test_fit_with_environment_equals_the_fit_contracting_everything():
    net = tnc.library("tt", N=6, d=3, r=4)
    truth = tnc.library("tt", N=6, d=3, r=3)
    x = truth.contract(truth.random(seed=4))
    x = x + 0.05 * np.linalg.norm(x) / np.sqrt(x.size) * np.random.default_rng(4).standard_normal(x.shape)
    chain, fast = chain_and_cores(net, 2, seed=5)
    slow = dict(fast)
    env = DataEnvironment(chain, fast, x, net.output)
    for number in range(5):
        fit_sweep(chain, fast, x, net.output, 4, 1e-12, number % 2 == 0, env=env)
        fit_sweep(chain, slow, x, net.output, 4, 1e-12, number % 2 == 0)
    model = model_of(chain, fast, net.output)
    np.testing.assert_allclose(model, model_of(chain, slow, net.output), rtol=0, atol=1e-10)
    centre = fast[chain.cores[-1].name]                   # 5 sweeps: the last went right
    norm = np.linalg.norm(x)
    assert canonical_loss(centre, norm) == pytest.approx(np.sum((x - model) ** 2), rel=1e-9)


def test_truncated_svd_keeps_the_weight_the_cutoff_allows():
    rng = np.random.default_rng(6)
    u, _ = np.linalg.qr(rng.standard_normal((8, 5)))
    v, _ = np.linalg.qr(rng.standard_normal((7, 5)))
    s = np.array([3.0, 1.0, 0.1, 1e-3, 1e-7])
    matrix = (u * s) @ v.T
    a, kept, bt, error = truncated_svd(matrix, 10, 1e-5)
    assert kept.size == 3 and error == pytest.approx(np.sum(s[3:] ** 2) / np.sum(s ** 2))
    np.testing.assert_allclose(np.linalg.norm(matrix - (a * kept) @ bt) ** 2,
                               np.sum(s[3:] ** 2), rtol=1e-8)
    assert truncated_svd(matrix, 2, 1e-20)[1].size == 2


def test_dmrg_fit_does_not_import_ground_states():
    code = ("import sys, tnc.mps.dmrg_fit; "
            "sys.exit(int('tnc.mps.dmrg' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("k", [0, 2, 4])
def test_ground_state_matvec_by_matrix_products_equals_the_contraction(k):
    from tnc.mps import dmrg
    from tnc.mps.chain import einsum_by_name, merge
    net = tnc.library("energy", N=6, D=6)
    sites = dmrg.energy_sites(net)
    chain, cores = chain_and_cores(net, 6, seed=7)
    envs = dmrg.Environments(sites, cores, tnc.heisenberg_mpo(6))
    for j in range(k):
        envs.moving.move(j, True)
    terms, arrays = envs.local_operator(k)
    legs, out = chain.pair_legs(k), sites.pair_out(k)
    theta = merge(chain, cores, k)
    plan = dmrg._matvec_steps(terms, arrays, legs, out)
    assert plan is not None
    np.testing.assert_allclose(dmrg._apply_steps(plan, theta),
                               einsum_by_name(terms + [legs], out, arrays + [theta]),
                               rtol=1e-12, atol=1e-12)
