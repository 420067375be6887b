"""ROI import from every format, neuropil annuli, the sparse weight matrix, and auto-detection."""

from __future__ import annotations

import numpy as np
import pytest
import roifile
import tifffile
from scipy import ndimage

from acquisition.registration import Registrar
from acquisition.rois import (
    RoiFileError,
    RoiSet,
    border_for_shifts,
    build_weights,
    detect_rois,
    detect_rois_registered,
    load_imagej,
    load_labels,
    load_rois,
    load_suite2p,
    neuropil_pixels,
)
from acquisition.sources.synthetic import make_movie

SHAPE = (64, 80)


def _disk(cy: int, cx: int, r: float, shape=SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _write_suite2p(folder, cells):
    stat = []
    for ys, xs, lam, overlap in cells:
        stat.append({"ypix": ys, "xpix": xs, "lam": lam, "overlap": overlap, "med": [0, 0]})
    np.save(folder / "stat.npy", np.array(stat, dtype=object), allow_pickle=True)


def test_suite2p_stat_and_iscell(tmp_path):
    d1, d2, d3 = _disk(10, 10, 3), _disk(30, 40, 4), _disk(50, 60, 3)
    cells = []
    for d in (d1, d2, d3):
        ys, xs = np.nonzero(d)
        lam = np.linspace(1, 2, ys.size).astype(np.float32)
        overlap = np.zeros(ys.size, bool)
        cells.append((ys, xs, lam, overlap))
    cells[1][3][:5] = True  # five pixels of ROI 1 shared with another ROI
    _write_suite2p(tmp_path, cells)
    np.save(tmp_path / "iscell.npy", np.array([[1, 0.9], [1, 0.8], [0, 0.2]]))
    rs = load_suite2p(tmp_path / "stat.npy", SHAPE)
    assert len(rs) == 2 and rs.names == ["suite2p:0", "suite2p:1"]
    assert rs.pixels[0].size == d1.sum()
    assert rs.pixels[1].size == d2.sum() - 5  # overlap dropped, as suite2p does for F
    np.testing.assert_allclose(rs.centroids()[0], (10, 10), atol=0.5)
    assert rs.weights[0].max() == pytest.approx(2.0)
    # every ROI when asked, and the same through load_rois with the folder
    assert len(load_suite2p(tmp_path / "stat.npy", SHAPE, only_cells=False)) == 3
    assert len(load_rois(tmp_path, SHAPE)) == 2


def test_suite2p_errors_name_the_file(tmp_path):
    ys, xs = np.nonzero(_disk(10, 10, 3))
    _write_suite2p(tmp_path, [(ys, xs + 100, np.ones(ys.size), np.zeros(ys.size, bool))])
    with pytest.raises(RoiFileError, match=r"stat\.npy: ROI 0 has pixels outside"):
        load_suite2p(tmp_path / "stat.npy", SHAPE)
    np.save(tmp_path / "iscell.npy", np.ones((4, 2)))
    with pytest.raises(RoiFileError, match=r"iscell\.npy: 4 rows but .* 1 ROIs"):
        load_suite2p(tmp_path / "stat.npy", SHAPE, iscell_path=tmp_path / "iscell.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(RoiFileError, match=r"bad\.npy: cannot read"):
        load_suite2p(tmp_path / "bad.npy", SHAPE)


def test_imagej_zip_polygon_rect_oval(tmp_path):
    poly = roifile.ImagejRoi.frompoints(
        np.array([[10, 10], [30, 10], [30, 20], [10, 20]], np.float32), name="poly"
    )
    rect = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, left=40, top=30, right=50, bottom=36, name="rect"
    )
    oval = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.OVAL, left=50, top=40, right=70, bottom=60, name="oval"
    )
    path = tmp_path / "RoiSet.zip"
    roifile.roiwrite(path, [poly, rect, oval])
    rs = load_imagej(path, SHAPE)
    assert rs.names == ["poly", "rect", "oval"]
    lab = rs.label_image()
    # rect: columns 40..49, rows 30..35 exactly (ImageJ coordinates are pixel corners)
    assert (lab == 2).sum() == 10 * 6
    ys, xs = np.nonzero(lab == 2)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (30, 35, 40, 49)
    # polygon 20 x 10 px
    assert abs((lab == 1).sum() - 200) <= 30
    # oval of diameter 20: area ~ pi * 100
    assert abs((lab == 3).sum() - np.pi * 100) < 25
    np.testing.assert_allclose(rs.centroids()[2], (49.5, 59.5), atol=0.6)
    # a single .roi file, through load_rois' format guess
    rect.tofile(tmp_path / "one.roi")
    assert len(load_rois(tmp_path / "one.roi", SHAPE)) == 1


def test_imagej_errors(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"PK broken")
    with pytest.raises(RoiFileError, match=r"x\.zip: not an ImageJ ROI"):
        load_imagej(tmp_path / "x.zip", SHAPE)
    outside = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, left=200, top=200, right=210, bottom=210, name="far"
    )
    roifile.roiwrite(tmp_path / "far.zip", [outside])
    with pytest.raises(RoiFileError, match="'far' covers no pixel"):
        load_imagej(tmp_path / "far.zip", SHAPE)


def test_label_images_npy_and_tif(tmp_path):
    lab = np.zeros(SHAPE, np.int32)
    lab[_disk(10, 10, 3)] = 4
    lab[_disk(40, 50, 5)] = 9
    np.save(tmp_path / "labels.npy", lab)
    tifffile.imwrite(tmp_path / "labels.tif", lab.astype(np.uint16))
    for name in ("labels.npy", "labels.tif"):
        rs = load_labels(tmp_path / name, SHAPE)
        assert rs.names == ["4", "9"]
        assert rs.pixels[1].size == _disk(40, 50, 5).sum()
        np.testing.assert_array_equal(rs.label_image() > 0, lab > 0)
    with pytest.raises(RoiFileError, match=r"labels\.npy: label image is \(64, 80\)"):
        load_labels(tmp_path / "labels.npy", (64, 64))
    np.save(tmp_path / "float.npy", lab.astype(np.float32))
    with pytest.raises(RoiFileError, match="integer"):
        load_labels(tmp_path / "float.npy")
    with pytest.raises(RoiFileError, match="cannot tell the ROI format"):
        load_rois(tmp_path / "rois.txt", SHAPE)


def test_neuropil_annuli_exclude_every_cell():
    lab = np.zeros((100, 100), np.int32)
    centres = [(30, 30), (30, 42), (60, 60), (75, 30)]  # first two are neighbours
    for k, (cy, cx) in enumerate(centres):
        lab[_disk(cy, cx, 4, (100, 100))] = k + 1
    rs = RoiSet.from_labels(lab)
    neu = neuropil_pixels(rs, inner_radius_px=2.0, min_pixels=200)
    dist = ndimage.distance_transform_edt(lab == 0)
    for k, p in enumerate(neu):
        assert p.size == 200
        assert np.all(dist.ravel()[p] > 2.0)  # outside every cell and its 2-px gap
        own = ndimage.distance_transform_edt(lab != k + 1).ravel()[p]
        assert own.max() < 15  # an annulus around its own cell, not far away
    # the neighbour's annulus skips the first cell's body
    assert not np.intersect1d(neu[1], rs.pixels[0]).size


def test_weight_matrix_gives_cell_and_neuropil_means():
    lab = np.zeros((50, 60), np.int32)
    lab[_disk(20, 20, 4, (50, 60))] = 1
    lab[_disk(30, 40, 3, (50, 60))] = 2
    rs = RoiSet.from_labels(lab)
    rs.weights[1] = np.linspace(1, 3, rs.pixels[1].size).astype(np.float32)
    neu = neuropil_pixels(rs, min_pixels=100)
    w = build_weights(rs, neu)
    assert w.shape == (4, 50 * 60)
    rng = np.random.default_rng(0)
    frame = rng.uniform(0, 100, (50, 60)).astype(np.float32)
    out = w @ frame.ravel()
    flat = frame.ravel()
    assert out[0] == pytest.approx(flat[rs.pixels[0]].mean(), rel=1e-5)
    ww = rs.weights[1] / rs.weights[1].sum()
    assert out[1] == pytest.approx(float(flat[rs.pixels[1]] @ ww), rel=1e-5)
    assert out[2] == pytest.approx(flat[neu[0]].mean(), rel=1e-5)
    assert out[3] == pytest.approx(flat[neu[1]].mean(), rel=1e-5)


def test_roiset_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        RoiSet((10, 10), [np.array([5, 100])], [np.ones(2, np.float32)])
    with pytest.raises(ValueError, match="2 pixels but 3 weights"):
        RoiSet((10, 10), [np.array([1, 2])], [np.ones(3, np.float32)])


def test_auto_detection_finds_active_cells():
    m = make_movie(300, size_px=128, n_cells=30, max_shift_px=0.0, seed=7)
    rs = detect_rois(np, m.frames, cell_radius_px=5.0)
    assert len(rs) >= 5
    truth = m.masks
    # detected ROIs sit on true cells
    on_cell = [np.mean(truth.ravel()[p] > 0) for p in rs.pixels]
    assert np.median(on_cell) > 0.8
    # and most strongly active cells are found
    active = np.flatnonzero(m.dff_true.std(0) > 0.2) + 1
    found = {int(np.bincount(truth.ravel()[p]).argmax()) for p in rs.pixels}
    assert len(active) > 0
    assert np.mean([a in found for a in active]) >= 0.7


@pytest.mark.parametrize("seed", [2, 3])
def test_auto_detection_on_a_moving_movie_skips_the_wrapped_border(seed: int) -> None:
    # Registration wraps pixels within max |shift| of the border around: before the border was
    # ignored, half the ROIs found here were fragments along the edges, and cells came with a
    # wide skirt of neuropil.
    m = make_movie(300, size_px=128, n_cells=30, max_shift_px=8.0, seed=seed)
    reg = Registrar(np, (128, 128))
    reg.fit_reference(m.frames)
    res = reg.register(m.frames)
    border = border_for_shifts(res.shifts_px)
    assert border >= 8
    rs = detect_rois_registered(np, res, cell_radius_px=5.0)
    assert len(rs) >= 8
    truth = m.masks.ravel()
    for p in rs.pixels:
        y, x = np.divmod(p, 128)
        assert y.min() >= border and x.min() >= border
        assert y.max() < 128 - border and x.max() < 128 - border
    on_cell = np.array([np.mean(truth[p] > 0) for p in rs.pixels])
    assert np.mean(on_cell >= 0.5) >= 0.9
    assert np.median(on_cell) >= 0.85
    # strongly active cells away from the border are found
    inner = np.zeros((128, 128), bool)
    inner[border + 6 : -border - 6, border + 6 : -border - 6] = True
    active = [
        k + 1
        for k in np.flatnonzero(m.dff_true.std(0) > 0.2)
        if inner.ravel()[truth == k + 1].all()
    ]
    found = {int(np.bincount(truth[p]).argmax()) for p in rs.pixels}
    assert len(active) >= 3
    assert np.mean([a in found for a in active]) >= 0.8


def test_detection_border_must_leave_part_of_the_frame() -> None:
    frames = np.random.default_rng(0).normal(size=(20, 32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="border_px=16 leaves nothing"):
        detect_rois(np, frames, border_px=16)
