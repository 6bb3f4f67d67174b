"""The sampler registry: one signature for every sampler, paths, callbacks, injected randomness,
and loops that never wait for the device (validation happens once per call, not once per step)."""
import inspect

import pytest
import torch

from flowlab import models, solvers
from flowlab.data import GaussianMixture
from flowlab.schedules import uniform

GMM = GaussianMixture.ring()
NAMES = sorted(solvers.SAMPLERS)
STOCHASTIC = sorted(name for name, sampler in solvers.SAMPLERS.items() if not sampler.deterministic)
OPTIONS = {"sde": {"eta": 0.8}, "churn": {"gamma": 0.3}}     # stochastic enough to matter
SHARED = {"generator": None, "noise": None, "return_path": False, "callback": None}


def _start(n=16, seed=0, device="cpu") -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)


def _noise(n_steps, x, seed=5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(x.shape, generator=generator, dtype=x.dtype) for _ in range(n_steps)])


def _run(name, x, ts, **shared):
    return solvers.integrate(GMM.velocity, x, ts, name, **OPTIONS.get(name, {}), **shared)


def test_the_registry_holds_every_sampler_and_its_nfe():
    assert set(NAMES) == {"euler", "midpoint", "heun", "rk4", "adams", "sde", "churn"}
    assert solvers.METHODS == ("euler", "midpoint", "heun", "rk4", "adams")
    assert {name: solvers.NFE_PER_STEP[name] for name in NAMES} == {
        "adams": 1, "churn": 2, "euler": 1, "heun": 2, "midpoint": 2, "rk4": 4, "sde": 1}


@pytest.mark.parametrize("name", NAMES)
def test_every_sampler_has_the_shared_signature(name):
    parameters = inspect.signature(solvers.SAMPLERS[name].run).parameters
    assert list(parameters)[:3] == ["velocity", "x", "ts"]
    assert all(parameters[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in ("velocity", "x", "ts"))
    for keyword, default in SHARED.items():
        assert parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY, (name, keyword)
        assert parameters[keyword].default is default, (name, keyword)
    options = [p for p in parameters.values() if p.name not in SHARED and p.name not in ("velocity", "x", "ts")]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in options), (name, options)


@pytest.mark.parametrize("name", NAMES)
def test_integrate_dispatches_to_the_registered_sampler(name, device):
    x, ts = _start(device=device), uniform(6)
    noise = _noise(6, x)
    direct = solvers.SAMPLERS[name].run(GMM.velocity, x, ts, noise=noise, **OPTIONS.get(name, {}))
    assert torch.equal(_run(name, x, ts, noise=noise), direct)


@pytest.mark.parametrize("name", NAMES)
def test_return_path_and_callback(name, device):
    x, ts = _start(device=device), uniform(5)
    noise = _noise(5, x)
    seen = []
    end, path = _run(name, x, ts, noise=noise, return_path=True,
                     callback=lambda i, t, t_next, x_next: seen.append((i, t, t_next, x_next)))
    assert path.shape == (6, 16, 2)
    assert torch.equal(path[0], x) and torch.equal(path[-1], end)
    assert torch.equal(end, _run(name, x, ts, noise=noise))
    assert [i for i, *_ in seen] == list(range(5))
    assert [(t, t_next) for _, t, t_next, _ in seen] == list(zip(ts.tolist()[:-1], ts.tolist()[1:]))
    assert all(torch.equal(x_next, path[i + 1]) for i, _, _, x_next in seen)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_generator_noise_is_the_injected_noise_drawn_in_order(name, device):
    x, ts = _start(device=device), uniform(8)
    seeded = _run(name, x, ts, generator=torch.Generator().manual_seed(5))
    assert torch.equal(seeded, _run(name, x, ts, generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(seeded, _run(name, x, ts, noise=_noise(8, x.cpu(), seed=5)), rtol=0, atol=0)
    assert not torch.allclose(seeded, _run(name, x, ts, generator=torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("name", NAMES)
def test_noise_of_the_wrong_shape_raises_for_every_sampler(name):
    x = _start()
    with pytest.raises(ValueError, match=r"noise must have shape \(len\(ts\) - 1, \*x.shape\)"):
        _run(name, x, uniform(4), noise=torch.zeros(3, 16, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="either noise or generator"):
        _run(name, x, uniform(4), noise=_noise(4, x), generator=torch.Generator())


@pytest.mark.parametrize("name", NAMES)
def test_callback_must_be_callable(name):
    with pytest.raises(TypeError, match="callback must be callable"):
        _run(name, _start(), uniform(4), callback="print")


@pytest.mark.parametrize("name", NAMES)
def test_only_ode_methods_run_backwards(name):
    x, backwards = _start(), uniform(4).flip(0)
    if solvers.SAMPLERS[name].deterministic:
        assert _run(name, x, backwards).shape == x.shape
    else:
        with pytest.raises(ValueError, match="increasing"):
            _run(name, x, backwards)


class SyncCounter:
    """Count the tensor -> Python conversions that make the host wait for the device."""
    CONVERSIONS = ("__bool__", "__float__", "__int__", "item", "tolist")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.CONVERSIONS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))

    def _counting(self, original):
        def counted(tensor, *args, **kwargs):
            self.count += 1
            return original(tensor, *args, **kwargs)
        return counted


def _syncs(monkeypatch, velocity, name, n_steps) -> int:
    x, ts = _start(n=8), uniform(n_steps)
    noise = _noise(n_steps, x)
    with monkeypatch.context() as patch:
        counter = SyncCounter(patch)
        solvers.integrate(velocity, x, ts, name, noise=noise, return_path=True,
                          callback=lambda *step: None, **OPTIONS.get(name, {}))
    return counter.count


@pytest.mark.parametrize("name", NAMES)
def test_the_loop_never_waits_for_the_device(name, monkeypatch):
    """Every check that reads a tensor's values (a NaN check, ``t.min() < 0``, ``.item()``) is a
    device-to-host sync on a GPU; the samplers do theirs once per call, so the count must not grow
    with the number of steps, even with a network that checks its time argument (the MLP)."""
    network = models.MLP(hidden=16, depth=2).double()
    for velocity in (GMM.velocity, lambda x, t: network(x, t)):
        few, many = _syncs(monkeypatch, velocity, name, 3), _syncs(monkeypatch, velocity, name, 30)
        assert few == many, f"{name}: {few} syncs for 3 steps, {many} for 30"
        assert few > 0, "the counter must see the grid check and the final NaN check"


def test_a_velocity_of_the_wrong_shape_is_caught_on_the_first_step():
    calls = []

    def wrong(x, t):
        calls.append(t)
        return x[:, :1]

    with pytest.raises(ValueError, match=r"shaped like x \(16, 2\)"):
        solvers.integrate(wrong, _start(), uniform(10), "heun")
    assert len(calls) == 1
