"""Tests of anode.plotting: real properties of the drawn artists, shape validation, files written."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")


import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.collections import LineCollection, PathCollection, QuadMesh
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver
from PIL import Image

from anode import plotting as P
from anode.plotting import (
    LABEL_COLORS,
    METHOD_COLORS,
    feature_evolution_gif,
    figure_to_png_bytes,
    method_color,
    method_colors,
    plot_accuracy_vs_nfe,
    plot_feature_evolution,
    plot_histories,
    plot_input_space_map,
    plot_nfe_vs_loss,
    plot_trajectories,
    plot_trajectories_1d,
    plot_trajectories_2d,
    plot_trajectories_3d,
    plot_vector_field_1d,
    save_figure,
    save_gif,
    trajectory_gif,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figs():
    """Collect figures made by a test and drop them afterwards (they never touch pyplot)."""
    made: list[Figure] = []
    yield made
    for f in made:
        f.clear()


def _keep(figs, fig):
    assert isinstance(fig, Figure)
    figs.append(fig)
    return fig


def _legend_texts(ax):
    leg = ax.get_legend()
    assert leg is not None
    return [t.get_text() for t in leg.get_texts()]


def test_package_does_not_use_pyplot():
    import importlib
    import re

    for mod in ("style", "histories", "flows", "maps", "animation", "export"):
        src = importlib.import_module(f"anode.plotting.{mod}").__file__
        with open(src, encoding="utf-8") as fh:
            text = fh.read()
        assert not re.search(r"import\s+matplotlib\.pyplot|from\s+matplotlib\s+import\s+pyplot|plt\.", text), mod


# --- palette -------------------------------------------------------------------------------------


def test_method_colors_fixed_by_label_prefix():
    assert method_color("NODE") == METHOD_COLORS["NODE"]
    assert method_color("ANODE (p=1)") == METHOD_COLORS["ANODE"]
    assert method_color("anode p=5") == METHOD_COLORS["ANODE"]
    assert method_color("ResNet") == METHOD_COLORS["ResNet"]
    assert method_color("NODEX") not in METHOD_COLORS.values()
    cols = method_colors(["foo", "NODE", "bar", "ANODE (p=2)"])
    assert cols["NODE"] == METHOD_COLORS["NODE"] and cols["ANODE (p=2)"] == METHOD_COLORS["ANODE"]
    assert cols["foo"] != cols["bar"]
    assert {cols["foo"], cols["bar"]}.isdisjoint(METHOD_COLORS.values())


# --- histories -------------------------------------------------------------------------------------


def test_plot_histories_mean_band_legend(figs):
    rng = np.random.default_rng(0)
    node = [rng.normal(size=12), rng.normal(size=10), torch.randn(11, requires_grad=True)]
    anode = np.abs(rng.normal(size=(4, 8)))
    fig = _keep(figs, plot_histories({"NODE": node, "ANODE (p=1)": anode}, title="loss"))
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert len(ax.lines) == 2 and len(ax.collections) == 2

    stack = np.stack([node[0][:10], node[1][:10], node[2].detach().numpy()[:10]])
    mean, std = stack.mean(0), stack.std(0)
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), np.arange(10))
    np.testing.assert_allclose(line.get_ydata(), mean, rtol=1e-6)
    assert to_hex(line.get_color()) == METHOD_COLORS["NODE"]
    verts = np.concatenate([p.vertices for p in ax.collections[0].get_paths()])
    for k in range(10):  # band at x=k spans exactly mean -+ std
        ys = verts[np.isclose(verts[:, 0], k), 1]
        np.testing.assert_allclose([ys.min(), ys.max()], [mean[k] - std[k], mean[k] + std[k]], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), anode.mean(0))
    assert to_hex(ax.lines[1].get_color()) == METHOD_COLORS["ANODE"]
    assert _legend_texts(ax) == ["NODE", "ANODE (p=1)"]
    assert ax.get_title() == "loss" and ax.get_ylabel() == "Loss" and ax.get_xlabel() == "Iteration"


def test_plot_histories_single_repeat_no_band_log_and_ax(figs):
    base = _keep(figs, Figure())
    ax = base.add_subplot()
    fig = plot_histories({"ResNet": [[3.0, 2.0, 1.0]], "other": [1.0, 0.5]}, log_y=True, ylabel="NFE", ax=ax)
    assert fig is base
    assert len(ax.lines) == 2 and len(ax.collections) == 0
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1.0, 0.5])  # flat list = one curve
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "NFE"


@pytest.mark.parametrize(
    "bad, match",
    [
        ({}, "histories"),
        ({"a": []}, r"histories\['a'\]"),
        ({"a": [np.ones((2, 2))]}, r"histories\['a'\]\[0\].*shape \(2, 2\)"),
        ({"a": [np.ones(3), np.ones(0)]}, r"histories\['a'\]\[1\].*shape \(0,\)"),
        ({"a": np.ones((2, 2, 2))}, r"shape \(2, 2, 2\)"),
    ],
)
def test_plot_histories_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        plot_histories(bad)


def test_plot_nfe_vs_loss_and_accuracy(figs):
    pts = {"NODE": ([10, 20, 30], [0.3, 0.2, 0.1]), "ANODE": (torch.tensor([5.0, 6.0]), np.array([0.1, 0.05]))}
    fig = _keep(figs, plot_nfe_vs_loss(pts))
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and all(isinstance(c, PathCollection) for c in ax.collections)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[10, 0.3], [20, 0.2], [30, 0.1]])
    np.testing.assert_allclose(ax.collections[1].get_offsets(), [[5, 0.1], [6, 0.05]])
    assert to_hex(ax.collections[0].get_facecolor()[0]) == METHOD_COLORS["NODE"]
    assert _legend_texts(ax) == ["NODE", "ANODE"]
    assert ax.get_xlabel() == "NFE" and ax.get_ylabel() == "Loss"

    fig2 = _keep(figs, plot_accuracy_vs_nfe({"ResNet": ([1, 2], [0.9, 0.95])}))
    ax2 = fig2.axes[0]
    np.testing.assert_allclose(ax2.collections[0].get_offsets(), [[1, 0.9], [2, 0.95]])
    assert ax2.get_ylabel() == "Accuracy" and ax2.get_xlabel() == "NFE"

    with pytest.raises(ValueError, match=r"points\['NODE'\].*\(3,\) and \(2,\)"):
        plot_nfe_vs_loss({"NODE": ([1, 2, 3], [1, 2])})
    with pytest.raises(ValueError, match=r"points\['x'\].*pair"):
        plot_accuracy_vs_nfe({"x": ([1, 2],)})
    with pytest.raises(ValueError, match="points"):
        plot_nfe_vs_loss({})


# --- trajectories ----------------------------------------------------------------------------------


def test_plot_trajectories_1d(figs):
    t = np.linspace(0, 1, 7)
    traj = np.stack([np.sin(t + k) for k in range(4)], axis=1)  # [7, 4]
    labels = np.array([-1, 1, 1, -1])
    fig = _keep(figs, plot_trajectories_1d(t, traj[:, :, None], labels=labels))
    ax = fig.axes[0]
    (lc,) = ax.collections
    assert isinstance(lc, LineCollection)
    segs = lc.get_segments()
    assert len(segs) == 4
    for k in range(4):
        np.testing.assert_allclose(segs[k], np.stack([t, traj[:, k]], axis=1))
    cols = [to_hex(c) for c in lc.get_colors()]
    assert cols == [LABEL_COLORS[0], LABEL_COLORS[1], LABEL_COLORS[1], LABEL_COLORS[0]]
    assert _legend_texts(ax) == ["y = -1", "y = 1"]
    assert ax.get_xlim()[0] <= 0 and ax.get_xlim()[1] >= 1
    # tensors accepted
    _keep(figs, plot_trajectories_1d(torch.tensor(t), torch.tensor(traj)))

    with pytest.raises(ValueError, match=r"times must have shape \[7\].*\(6,\)"):
        plot_trajectories_1d(t[:6], traj)
    with pytest.raises(ValueError, match=r"trajectories must have shape \[T, N\] or \[T, N, 1\].*\(7, 4, 2\)"):
        plot_trajectories_1d(t, np.zeros((7, 4, 2)))
    with pytest.raises(ValueError, match=r"labels must have shape \[4\].*\(3,\)"):
        plot_trajectories_1d(t, traj, labels=[1, 1, -1])


def test_plot_trajectories_2d(figs):
    rng = np.random.default_rng(1)
    traj = rng.normal(size=(5, 6, 2)).cumsum(0)
    fig = _keep(figs, plot_trajectories_2d(traj, labels=[0, 1, 0, 1, 0, 1], title="flow"))
    ax = fig.axes[0]
    lcs = [c for c in ax.collections if isinstance(c, LineCollection)]
    scs = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(lcs) == 1 and len(scs) == 2
    segs = lcs[0].get_segments()
    assert len(segs) == 6
    np.testing.assert_allclose(segs[2], traj[:, 2])
    np.testing.assert_allclose(scs[0].get_offsets(), traj[0])  # start points
    np.testing.assert_allclose(scs[1].get_offsets(), traj[-1])  # end points
    assert ax.get_title() == "flow"
    with pytest.raises(ValueError, match=r"trajectories must have shape \[T, N, 2\].*\(5, 6, 3\)"):
        plot_trajectories_2d(np.zeros((5, 6, 3)))


def test_plot_trajectories_3d(figs):
    traj = np.random.default_rng(2).normal(size=(4, 3, 3))
    fig = _keep(figs, plot_trajectories_3d(traj, labels=[1, -1, 1], elev=20, azim=30))
    ax = fig.axes[0]
    assert ax.name == "3d"
    lcs = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lcs) == 1 and len(lcs[0]._segments3d) == 3
    np.testing.assert_allclose(np.asarray(lcs[0]._segments3d[1]), traj[:, 1])
    assert len(ax.collections) == 3
    figure_to_png_bytes(fig, dpi=30)  # renders without error
    with pytest.raises(ValueError, match=r"\[T, N, 3\].*\(4, 3, 2\)"):
        plot_trajectories_3d(np.zeros((4, 3, 2)))
    flat = _keep(figs, Figure()).add_subplot()
    with pytest.raises(ValueError, match="3-D axes"):
        plot_trajectories_3d(traj, ax=flat)


def test_plot_trajectories_dispatch(figs):
    t = np.linspace(0, 1, 5)
    f1 = _keep(figs, plot_trajectories(t, np.zeros((5, 3))))
    assert f1.axes[0].get_ylabel() == "h(t)"
    f1b = _keep(figs, plot_trajectories(None, np.zeros((5, 3, 1))))
    np.testing.assert_allclose(f1b.axes[0].collections[0].get_segments()[0][:, 0], np.arange(5))
    f2 = _keep(figs, plot_trajectories(t, np.zeros((5, 3, 2))))
    assert f2.axes[0].name != "3d" and f2.axes[0].get_ylabel() == "h2"
    f3 = _keep(figs, plot_trajectories(t, np.zeros((5, 3, 3))))
    assert f3.axes[0].name == "3d"
    with pytest.raises(ValueError, match="project"):
        plot_trajectories(t, np.zeros((5, 3, 4)))
    with pytest.raises(ValueError, match=r"trajectories must have shape.*\(5,\)"):
        plot_trajectories(t, np.zeros(5))


# --- feature evolution -----------------------------------------------------------------------------


def test_plot_feature_evolution_grid(figs):
    rng = np.random.default_rng(3)
    snaps = [rng.normal(size=(8, 2)) for _ in range(5)]
    labels = np.array([-1, 1] * 4)
    fig = _keep(figs, plot_feature_evolution(snaps, labels=labels, titles=[f"it {i}" for i in range(5)], ncols=3))
    assert len(fig.axes) == 5
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    for ax, s in zip(fig.axes, snaps):
        (sc,) = ax.collections
        np.testing.assert_allclose(sc.get_offsets(), s)
    assert [ax.get_title() for ax in fig.axes] == [f"it {i}" for i in range(5)]
    fc = [to_hex(c) for c in fig.axes[0].collections[0].get_facecolors()]
    assert fc[:2] == [LABEL_COLORS[0], LABEL_COLORS[1]]


def test_plot_feature_evolution_1d_and_3d(figs):
    f1 = _keep(figs, plot_feature_evolution([np.arange(4.0)[:, None], torch.arange(4.0)]))
    assert len(f1.axes) == 2
    np.testing.assert_allclose(f1.axes[1].collections[0].get_offsets(), np.stack([np.arange(4.0), np.zeros(4)], 1))
    f3 = _keep(figs, plot_feature_evolution([np.zeros((5, 3))] * 2, ncols=4))
    assert len(f3.axes) == 2 and all(a.name == "3d" for a in f3.axes)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(snapshots=[]), "snapshots"),
        (dict(snapshots=[np.zeros((4, 2)), np.zeros((4, 5))]), r"snapshots\[1\].*\(4, 5\)"),
        (dict(snapshots=[np.zeros((4, 2))], titles=["a", "b"]), "titles"),
        (dict(snapshots=[np.zeros((4, 2))], labels=[1, 2, 3]), r"labels must have shape \[4\]"),
        (dict(snapshots=[np.zeros((4, 2))], ncols=0), "ncols"),
    ],
)
def test_plot_feature_evolution_bad(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_feature_evolution(**kwargs)


# --- vector field ----------------------------------------------------------------------------------


def test_plot_vector_field_1d(figs):
    times = np.linspace(0, 1, 4)
    states = np.linspace(-2, 2, 5)
    vel = -np.outer(np.ones(4), states)  # f(h, t) = -h
    tt = np.linspace(0, 1, 9)
    traj = np.stack([np.exp(-tt) * h0 for h0 in (-1.5, 1.5)], axis=1)
    fig = _keep(figs, plot_vector_field_1d(times, states, vel, trajectories=traj, traj_times=tt, labels=[-1, 1]))
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # plus colour bar
    (q,) = [c for c in ax.collections if isinstance(c, Quiver)]
    assert q.N == 20
    T, H = np.meshgrid(times, states, indexing="ij")
    np.testing.assert_allclose(q.get_offsets(), np.stack([T.ravel(), H.ravel()], 1))
    # arrows point along the slope: sign of V is the sign of the velocity, U always forward in t
    assert np.all(q.U > 0)
    np.testing.assert_array_equal(np.sign(q.V), np.sign(vel.ravel()))
    (lc,) = [c for c in ax.collections if isinstance(c, LineCollection) and not isinstance(c, Quiver)]
    assert len(lc.get_segments()) == 2
    np.testing.assert_allclose(lc.get_segments()[1], np.stack([tt, traj[:, 1]], 1))

    f2 = _keep(figs, plot_vector_field_1d(times, states, vel, trajectories=traj))  # default traj_times
    lc2 = [c for c in f2.axes[0].collections if isinstance(c, LineCollection)][-1]
    np.testing.assert_allclose(lc2.get_segments()[0][:, 0], np.linspace(0, 1, 9))

    with pytest.raises(ValueError, match=r"velocities must have shape \[nt, nx\] = \[4, 5\].*\(5, 4\)"):
        plot_vector_field_1d(times, states, vel.T)
    with pytest.raises(ValueError, match=r"traj_times must have shape \[9\].*\(4,\)"):
        plot_vector_field_1d(times, states, vel, trajectories=traj, traj_times=times)
    with pytest.raises(ValueError, match=r"states must have shape \[nx\].*\(5, 1\)"):
        plot_vector_field_1d(times, states[:, None], vel)


# --- input space map -------------------------------------------------------------------------------


def test_input_space_map_orientation(figs):
    xs = np.linspace(-2.0, 2.0, 5)
    ys = np.linspace(-1.0, 3.0, 4)
    X, Y = np.meshgrid(xs, ys)  # values[i, j] at (xs[j], ys[i])
    values = X + 10 * Y  # increases to the right with x and upward with y
    fig = _keep(figs, plot_input_space_map(xs, ys, values, vmin=-30, vmax=30))
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    coords = mesh.get_coordinates()  # [ny+1, nx+1, 2] cell corners
    arr = np.asarray(mesh.get_array()).reshape(len(ys), len(xs))
    centres = (coords[:-1, :-1] + coords[1:, 1:]) / 2  # [ny, nx, 2]
    # every drawn cell shows the value of the input at its centre: x + 10 y
    np.testing.assert_allclose(arr, centres[..., 0] + 10 * centres[..., 1])
    # x grows to the right along a row and y grows upward along a column, as drawn
    assert np.all(np.diff(centres[..., 0], axis=1) > 0) and np.all(np.diff(centres[..., 1], axis=0) > 0)
    left_col = arr[:, np.argmin(centres[0, :, 0])]
    bottom_row = arr[np.argmin(centres[:, 0, 1]), :]
    np.testing.assert_allclose(left_col, xs[0] + 10 * ys)  # left column holds the smallest x
    np.testing.assert_allclose(bottom_row, xs + 10 * ys[0])  # bottom row holds the smallest y
    assert not ax.xaxis_inverted() and not ax.yaxis_inverted()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert x0 < x1 and y0 < y1 and x0 <= xs[0] and x1 >= xs[-1] and y0 <= ys[0] and y1 >= ys[-1]
    # rendered pixels: top-left of the image is the (small x, large y) corner -> value 28 (red end),
    # bottom-left is (small x, small y) -> value -12 (blue side)
    assert mesh.norm.vmin == -30 and mesh.norm.vmax == 30


def test_input_space_map_points_colorbar_and_errors(figs):
    xs = np.linspace(-1, 1, 6)
    ys = np.linspace(-1, 1, 3)
    vals = torch.zeros(3, 6, 1)
    pts = np.array([[0.0, 0.0], [0.5, -0.5]])
    fig = _keep(figs, plot_input_space_map(xs, ys, vals, points=pts, point_labels=[-1, 1], title="g(x)"))
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # map + colour bar
    (sc,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(sc.get_offsets(), pts)
    np.testing.assert_allclose(np.asarray(sc.get_array()), [-1, 1])
    assert ax.get_title() == "g(x)"
    nobar = _keep(figs, plot_input_space_map(xs, ys, vals, colorbar=False))
    assert len(nobar.axes) == 1

    with pytest.raises(ValueError, match=r"values must have shape \[len\(ys\), len\(xs\)\] = \[3, 6\].*\(6, 3\)"):
        plot_input_space_map(xs, ys, np.zeros((6, 3)))
    with pytest.raises(ValueError, match="xs must be non-empty and strictly increasing"):
        plot_input_space_map(xs[::-1], ys, np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"points must have shape \[M, 2\].*\(2, 3\)"):
        plot_input_space_map(xs, ys, np.zeros((3, 6)), points=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"point_labels must have shape \[2\]"):
        plot_input_space_map(xs, ys, np.zeros((3, 6)), points=pts, point_labels=[1, 1, 1])


def test_input_space_map_rendered_pixels(figs):
    """Orientation in the rendered raster: left/right and bottom/top colours match x and y."""
    xs = np.linspace(0, 1, 2)
    ys = np.linspace(0, 1, 2)
    X, Y = np.meshgrid(xs, ys)
    values = np.where(X > 0.5, 1.0, -1.0) * np.where(Y > 0.5, 1.0, 0.2)  # top-right strongly red
    fig = _keep(figs, plot_input_space_map(xs, ys, values, colorbar=False))
    ax = fig.axes[0]
    ax.set_axis_off()
    fig.set_layout_engine(None)
    ax.set_position([0, 0, 1, 1])
    png = figure_to_png_bytes(fig, dpi=20, tight=False)
    import io

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)  # row 0 = top
    h, w, _ = img.shape
    cmap = colormaps["RdBu_r"]
    expected = {  # (row, col) in the raster -> value of the cell drawn there
        (h // 4, w - 1 - w // 4): values[1, 1],  # top right: large x, large y
        (h // 4, w // 4): values[1, 0],  # top left: small x, large y
        (h - 1 - h // 4, w // 4): values[0, 0],  # bottom left: small x, small y
        (h - 1 - h // 4, w - 1 - w // 4): values[0, 1],  # bottom right: large x, small y
    }
    for (r, c), v in expected.items():
        rgb = np.array(cmap((v + 1) / 2)[:3]) * 255
        np.testing.assert_allclose(img[r, c], rgb, atol=3, err_msg=f"pixel {(r, c)} should show {v}")


# --- files -----------------------------------------------------------------------------------------


def test_save_figure_and_png_bytes(tmp_path, figs):
    fig = _keep(figs, plot_histories({"NODE": [[1.0, 0.5, 0.2]]}))
    out = save_figure(fig, tmp_path / "a" / "b" / "loss.png", dpi=50)
    assert out == tmp_path / "a" / "b" / "loss.png" and out.stat().st_size > 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    out2 = save_figure(fig, str(tmp_path / "noext"))
    assert out2.suffix == ".png" and out2.exists()
    data = figure_to_png_bytes(fig, dpi=40)
    assert isinstance(data, bytes) and data.startswith(PNG_SIGNATURE)
    with pytest.raises(TypeError):
        save_figure("not a figure", tmp_path / "x.png")


def test_save_gif_frames(tmp_path):
    def draw(ax, i):
        ax.plot([0, 1], [0, i])
        ax.set_ylim(0, 5)

    out = save_gif(draw, 5, tmp_path / "sub" / "anim.gif", fps=5, figsize=(2, 2), dpi=30)
    assert out.exists() and out.stat().st_size > 0
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 5
    with pytest.raises(ValueError, match="num_frames"):
        save_gif(draw, 0, tmp_path / "x.gif")
    with pytest.raises(ValueError, match=r"\.gif"):
        save_gif(draw, 2, tmp_path / "x.png")
    with pytest.raises(TypeError, match="frames_fn"):
        save_gif(None, 2, tmp_path / "x.gif")


def test_trajectory_gif_and_feature_gif(tmp_path):
    t = np.linspace(0, 1, 6)[:, None]
    traj = np.stack([np.concatenate([t, t * k], 1) for k in (1.0, -1.0, 0.5)], axis=1)  # [6, 3, 2]
    out = trajectory_gif(traj, tmp_path / "traj.gif", labels=[1, -1, 1], fps=8)
    with Image.open(out) as im:
        assert im.n_frames == 6
    out2 = trajectory_gif(torch.tensor(traj), tmp_path / "traj2.gif", stride=2)
    with Image.open(out2) as im:
        assert im.n_frames == 4  # indices 0, 2, 4 and the last one 5
    with pytest.raises(ValueError, match=r"\[T, N, 2\].*\(6, 3\)"):
        trajectory_gif(traj[..., 0], tmp_path / "bad.gif")

    snaps = [np.random.default_rng(i).normal(size=(10, 2)) for i in range(3)]
    out3 = feature_evolution_gif(snaps, tmp_path / "feat.gif", labels=[0, 1] * 5, titles=["a", "b", "c"])
    with Image.open(out3) as im:
        assert im.n_frames == 3
    with pytest.raises(ValueError, match=r"snapshots\[1\] must have 2 columns"):
        feature_evolution_gif([np.zeros((4, 2)), np.zeros((4, 3))], tmp_path / "bad.gif")


def test_public_names():
    for name in P.__all__:
        assert hasattr(P, name), name
