"""``flowlab bench samplers``: solver x schedule accuracy on the exact 8-Gaussian ring, the fewest
evaluations that reach uniform Euler's 128-step error (on searched schedules and on grids optimised
by ``schedules.optimize``). The cost of the loops themselves is ``flowlab bench speed``.

The error of a sampler is the mean Euclidean distance, over the points, between its end point
and a very accurate solution of the same ODE from the same noise (RK4 on 1,024 uniform steps),
in float64. Schedules with parameters are searched on a separate *search* set of noise (another
seed) and measured on the benchmark set, so the search cannot fit the points it is scored on.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch

from flowlab import schedules
from flowlab.data import GaussianMixture
from flowlab.solvers import METHODS, NFE_PER_STEP, integrate

REFERENCE = ("rk4", 1024)
DEFAULT_NFES = (2, 4, 8, 16, 32, 64, 128)
# Parameter grids searched for each schedule family (the defaults of schedules.py are included).
SEARCH_SPACE = {
    "uniform": {},
    "cosine": {},
    "shifted": {"shift": (0.3, 0.5, 0.7, 1.5, 2.0, 3.0)},
    "karras": {"rho": (1.5, 3.0, 5.0, 7.0), "sigma_min": (0.002, 0.03, 0.1, 0.3),
               "sigma_max": (2.0, 5.0, 20.0, 80.0)},
    "logsnr": {"logsnr_min": (-5.0, -4.0, -3.0, -2.0), "logsnr_max": (2.0, 3.0, 4.0, 5.0, 10.0)},
}


@dataclass
class RingProblem:
    """Noise ``x0`` and the accurate end points ``reference`` of the exact ring flow."""
    mixture: GaussianMixture
    x0: torch.Tensor
    reference: torch.Tensor

    def error(self, method: str, ts: torch.Tensor) -> float:
        """Mean terminal error ``E ||x_end - reference||`` of ``method`` on the grid ``ts``."""
        from flowlab.grid_search import mean_error   # scipy is imported only by the benches that fit grids

        return mean_error(self.mixture.velocity, self.x0, self.reference, ts, method)


def ring_problem(n_points: int = 20_000, seed: int = 0) -> RingProblem:
    """The benchmark problem: 8 Gaussians on a ring of radius 4, std 0.3, float64."""
    mixture = GaussianMixture.ring(k=8, radius=4.0, std=0.3)
    x0 = torch.randn(n_points, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    method, steps = REFERENCE
    return RingProblem(mixture, x0, integrate(mixture.velocity, x0, schedules.uniform(steps), method))


def steps_for(method: str, nfe: int) -> int | None:
    """Steps of ``method`` that cost exactly ``nfe`` evaluations, or None if none do."""
    steps, rest = divmod(nfe, NFE_PER_STEP[method])
    return steps if steps >= 1 and rest == 0 else None


def solver_error_table(nfes=DEFAULT_NFES, methods=METHODS, schedules_=tuple(schedules.SCHEDULES),
                       problem: RingProblem | None = None, n_points: int = 20_000, seed: int = 0,
                       progress: bool = False) -> list[dict]:
    """Error of every method x schedule (default parameters) at each NFE it can spend exactly."""
    problem = problem or ring_problem(n_points, seed)
    rows = []
    for method, schedule in itertools.product(methods, schedules_):
        for nfe in nfes:
            steps = steps_for(method, nfe)
            if steps is not None:
                rows.append({"method": method, "schedule": schedule, "nfe": nfe,
                             "error": problem.error(method, schedules.get(schedule, steps))})
        if progress:
            print(f"  measured {method} x {schedule}", flush=True)
    return rows


def _parameter_sets(schedule: str):
    space = SEARCH_SPACE[schedule]
    for values in itertools.product(*space.values()):
        params = dict(zip(space, values))
        if params.get("sigma_min", 0) < params.get("sigma_max", 1):
            yield params


def best_parameters(problem: RingProblem, method: str, schedule: str, steps: int) -> tuple[dict, float]:
    """The searched parameters of ``schedule`` with the lowest error on ``problem``."""
    scored = [(problem.error(method, schedules.get(schedule, steps, **p)), p) for p in _parameter_sets(schedule)]
    error, params = min(scored, key=lambda pair: pair[0])
    return params, error


def fewest_nfe(target: float, problem: RingProblem, search: RingProblem, methods=METHODS,
               schedules_=tuple(SEARCH_SPACE), max_nfe: int = 16) -> list[dict]:
    """For each method x schedule: the fewest NFE whose searched grid reaches ``target`` on ``problem``.

    Parameters are chosen on ``search`` (other noise); the reported error is on ``problem``.
    """
    rows = []
    for method, schedule in itertools.product(methods, schedules_):
        found = {"method": method, "schedule": schedule, "nfe": None, "error": None, "params": {}}
        for nfe in range(1, max_nfe + 1):
            steps = steps_for(method, nfe)
            if steps is None:
                continue
            params, _ = best_parameters(search, method, schedule, steps)
            error = problem.error(method, schedules.get(schedule, steps, **params))
            if error <= target:
                found.update(nfe=nfe, error=error, params=params)
                break
        rows.append(found)
    return rows


def optimised_grids(target: float, problem: RingProblem, probe: torch.Tensor, methods=("adams", "heun"),
                    min_nfe: int = 4, max_nfe: int = 12, **options) -> list[dict]:
    """For each method, from ``min_nfe`` up: the grid that ``schedules.optimize`` fits on the noise
    ``probe`` (other noise than ``problem.x0``) and its error on ``problem``, next to the uniform grid's;
    stops at the first NFE that reaches ``target``. ``options`` go to ``schedules.optimize``."""
    rows = []
    for method in methods:
        for nfe in range(min_nfe, max_nfe + 1):
            steps = steps_for(method, nfe)
            if steps is None:
                continue
            grid = schedules.optimize(problem.mixture.velocity, probe, steps, method, **options)
            error = problem.error(method, grid)
            rows.append({"method": method, "nfe": nfe, "error": error, "grid": grid.tolist(),
                         "uniform_error": problem.error(method, schedules.uniform(steps))})
            if error <= target:
                break
    return rows


def format_error_table(rows: list[dict]) -> str:
    """Rows of (method, schedule) and a column per NFE; '-' where a method cannot spend that NFE."""
    nfes = sorted({row["nfe"] for row in rows})
    error = {(r["method"], r["schedule"], r["nfe"]): r["error"] for r in rows}
    pairs = list(dict.fromkeys((r["method"], r["schedule"]) for r in rows))
    lines = [f"{'method':<9}{'schedule':<9}" + "".join(f"{n:>9}" for n in nfes)]
    for method, schedule in pairs:
        cells = [error.get((method, schedule, n)) for n in nfes]
        lines.append(f"{method:<9}{schedule:<9}" + "".join(
            f"{c:>9.2e}" if c is not None else f"{'-':>9}" for c in cells))
    return "\n".join(lines)


def format_fewest_table(rows: list[dict], target: float) -> str:
    """One row per method x schedule, best (fewest NFE) first."""
    ordered = sorted(rows, key=lambda r: (r["nfe"] is None, r["nfe"] or 0, r["error"] or 0))
    lines = [f"{'method':<9}{'schedule':<9}{'NFE':>5}{'error':>10}  parameters (searched on other noise)"]
    for r in ordered:
        nfe = f"{r['nfe']:>5}" if r["nfe"] else f"{'>max':>5}"
        error = f"{r['error']:>10.2e}" if r["error"] is not None else f"{'-':>10}"
        params = ", ".join(f"{k}={v:g}" for k, v in r["params"].items())
        lines.append(f"{r['method']:<9}{r['schedule']:<9}{nfe}{error}  {params}")
    return f"target: error <= {target:.3e} (uniform Euler, 128 NFE)\n" + "\n".join(lines)


def format_optimised_table(rows: list[dict], target: float) -> str:
    """One row per method x NFE tried; 'yes' where the optimised grid reaches ``target``."""
    lines = [f"{'method':<9}{'NFE':>5}{'error':>10}{'uniform':>10}{'reached':>9}  optimised grid (fitted on other noise)"]
    for r in rows:
        grid = ", ".join(f"{t:.3f}" for t in r["grid"])
        reached = "yes" if r["error"] <= target else "no"
        lines.append(f"{r['method']:<9}{r['nfe']:>5}{r['error']:>10.2e}{r['uniform_error']:>10.2e}{reached:>9}  [{grid}]")
    return f"target: error <= {target:.3e} (uniform Euler, 128 NFE)\n" + "\n".join(lines)


def main_samplers(quick: bool = False, n_points: int | None = None, seed: int = 0) -> None:
    """Print the three benchmark tables (``quick``: fewer points and NFEs, for tests).

    Runs on one torch thread: on a small shared CPU, two threads make the timings noisy.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _print_sampler_tables(quick, n_points, seed)
    finally:
        torch.set_num_threads(previous)


def _print_sampler_tables(quick: bool, n_points: int | None, seed: int) -> None:
    n_points = n_points or (2_000 if quick else 20_000)
    start = time.perf_counter()
    print(f"8-Gaussian ring (radius 4, std 0.3), {n_points} points, float64; error = mean ||x - x_ref||, "
          f"x_ref = {REFERENCE[0]} with {REFERENCE[1]} uniform steps\n", flush=True)
    problem = ring_problem(n_points, seed)
    nfes = (2, 4, 8, 16) if quick else DEFAULT_NFES
    print("Error at each NFE, every solver x schedule (default schedule parameters):")
    print(format_error_table(solver_error_table(nfes, problem=problem)), "\n", flush=True)
    target = problem.error("euler", schedules.uniform(128))
    search = ring_problem(min(n_points, 2_000), seed + 1)
    rows = fewest_nfe(target, problem, search, max_nfe=12 if quick else 16)
    print("Fewest NFE that reach uniform Euler's error at 128 NFE:")
    print(format_fewest_table(rows, target), "\n", flush=True)
    probe = search.x0[:400] if quick else search.x0
    optimised = optimised_grids(target, problem, probe, methods=("adams",) if quick else ("adams", "heun"),
                                max_nfe=8 if quick else 12, reference_steps=128 if quick else 256)
    print(f"Optimised grid (schedules.optimize on {probe.shape[0]} points of other noise), "
          f"error on the benchmark's points, uniform grid at the same NFE:")
    print(format_optimised_table(optimised, target), "\n", flush=True)
    print("(the cost of the loops themselves: flowlab bench speed)")
    print(f"\n(bench took {time.perf_counter() - start:.0f} s, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")


# ---- the moons checkpoints: few-step quality against the data-vs-data floor ----------------------

MOONS_CHECKPOINTS = ("moons", "moons_reflow")
MOONS_STEPS = (1, 2, 4, 16)


@dataclass
class MoonsProblem:
    """Noise ``z`` and two independent moons draws ``data`` and ``other`` (``(n, 2)`` each), and the
    seed of the projection directions, shared by every measurement so that they compare."""
    z: torch.Tensor
    data: torch.Tensor
    other: torch.Tensor
    n_proj: int
    projection_seed: int

    def distance(self, points: torch.Tensor) -> float:
        """Sliced W2 of ``points`` to ``data`` (``n_proj`` directions, the same for every call)."""
        from flowlab.metrics import sliced_wasserstein

        directions = torch.Generator().manual_seed(self.projection_seed)
        return sliced_wasserstein(points, self.data, n_proj=self.n_proj, generator=directions)

    @property
    def floor(self) -> float:
        """The distance of a fresh data draw: what a perfect model would score at this sample size."""
        return self.distance(self.other)


def moons_problem(n_points: int = 20_000, n_proj: int = 200, seed: int = 0) -> MoonsProblem:
    """``n_points`` of noise and of two moons draws from ``seed``; the projections from ``seed + 1``."""
    from flowlab.data import toy

    generator = torch.Generator().manual_seed(seed)
    data = toy.sample("moons", n_points, generator=generator)
    other = toy.sample("moons", n_points, generator=generator)
    z = torch.randn(n_points, 2, generator=generator)
    return MoonsProblem(z, data, other, n_proj, seed + 1)


def moons_step_table(models: dict, problem: MoonsProblem, steps=MOONS_STEPS, straightness=None) -> list[dict]:
    """For each ``{name: velocity}``: at each number of uniform Euler ``steps``, the sliced W2 of its
    samples and that distance over the floor, and the straightness of its paths on the most steps.
    ``straightness(path, ts)``: default ``flowlab.metrics.straightness`` (a notebook passes its own)."""
    if straightness is None:
        from flowlab.metrics import straightness
    floor, rows = problem.floor, []
    for name, velocity in models.items():
        row = {"model": name, "floor": floor, "sliced_w2": {}, "ratio": {}}
        for count in steps:
            with torch.no_grad():
                ts = schedules.uniform(count)
                end, path = integrate(velocity, problem.z, ts, "euler", return_path=True)
            row["sliced_w2"][count] = problem.distance(end)
            row["ratio"][count] = row["sliced_w2"][count] / floor
            if count == max(steps):
                row["straightness"] = straightness(path, ts)
        rows.append(row)
    return rows


def format_moons_table(rows: list[dict]) -> str:
    """One row per model: sliced W2 / floor at each step count, then the straightness."""
    steps = list(rows[0]["ratio"])
    lines = [f"{'model':<11}" + "".join(f"{f'{k} Euler':>11}" for k in steps) + f"{'straightness':>14}"]
    for row in rows:
        lines.append(f"{row['model']:<11}" + "".join(f"{row['ratio'][k]:>10.3f}x" for k in steps)
                     + f"{row['straightness']:>14.4f}")
    return "\n".join(lines)


def main_moons(checkpoints=MOONS_CHECKPOINTS, n_points: int = 20_000, n_proj: int = 200, seed: int = 0) -> None:
    """Print the moons table for the shipped ``checkpoints`` (one torch thread)."""
    from flowlab import pretrained

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        problem = moons_problem(n_points, n_proj, seed)
        rows = moons_step_table({name: pretrained.load(name) for name in checkpoints}, problem)
        print(f"moons: sliced W2 of {n_points:,} samples (uniform Euler from the same noise) to {n_points:,} data "
              f"points, {n_proj} projections, as a multiple of the floor (a second data draw: "
              f"{problem.floor:.4f}); straightness of the {max(MOONS_STEPS)}-step Euler paths\n")
        print(format_moons_table(rows))
        print(f"\n(bench took {time.perf_counter() - start:.0f} s)")
    finally:
        torch.set_num_threads(previous)
