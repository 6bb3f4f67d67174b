"""Plots: each function returns a figure with the expected axes and artists, draws the data it was
given (checked against known values), and saves a PNG."""
import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver

from flowlab import schedules, viz
from flowlab.data import GaussianMixture
from flowlab.models import MLP

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _line_path(t_points: int = 5, batch: int = 7) -> torch.Tensor:
    """Straight lines from x0 to x1 = x0 + (3, -1): ``(T, B, 2)``."""
    x0 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.linspace(0, 1, t_points, dtype=torch.float64)[:, None, None]
    return x0 + t * torch.tensor([3.0, -1.0], dtype=torch.float64)


def _scatters(ax) -> list[PathCollection]:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_save_writes_png_in_new_folders(tmp_path):
    figure = viz.scatter_density(torch.randn(100, 2))
    path = viz.save(figure, tmp_path / "a" / "b" / "density.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(TypeError, match="figure"):
        viz.save("not a figure", tmp_path / "x.png")


@pytest.mark.parametrize("as_numpy", [False, True])
def test_scatter_density_shades_and_draws_the_points(as_numpy, tmp_path):
    points = torch.randn(500, 2, generator=torch.Generator().manual_seed(1)) + torch.tensor([1.0, -2.0])
    figure = viz.scatter_density(points.numpy() if as_numpy else points, title="data", n_points=300, lim=5)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_title() == "data"
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    (dots,) = _scatters(ax)
    np.testing.assert_allclose(dots.get_offsets(), points[:300].numpy(), rtol=1e-6)
    assert ax.get_xlim() == (-5, 5) and ax.get_xlabel() == "$x_1$"
    viz.save(figure, tmp_path / "density.png")


def test_scatter_density_draws_into_a_given_axes():
    figure, axes = viz.new_figure(1, 2)
    returned = viz.scatter_density(torch.zeros(10, 2), ax=axes[0, 1], lim=1)
    assert returned is figure
    assert not axes[0, 0].collections and axes[0, 1].collections


@pytest.mark.parametrize("bad, error", [(torch.randn(10, 3), ValueError), (torch.randn(10), ValueError),
                                        ([[0.0, 1.0]], TypeError)])
def test_scatter_density_rejects_bad_points(bad, error):
    with pytest.raises(error, match="points"):
        viz.scatter_density(bad)


def test_plot_trajectories_draws_lines_from_start_to_end():
    path = _line_path(t_points=5, batch=7)
    figure = viz.plot_trajectories(path, n=4)
    ax = figure.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4
    np.testing.assert_allclose(lines[2].get_xydata(), path[:, 2].numpy())
    start, end = _scatters(ax)
    np.testing.assert_allclose(start.get_offsets(), path[0, :4].numpy())
    np.testing.assert_allclose(end.get_offsets(), path[-1, :4].numpy())
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["start, t = 0 (noise)", "end, t = 1 (data)"]


def test_plot_trajectories_rejects_a_single_time_point():
    with pytest.raises(ValueError, match="path"):
        viz.plot_trajectories(torch.zeros(1, 4, 2))


def test_velocity_on_grid_evaluates_the_velocity_at_the_grid_points():
    gx, gy, vx, vy = viz.velocity_on_grid(lambda x, t: -x * (1 + t[:, None]), t=0.5, lim=2.0, resolution=5)
    assert gx.shape == (5, 5)
    np.testing.assert_allclose(gx[0], np.linspace(-2, 2, 5))
    np.testing.assert_allclose(vx, -1.5 * gx, rtol=1e-6)
    np.testing.assert_allclose(vy, -1.5 * gy, rtol=1e-6)


def test_velocity_on_grid_runs_a_model_on_its_device(device):
    model = MLP(hidden=16, depth=1, time_embedding_dim=8).to(device)
    gx, gy, vx, _ = viz.velocity_on_grid(model, t=0.3, lim=1.0, resolution=3)
    x = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32, device=device)
    with torch.no_grad():
        expected = model(x, 0.3)[:, 0].cpu().numpy().reshape(3, 3)
    np.testing.assert_allclose(vx, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["quiver", "stream"])
def test_plot_vector_field_has_one_panel_per_time(kind, tmp_path):
    mixture = GaussianMixture.ring()
    times = (0.0, 0.5, 1.0)
    figure = viz.plot_vector_field(mixture.velocity, times=times, resolution=7, kind=kind)
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["t = 0 (noise)", "t = 0.5", "t = 1 (data)"]
    assert len(figure.axes) == len(times) + 1                       # and one colour bar
    viz.save(figure, tmp_path / f"field_{kind}.png")


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_vector_field_arrows_show_the_exact_velocity(normalize):
    mixture = GaussianMixture.ring()
    figure = viz.plot_vector_field(mixture.velocity, times=(0.5,), resolution=7, normalize=normalize)
    (arrows,) = [c for c in figure.axes[0].collections if isinstance(c, Quiver)]
    exact = mixture.velocity(torch.tensor(arrows.XY, dtype=torch.float64), 0.5).numpy()
    speed = np.linalg.norm(exact, axis=1)
    np.testing.assert_allclose(arrows.get_array(), speed, rtol=1e-5)          # colour = |v|
    length = speed if normalize else np.ones_like(speed)
    np.testing.assert_allclose(np.stack([arrows.U, arrows.V], 1) * length[:, None], exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("times, kind", [((), "quiver"), ((0.5, 1.5), "quiver"), ((0.5,), "arrows")])
def test_plot_vector_field_rejects_bad_arguments(times, kind):
    with pytest.raises(ValueError, match="times|kind"):
        viz.plot_vector_field(lambda x, t: x, times=times, kind=kind)


def _error_rows():
    return [{"method": method, "schedule": schedule, "nfe": nfe, "error": scale * nfe ** -order}
            for method, order in (("euler", 1), ("rk4", 4))
            for schedule, scale in (("uniform", 1.0), ("cosine", 2.0))
            for nfe in (16, 4, 8)]


def test_plot_error_vs_nfe_draws_one_log_log_line_per_method_and_schedule(tmp_path):
    figure = viz.plot_error_vs_nfe(_error_rows(), show_orders=False, title="errors")
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "NFE" in ax.get_xlabel()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"euler, uniform", "euler, cosine", "rk4, uniform", "rk4, cosine"}
    np.testing.assert_allclose(lines["rk4, cosine"].get_xdata(), [4, 8, 16])     # sorted by NFE
    np.testing.assert_allclose(lines["rk4, cosine"].get_ydata(), [2 * n ** -4.0 for n in (4, 8, 16)])
    viz.save(figure, tmp_path / "errors.png")


def test_plot_error_vs_nfe_adds_order_guides_and_accepts_rows_without_schedule():
    rows = [{"method": "heun", "nfe": n, "error": 1.0 / n ** 2} for n in (2, 4, 8)]
    ax = viz.plot_error_vs_nfe(rows).axes[0]
    assert [line.get_label() for line in ax.get_lines()][0] == "heun"
    assert len(ax.get_lines()) == 1 + 3                                       # orders 1, 2, 4


@pytest.mark.parametrize("rows", [[], [{"method": "euler", "nfe": 4}]])
def test_plot_error_vs_nfe_rejects_bad_rows(rows):
    with pytest.raises(ValueError, match="rows"):
        viz.plot_error_vs_nfe(rows)


def test_plot_time_grids_shows_each_grid_in_three_coordinates(tmp_path):
    grids = {"uniform": schedules.uniform(4), "karras": schedules.karras(4)}
    figure = viz.plot_time_grids(grids)
    t_axis, sigma_axis, logsnr_axis = figure.axes
    np.testing.assert_allclose(t_axis.get_lines()[1].get_xdata(), grids["karras"].numpy())
    inner = grids["uniform"][1:-1]                                         # sigma = inf, 0 left out
    np.testing.assert_allclose(sigma_axis.get_lines()[0].get_xdata(), ((1 - inner) / inner).numpy())
    np.testing.assert_allclose(logsnr_axis.get_lines()[0].get_xdata(), schedules.logsnr_from_t(inner).numpy())
    assert sigma_axis.get_xscale() == "log" and "sigma" in sigma_axis.get_xlabel()
    viz.save(figure, tmp_path / "grids.png")


def test_animate_flow_writes_a_looping_gif_with_one_frame_per_time(tmp_path):
    from PIL import Image

    path = _line_path(t_points=4, batch=20)
    written = viz.animate_flow(path, tmp_path / "sub" / "flow.gif", interval=50, ts=torch.tensor([0.0, 0.2, 0.7, 1.0]))
    assert written == tmp_path / "sub" / "flow.gif"
    with Image.open(written) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 and gif.info.get("loop") == 0
        assert gif.info["duration"] == 50
    with pytest.raises(ValueError, match="ts"):
        viz.animate_flow(path, tmp_path / "bad.gif", ts=torch.tensor([0.0, 1.0]))


def test_moons_lim_shows_the_whole_moons():
    from flowlab.data import toy

    reach = toy.sample("moons", 20000, generator=0).abs().max().item()
    assert reach < viz.MOONS_LIM - 0.25, f"moons reach {reach:.2f}: the view [-{viz.MOONS_LIM}, {viz.MOONS_LIM}] cuts them"
