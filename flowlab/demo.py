"""The lecture's 2D figures, rendered to PNGs and one ``index.html`` (``flowlab demo``).

Each section below is one lecture point: it draws its figures and returns them with a caption
that states the point. ``render_demo(out_dir)`` runs them all, writes ``index.html`` (figures,
captions and an animated GIF of the flow) and returns the paths written. The page needs nothing
from the network: its figures are files next to it and it has no script.

Two flows are shown throughout: the pretrained MLP on the moons data (a *learned* velocity, with
model error) and the exact velocity of the 8-Gaussian ring (``GaussianMixture.ring()``: no model
error, so what remains is the solver's truncation error). t = 0 is noise, t = 1 is data.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flowlab import schedules, viz
from flowlab.data import GaussianMixture, toy
from flowlab.solvers import METHODS, integrate, nfe


ANIMATION_FILE = "flow_animation.gif"


@dataclass(frozen=True)
class Settings:
    """How much work each figure does (``FULL`` for the lecture, ``QUICK`` for tests)."""
    n_samples: int = 6000          # points per scatter plot
    sample_method: str = "heun"
    sample_steps: int = 32         # solver steps for the moons samples and trajectories
    bench_points: int = 3000       # points in the error-vs-NFE table
    bench_nfes: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128)
    bench_methods: tuple[str, ...] = METHODS
    bench_schedules: tuple[str, ...] | None = None   # None: every schedule in flowlab.schedules
    sde_steps: int = 100           # Euler-Maruyama steps for the SDE comparison
    sde_etas: tuple[float, ...] = (0.0, 0.5, 1.0)
    grid_steps: int = 12           # points per schedule in the schedule figure
    field_resolution: int = 21
    animation_points: int = 1500
    seed: int = 0


FULL = Settings()
QUICK = Settings(n_samples=800, sample_steps=8, bench_points=300, bench_nfes=(4, 8, 16),
                 bench_methods=("euler", "heun"), bench_schedules=("uniform",), sde_steps=12,
                 grid_steps=6, field_resolution=9, animation_points=200)


@dataclass
class Item:
    """One entry of the page: a figure saved as ``filename`` or raw ``html``, with a caption."""
    heading: str
    caption: str
    figure: object | None = None
    filename: str | None = None
    html: str | None = None
    extra_html: str = ""


@dataclass
class Context:
    """What every section needs: settings, the two velocity fields and their data, where files go."""
    settings: Settings
    model: torch.nn.Module
    out_dir: Path
    mixture: GaussianMixture = field(default_factory=GaussianMixture.ring)

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.settings.seed + offset)

    def noise(self, n: int | None = None, dtype=torch.float32) -> torch.Tensor:
        """The same ``N(0, I)`` starting points for every figure: ``(n, 2)``."""
        return torch.randn(n or self.settings.n_samples, 2, generator=self.generator(1), dtype=dtype)

    def moons(self, n: int | None = None) -> torch.Tensor:
        return toy.sample("moons", n or self.settings.n_samples, generator=self.generator(2))

    def sample_moons(self, return_path: bool = False):
        grid = schedules.get("uniform", self.settings.sample_steps)
        return integrate(self.model, self.noise(), grid, self.settings.sample_method, return_path=return_path)


def _distance(samples: torch.Tensor, reference: torch.Tensor) -> str:
    """``"SW2 = 0.123"``: the sliced Wasserstein distance to the reference (data units)."""
    from flowlab.metrics import sliced_wasserstein

    value = sliced_wasserstein(samples.double(), reference.double(), generator=torch.Generator().manual_seed(0))
    return f"SW2 = {float(value):.3f}"


def data_and_samples(context: Context) -> list[Item]:
    """(a) Noise, data and model samples side by side."""
    s = context.settings
    data, samples = context.moons(), context.sample_moons()
    figure, axes = viz.new_figure(1, 3, sharey=True)
    viz.scatter_density(context.noise(), ax=axes[0, 0], lim=viz.MOONS_LIM, title="noise x0 ~ N(0, I)  (t = 0)")
    viz.scatter_density(data, ax=axes[0, 1], lim=viz.MOONS_LIM, title="data: moons  (t = 1)")
    viz.scatter_density(samples, ax=axes[0, 2], lim=viz.MOONS_LIM, color=viz.STYLE["sample_color"],
                        title=f"model samples: {s.sample_method}, {s.sample_steps} steps = "
                              f"{nfe(s.sample_method, s.sample_steps)} NFE\n"
                              f"{_distance(samples, data)}")
    caption = ("A small MLP trained by flow matching (regress x1 - x0 at x_t = (1 - t) x0 + t x1) learns "
               "a velocity field v(x, t). Integrating dx/dt = v from t = 0 (Gaussian noise, left) to "
               "t = 1 carries the noise onto the data: the samples (right) match the moons (middle). "
               "SW2 is the sliced Wasserstein distance to fresh data, in data units.")
    return [Item("Data vs samples of the pretrained moons model", caption, figure, "01_data_vs_samples.png")]


def trajectories_and_field(context: Context) -> list[Item]:
    """(b) Trajectories, the velocity field over time, and the animated flow."""
    s = context.settings
    _, path = context.sample_moons(return_path=True)
    grid = schedules.get("uniform", s.sample_steps)
    trajectories = viz.plot_trajectories(path, n=200, lim=viz.MOONS_LIM,
                                         title=f"moons model: {s.sample_method}, {s.sample_steps} steps")
    field_figure = viz.plot_vector_field(context.model, lim=viz.MOONS_LIM, resolution=s.field_resolution,
                                         title="velocity of the moons model v(x, t)")
    animation = viz.animate_flow(path, context.out_dir / ANIMATION_FILE, ts=grid, n=s.animation_points,
                                 lim=viz.MOONS_LIM)
    return [
        Item("Trajectories from noise to data", (
            "Each sample follows the ODE from t = 0 (grey) to t = 1 (red). Flow matching regresses "
            "straight lines between random pairs (x0, x1), but the learned marginal velocity averages "
            "over every pair that passes through x_t, so the trajectories curve. The ODE is "
            "deterministic: two samples never sit at the same point at the same time."),
            trajectories, "02_trajectories.png"),
        Item("The velocity field over time", (
            "v(x, t) at five times; t = 0 is noise. At t = 0 the field is E[x1] - x (towards the data "
            "mean, whatever x is); as t -> 1 it points to the nearest part of the data and grows "
            "sharp, which is where solvers need short steps."),
            field_figure, "03_vector_field.png"),
        Item("Animation: the flow", "The same samples moving along their trajectories, one frame per "
             "solver step (t = 0 noise to t = 1 data), looping.", filename=animation.name),
    ]


def _best_schedules(rows: list[dict]) -> str:
    """``"euler: shifted, heun: uniform, ..."``: the lowest-error schedule per method at the top NFE."""
    top = max(row["nfe"] for row in rows)
    best: dict[str, dict] = {}
    for row in rows:
        if row["nfe"] == top and (row["method"] not in best or row["error"] < best[row["method"]]["error"]):
            best[row["method"]] = row
    return ", ".join(f"{method}: {row['schedule']}" for method, row in best.items()) + f" (at {top} NFE)"


def error_versus_nfe(context: Context) -> list[Item]:
    """(c) Solver error against NFE on the exact mixture velocity, one panel per schedule."""
    from flowlab import bench

    s = context.settings
    names = s.bench_schedules or tuple(schedules.SCHEDULES)
    rows = bench.solver_error_table(s.bench_nfes, s.bench_methods, names, n_points=s.bench_points, seed=s.seed)
    columns = min(3, len(names))
    figure, axes = viz.new_figure(-(-len(names) // columns), columns, sharex=True, sharey=True,
                                  width=4.2 * columns, height=3.5 * -(-len(names) // columns))
    for index, (ax, name) in enumerate(zip(axes.flat, names)):
        viz.plot_error_vs_nfe([row for row in rows if row["schedule"] == name], ax=ax,
                              title=f"schedule: {name}", legend=index == 0)
        if index % columns:
            ax.set_ylabel("")
        if index < len(names) - columns:          # a panel below carries the NFE axis
            ax.set_xlabel("")
        else:
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes.flat[len(names):]:
        ax.remove()
    figure.suptitle(f"solver error vs NFE on the exact 8-Gaussian velocity ({s.bench_points} points)")
    caption = ("With the exact velocity of a Gaussian mixture there is no model error: the error is the "
               "solver's truncation error alone (mean distance of the end points to an accurate "
               "reference solution). Once the steps are small enough the slopes follow the orders "
               "(dotted guides): 1 for Euler, 2 for midpoint and Heun, 3 for Adams (a multistep method: "
               "one NFE per step, reusing the last velocities), 4 for RK4, so with enough NFE a "
               "higher order wins at equal cost (at 2 to 4 NFE, where RK4 gets a single step, Euler "
               "can still be best). Which schedule is best depends on the solver and the budget; here: "
               f"{_best_schedules(rows)}.")
    table = f"<details><summary>table</summary><pre>{html.escape(bench.format_error_table(rows))}</pre></details>"
    return [Item("Error vs NFE for each solver and schedule", caption, figure, "04_error_vs_nfe.png",
                 extra_html=table)]


def sde_versus_ode(context: Context) -> list[Item]:
    """(d) SDE samples (eta > 0) next to ODE samples (eta = 0), learned and exact velocity."""
    from flowlab.sde import sample_sde

    s = context.settings
    grid = schedules.get("uniform", s.sde_steps)
    flows = [("moons model", context.model, context.noise(), context.moons(), viz.MOONS_LIM),
             ("exact 8 Gaussians", context.mixture.velocity, context.noise(dtype=torch.float64),
              context.mixture.sample(s.n_samples, generator=context.generator(3)), 6.0)]
    figure, axes = viz.new_figure(len(flows), len(s.sde_etas))
    for row, (name, velocity, x0, data, lim) in enumerate(flows):
        for column, eta in enumerate(s.sde_etas):
            samples = sample_sde(velocity, x0, grid, eta=eta, generator=context.generator(10 + column))
            kind = "ODE" if eta == 0 else ("SDE, DDPM-like" if eta == 1 else "SDE")
            viz.scatter_density(samples, ax=axes[row, column], lim=lim, color=viz.STYLE["sample_color"],
                                title=f"{name}: eta = {eta:g} ({kind})\n{_distance(samples, data)}")
    caption = (f"Euler-Maruyama with {s.sde_steps} steps on dx = [v + g^2/2 score] dt + g dW, "
               "g^2 = eta 2(1 - t)/t, from the same noise. Every eta has the same marginals as the ODE "
               "(eta = 0), so with the exact velocity (bottom) the differences are discretisation error "
               "only. With a learned velocity (top) the injected noise and the extra score drift pull "
               "samples back towards where the model puts mass and can correct errors made earlier; the "
               "price is that Euler-Maruyama needs many more steps than an ODE solver.")
    return [Item("SDE vs ODE sampling", caption, figure, "05_sde_vs_ode.png")]


def schedule_grids(context: Context) -> list[Item]:
    """(e) The time grids in t, sigma and log-SNR."""
    n = context.settings.grid_steps
    grids = {name: schedules.get(name, n) for name in schedules.SCHEDULES}
    figure = viz.plot_time_grids(grids, title=f"{n}-step time grids in three coordinates (high noise on the left)")
    karras = grids["karras"][1:4]
    sigmas = " -> ".join(f"{float(v):.3g}" for v in schedules.sigma_from_t(karras))
    times = " -> ".join(f"{float(v):.2g}" for v in karras)
    caption = ("Where a schedule puts its short steps depends on the coordinate. Every grid runs from "
               "t = 0 (sigma = inf, log-SNR = -inf) to t = 1 (sigma = 0), so the two right panels show "
               f"the inner points. Karras (EDM) takes long steps at high noise in sigma ({sigmas}), yet in "
               f"t its steps there are the shortest of the grid ({times}). Uniform in t is symmetric in "
               "log sigma and log-SNR; logsnr is even in log-SNR and crowds both ends in t. 'Long steps "
               "at high noise' is a statement about one coordinate: always name it.")
    return [Item("Time schedules in t, sigma and log-SNR", caption, figure, "06_schedules.png")]


SECTIONS = (data_and_samples, trajectories_and_field, error_versus_nfe, sde_versus_ode, schedule_grids)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flowlab: 2D flow matching demo</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
        color: #1d3557; line-height: 1.45; }}
 section {{ margin: 2.5em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
 p.caption {{ max-width: 60em; }} pre {{ font-size: 0.8em; }}
</style></head><body>
<h1>flowlab: flow matching in 2D</h1>
<p>Conventions: t = 0 is noise x0 ~ N(0, I), t = 1 is data, x_t = (1 - t) x0 + t x1.
Rendered by <code>flowlab demo</code>{mode} in {seconds:.0f} s.</p>
{sections}
</body></html>
"""


def _section_html(item: Item) -> str:
    body = item.html if item.html is not None else f'<img src="{item.filename}" alt="{html.escape(item.heading)}">'
    return (f"<section><h2>{html.escape(item.heading)}</h2>\n{body}\n"
            f'<p class="caption">{html.escape(item.caption)}</p>{item.extra_html}</section>')


def render_demo(out_dir: str | Path, quick: bool = False, settings: Settings | None = None,
                threads: int | None = 1) -> list[Path]:
    """Render every lecture figure into ``out_dir``; returns the image paths (PNGs and the GIF) and
    then ``index.html``.

    ``quick=True`` uses far fewer points and steps (for tests); ``settings`` overrides both.
    ``threads``: torch threads while rendering (restored afterwards; None leaves torch's setting).
    The tensors here are small (a few thousand 2D points), so one thread is as fast as several on
    an idle machine and many times faster on a busy one, where threads wait for each other.
    Prints one line per figure and the path of the index.
    """
    from flowlab import pretrained

    settings = settings or (QUICK if quick else FULL)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _render(out_dir, settings, pretrained.load("moons").eval(), quick)
    finally:
        torch.set_num_threads(previous_threads)


def _render(out_dir: Path, settings: Settings, model: torch.nn.Module, quick: bool) -> list[Path]:
    start = time.perf_counter()
    context = Context(settings, model, out_dir)
    items, written = [], []
    with torch.inference_mode():
        for section in SECTIONS:
            section_start = time.perf_counter()
            for item in section(context):
                items.append(item)
                if item.figure is not None:
                    written.append(viz.save(item.figure, out_dir / item.filename, close=True))
                    item.figure = None
                elif item.filename is not None:              # written by its section (the animation)
                    written.append(out_dir / item.filename)
                seconds = time.perf_counter() - section_start
                print(f"  {item.filename or 'html':28s} {item.heading} [{seconds:.1f} s]")
    page = PAGE.format(mode=" --quick" if quick else "", seconds=time.perf_counter() - start,
                       sections="\n".join(_section_html(item) for item in items))
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    print(f"wrote {len(written)} figures; open {index.resolve()}")
    return written + [index]
