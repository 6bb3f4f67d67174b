"""Plots and animations for 2D flows, in one consistent style.

Every function draws into a new ``matplotlib.figure.Figure`` (or into the ``ax`` you pass) and
returns the figure. Figures are made without pyplot, so nothing depends on the backend (Agg on a
server, inline in Jupyter: a returned figure shows when it is the cell's last value, or with
``display(fig)``) and the demo can draw hundreds of them without leaking memory.

Conventions (docs/DESIGN.md): t = 0 is noise, t = 1 is data. Trajectories are arrays ``(T, B, 2)`` in
data coordinates ``(x_1, x_2)``, ordered from noise (index 0) to data (index -1).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter

STYLE = {
    "rc": {
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.25, "grid.linewidth": 0.6, "figure.facecolor": "white",
    },
    "panel": 3.4,                      # inches per square panel
    "dpi": 130,
    "density_cmap": "Blues",
    "field_cmap": "viridis",
    "noise_color": "#8d99ae",
    "data_color": "#1d3557",
    "sample_color": "#e63946",
    "line_color": "#457b9d",
    "method_colors": {"euler": "#e63946", "midpoint": "#f4a261", "heun": "#2a9d8f", "rk4": "#264653",
                      "adams": "#8e44ad", "sde": "#6c757d"},
    "schedule_styles": {"uniform": ("-", "o"), "shifted": ("--", "s"), "karras": (":", "^"),
                        "cosine": ("-.", "D"), "logsnr": ((0, (5, 1, 1, 1)), "v")},
}
COORDINATE_LABELS = ("$x_1$", "$x_2$")
# Half-width of a square view that shows the whole moons data set (flowlab.data.toy): the tips of
# the moons reach |x_1| = 3.33, so a view of [-3, 3]^2 cuts them off.
MOONS_LIM = 3.75


def _styled(function):
    """Run a plotting function inside ``STYLE['rc']`` so that its artists get the house style."""
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE["rc"]):
            return function(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    wrapper.__wrapped__ = function
    return wrapper


def _as_numpy(name: str, value, last_dim: int | None = 2, ndim: int | None = None) -> np.ndarray:
    """A tensor or array as float64 numpy, with its shape checked."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    elif not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {value.shape}")
    if last_dim is not None and (value.ndim == 0 or value.shape[-1] != last_dim):
        raise ValueError(f"{name} must have last dimension {last_dim} (2D points), got shape {value.shape}")
    return np.asarray(value, dtype=np.float64)


def new_figure(rows: int = 1, cols: int = 1, sharex: bool = False, sharey: bool = False,
               width: float | None = None, height: float | None = None) -> tuple[Figure, np.ndarray]:
    """A styled figure with a ``rows x cols`` grid of axes (returned as a 2D array of ``Axes``)."""
    with matplotlib.rc_context(STYLE["rc"]):
        figure = Figure(figsize=(width or STYLE["panel"] * cols, height or STYLE["panel"] * rows),
                        layout="constrained")
        axes = figure.subplots(rows, cols, sharex=sharex, sharey=sharey, squeeze=False)
    return figure, axes


def _figure_and_axes(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is None:
        figure, axes = new_figure()
        return figure, axes[0, 0]
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.figure, ax


def _square(ax: Axes, lim: float | tuple[float, float, float, float]) -> None:
    x_lo, x_hi, y_lo, y_hi = (-lim, lim, -lim, lim) if np.isscalar(lim) else lim
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal")
    ax.set_xlabel(COORDINATE_LABELS[0])
    ax.set_ylabel(COORDINATE_LABELS[1])


def _auto_lim(points: np.ndarray, margin: float = 0.5) -> float:
    finite = points[np.isfinite(points).all(axis=-1)]
    return float(np.ceil(np.abs(finite).max() + margin)) if finite.size else 4.5


def _subsample(n_total: int, n: int) -> np.ndarray:
    """The first ``n`` indices (deterministic, so that repeated plots look the same)."""
    return np.arange(min(n_total, n))


@_styled
def scatter_density(points, ax: Axes | None = None, bins: int | None = None, title: str | None = None,
                    lim: float | None = None, n_points: int = 1500, color: str | None = None) -> Figure:
    """Shade the density of ``points`` ``(N, 2)`` and draw ``n_points`` of them on top.

    The shading is a ``bins x bins`` histogram over the square ``[-lim, lim]^2`` (``lim`` automatic
    if None; ``bins`` grows with sqrt(N) if None), smoothed by a Gaussian of one bin and shown on a
    square-root colour scale so that thin parts of the distribution stay visible.
    """
    points = _as_numpy("points", points, ndim=2)
    figure, ax = _figure_and_axes(ax)
    lim = _auto_lim(points) if lim is None else lim
    bins = int(np.clip(np.sqrt(len(points)), 20, 90)) if bins is None else bins
    edges = np.linspace(-lim, lim, bins + 1)
    counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=[edges, edges])
    density = gaussian_filter(counts, sigma=1.0)
    if density.max() > 0:
        ax.pcolormesh(edges, edges, density.T, cmap=STYLE["density_cmap"], rasterized=True,
                      norm=PowerNorm(0.5, vmin=0, vmax=density.max()))
    shown = points[_subsample(len(points), n_points)]
    ax.scatter(shown[:, 0], shown[:, 1], s=2, alpha=0.5, linewidths=0,
               color=color or STYLE["data_color"])
    _square(ax, lim)
    ax.grid(False)
    if title:
        ax.set_title(title)
    return figure


@_styled
def plot_trajectories(path, ax: Axes | None = None, n: int = 150, title: str | None = None,
                      lim: float | None = None) -> Figure:
    """Draw ``n`` trajectories of ``path`` ``(T, B, 2)`` as lines from noise (t = 0, grey dots)
    to data (t = 1, red dots)."""
    path = _as_numpy("path", path, ndim=3)
    if path.shape[0] < 2:
        raise ValueError(f"path must hold at least 2 time points (T, B, 2), got shape {path.shape}")
    figure, ax = _figure_and_axes(ax)
    chosen = path[:, _subsample(path.shape[1], n)]
    ax.plot(chosen[..., 0], chosen[..., 1], color=STYLE["line_color"], alpha=0.35, linewidth=0.7)
    ax.scatter(chosen[0, :, 0], chosen[0, :, 1], s=7, color=STYLE["noise_color"], zorder=3,
               label="start, t = 0 (noise)")
    ax.scatter(chosen[-1, :, 0], chosen[-1, :, 1], s=7, color=STYLE["sample_color"], zorder=3,
               label="end, t = 1 (data)")
    _square(ax, _auto_lim(chosen) if lim is None else lim)
    ax.legend(loc="upper right", framealpha=0.85, markerscale=1.5)
    ax.set_title(title or f"{chosen.shape[1]} trajectories, {path.shape[0] - 1} steps")
    return figure


def _evaluation_place(velocity) -> tuple[torch.dtype, torch.device]:
    """The dtype and device a velocity expects: a module's parameters, else float32 on CPU."""
    if isinstance(velocity, torch.nn.Module):
        parameter = next(velocity.parameters(), None)
        if parameter is not None:
            return parameter.dtype, parameter.device
    return torch.float32, torch.device("cpu")


def velocity_on_grid(velocity: Callable, t: float, lim: float = 4.5, resolution: int = 21,
                     **velocity_kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``velocity(x, t)`` on a ``resolution x resolution`` grid over ``[-lim, lim]^2``.

    Returns ``(x_1, x_2, v_1, v_2)``, each ``(resolution, resolution)`` (rows follow ``x_2``).
    """
    dtype, device = _evaluation_place(velocity)
    axis = torch.linspace(-lim, lim, resolution, dtype=dtype, device=device)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    x = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    with torch.no_grad():
        v = velocity(x, torch.full((x.shape[0],), float(t), dtype=dtype, device=device), **velocity_kwargs)
    v = v.detach().cpu().double().numpy().reshape(resolution, resolution, 2)
    return grid_x.cpu().double().numpy(), grid_y.cpu().double().numpy(), v[..., 0], v[..., 1]


def _time_title(t: float) -> str:
    if t == 0:
        return "t = 0 (noise)"
    if t == 1:
        return "t = 1 (data)"
    return f"t = {t:g}"


@_styled
def plot_vector_field(velocity: Callable, times: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                      lim: float = 4.5, resolution: int = 21, kind: str = "quiver",
                      normalize: bool = True, axes: Sequence[Axes] | None = None,
                      title: str | None = None, **velocity_kwargs) -> Figure:
    """A row of panels, one per time in ``times``, showing ``velocity(x, t)`` on a grid over
    ``[-lim, lim]^2``: arrows (``kind="quiver"``) or stream lines (``kind="stream"``), coloured by
    speed ``|v|`` (data units per unit time, one colour scale for all panels). With ``normalize``
    every arrow has the same length and shows only the direction (the colour gives the speed);
    otherwise arrow lengths are proportional to ``|v|``. Extra keywords (e.g. ``y=``) go to
    ``velocity``."""
    if kind not in ("quiver", "stream"):
        raise ValueError(f"kind must be 'quiver' or 'stream', got {kind!r}")
    times = [float(t) for t in times]
    if not times or any(not 0 <= t <= 1 for t in times):
        raise ValueError(f"times must be a non-empty list in [0, 1] (t = 0 is noise), got {times}")
    if axes is None:
        figure, grid = new_figure(1, len(times), sharey=True)
        axes = list(grid[0])
    elif len(axes) != len(times):
        raise ValueError(f"axes must hold one Axes per time ({len(times)}), got {len(axes)}")
    figure = axes[0].figure
    fields = [velocity_on_grid(velocity, t, lim, resolution, **velocity_kwargs) for t in times]
    top_speed = max(float(np.hypot(f[2], f[3]).max()) for f in fields) or 1.0
    for ax, t, (gx, gy, vx, vy) in zip(axes, times, fields):
        speed = np.hypot(vx, vy)
        if kind == "quiver":
            spacing = 2 * lim / max(resolution - 1, 1)
            if normalize:
                length = np.where(speed > 0, speed, 1.0)
                vx, vy, scale = vx / length, vy / length, 1 / (0.75 * spacing)
            else:
                scale = top_speed / (1.5 * spacing)
            mappable = ax.quiver(gx, gy, vx, vy, speed, cmap=STYLE["field_cmap"], clim=(0, top_speed),
                                 angles="xy", scale_units="xy", scale=scale, width=0.005, pivot="mid")
        else:
            mappable = ax.streamplot(gx, gy, vx, vy, color=speed, cmap=STYLE["field_cmap"], density=0.9,
                                     linewidth=0.8, norm=matplotlib.colors.Normalize(0, top_speed)).lines
        _square(ax, lim)
        ax.set_title(_time_title(t))
        if ax is not axes[0]:
            ax.set_ylabel("")
    figure.colorbar(mappable, ax=list(axes), shrink=0.8, label="speed |v| (units / unit t)")
    if title:
        figure.suptitle(title)
    return figure


def _series_label(method, schedule) -> str:
    return str(method) if schedule in (None, "") else f"{method}, {schedule}"


@_styled
def plot_error_vs_nfe(rows: Sequence[Mapping], ax: Axes | None = None, title: str | None = None,
                      ylabel: str = "mean terminal L2 error", show_orders: bool = True,
                      legend: bool = True) -> Figure:
    """Log-log error against NFE, one line per (method, schedule).

    ``rows`` are dicts with keys ``method``, ``nfe``, ``error`` and optionally ``schedule`` (the
    rows of ``flowlab.bench.solver_error_table``). Colour encodes the method, line style and marker
    the schedule. With ``show_orders``, faint guides of slope -1, -2 and -4 show the orders.
    Rows with a zero or non-finite error are left out (they have no place on a log axis).
    """
    series: dict[tuple, list[tuple[float, float]]] = {}
    for row in rows:
        try:
            key = (row["method"], row.get("schedule"))
            series.setdefault(key, []).append((float(row["nfe"]), float(row["error"])))
        except (KeyError, TypeError) as error:
            raise ValueError(f"each of rows needs 'method', 'nfe' and 'error', got {row!r}") from error
    if not series:
        raise ValueError("rows is empty: nothing to plot")
    if ax is None:
        figure, axes = new_figure(width=6.4, height=4.4)
        ax = axes[0, 0]
    figure, ax = _figure_and_axes(ax)
    for (method, schedule), points in sorted(series.items(), key=lambda item: str(item[0])):
        nfe, error = np.array(sorted(p for p in points if p[1] > 0 and np.isfinite(p[1]))).T \
            if any(p[1] > 0 for p in points) else (np.array([]), np.array([]))
        line, marker = STYLE["schedule_styles"].get(schedule, ("-", "o"))
        ax.plot(nfe, error, linestyle=line, marker=marker, markersize=4, linewidth=1.4,
                color=STYLE["method_colors"].get(method), label=_series_label(method, schedule))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    if show_orders:
        _order_guides(ax, series)
    ax.set_xlabel("NFE (velocity evaluations)")
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(ncol=2 if len(series) > 6 else 1, fontsize=7, framealpha=0.85)
    ax.grid(True, which="both", alpha=0.2)
    if title:
        ax.set_title(title)
    return figure


def _order_guides(ax: Axes, series: Mapping) -> None:
    """Grey lines ``error ∝ NFE^-p`` for p = 1, 2, 4 from the largest error at the smallest NFE,
    cut where they leave the range of the data (so that they never stretch the axes)."""
    points = np.array([p for values in series.values() for p in values if p[1] > 0 and np.isfinite(p[1])])
    if len(points) < 2 or points[:, 0].min() == points[:, 0].max():
        return
    nfe_lo, nfe_hi, floor = points[:, 0].min(), points[:, 0].max(), points[:, 1].min()
    anchor = points[points[:, 0] == nfe_lo, 1].max()
    for order in (1, 2, 4):
        nfe_end = min(nfe_hi, nfe_lo * (anchor / floor) ** (1 / order))
        nfe = np.geomspace(nfe_lo, nfe_end, 2)
        guide = anchor * (nfe / nfe_lo) ** (-order)
        ax.plot(nfe, guide, color="0.6", linewidth=0.8, linestyle=(0, (1, 2)), zorder=0)
        ax.annotate(f"order {order}", (nfe[-1], guide[-1]), fontsize=7, color="0.45",
                    xytext=(2, 0), textcoords="offset points", va="center")


@_styled
def plot_time_grids(grids: Mapping[str, torch.Tensor], axes: Sequence[Axes] | None = None,
                    title: str | None = None) -> Figure:
    """Where each schedule puts its grid points, in three coordinates side by side: flow time t,
    noise level ``sigma = (1 - t) / t`` (log scale) and log-SNR ``lambda = 2 log(t / (1 - t))``.

    ``grids`` maps a name to a grid ``(n + 1,)`` from t = 0 to 1. The end points t = 0 and t = 1
    sit at infinity in sigma and log-SNR and are left out of those two panels.
    """
    if not grids:
        raise ValueError("grids is empty: nothing to plot")
    if axes is None:
        figure, grid = new_figure(1, 3, width=11, height=0.5 + 0.42 * len(grids))
        axes = list(grid[0])
    figure = axes[0].figure
    names = list(grids)
    for row, name in enumerate(names):
        t = torch.as_tensor(grids[name], dtype=torch.float64)
        inner = t[(t > 0) & (t < 1)]
        coordinates = (t, (1 - inner) / inner, 2 * (torch.log(inner) - torch.log1p(-inner)))
        line, marker = STYLE["schedule_styles"].get(name, ("-", "o"))
        for ax, values in zip(axes, coordinates):
            values = values.numpy()
            ax.plot(values, np.full_like(values, row), marker="|", markersize=11, linestyle="none",
                    markeredgewidth=1.3, color=f"C{row}")
    labels = ("flow time t   (0 = noise, 1 = data)", "noise level sigma = (1 - t) / t   (log scale)",
              "log-SNR lambda = 2 log(t / (1 - t))")
    for ax, label in zip(axes, labels):
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names))
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_xlabel(label)
        ax.grid(True, axis="x")
        ax.grid(False, axis="y")
    axes[1].set_xscale("log")
    axes[1].invert_xaxis()  # high noise on the left in every panel
    if title:
        figure.suptitle(title)
    return figure


@_styled
def animate_flow(path, out_file: str | Path, interval: int = 80, ts=None, n: int = 1500,
                 lim: float | None = None, dpi: int = 90,
                 title: str = "samples flowing from noise (t = 0) to data (t = 1)") -> Path:
    """Write an animated GIF of the points of ``path`` ``(T, B, 2)`` moving along their
    trajectories, one frame per time point, looping; returns ``out_file``.

    A GIF (Pillow, no ffmpeg) plays in any browser offline: matplotlib's JavaScript player
    (``to_jshtml``) takes its button icons from a web font on a CDN, so offline its buttons are
    empty boxes. ``interval`` is the delay between frames in milliseconds; ``ts`` ``(T,)``, the
    grid of the path, labels the frames (evenly spaced times if None)."""
    path = _as_numpy("path", path, ndim=3)[:, _subsample(path.shape[1], n)]
    figure, axes = new_figure(width=4.2, height=4.4)
    ax = axes[0, 0]
    points = ax.scatter(path[0, :, 0], path[0, :, 1], s=3, color=STYLE["data_color"], alpha=0.6,
                        linewidths=0)
    _square(ax, _auto_lim(path) if lim is None else lim)
    ax.set_title(title, fontsize=8)
    label = ax.text(0.03, 0.95, "", transform=ax.transAxes, va="top")
    times = np.linspace(0, 1, path.shape[0]) if ts is None else _as_numpy("ts", ts, last_dim=None, ndim=1)
    if len(times) != path.shape[0]:
        raise ValueError(f"ts must have one time per frame ({path.shape[0]}), got {len(times)}")

    def show_frame(index: int):
        points.set_offsets(path[index])
        label.set_text(f"t = {times[index]:.3f}")
        return points, label

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    animation = FuncAnimation(figure, show_frame, frames=path.shape[0], interval=interval, blit=False)
    animation.save(out_file, writer=PillowWriter(fps=1000.0 / interval), dpi=dpi)
    return out_file


def save(figure: Figure, path: str | Path, dpi: int | None = None, close: bool = False) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix, e.g. ``.png``), creating folders.
    Returns the path."""
    if not isinstance(figure, Figure):
        raise TypeError(f"figure must be a matplotlib Figure, got {type(figure).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi or STYLE["dpi"], bbox_inches="tight", facecolor="white")
    if close:
        figure.clear()
    return path
