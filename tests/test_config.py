"""Config models and `rig config check`: every problem reported with file, field and expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rig.cli import app
from rig.core.config import (
    LeverBoardSim,
    RigConfig,
    ValveCalibration,
    ValvePoint,
    load_rig_config,
)
from rig.core.errors import ConfigError

runner = CliRunner()


def test_shipped_configs_are_valid(repo_root: Path) -> None:
    files = sorted((repo_root / "hardware_configs").glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        cfg = load_rig_config(f)
        assert cfg.name
    sim = load_rig_config(repo_root / "hardware_configs" / "sim.yaml")
    assert isinstance(sim.lever_board, LeverBoardSim)  # discriminated on `driver`
    assert sim.rotarod is not None and sim.rotarod.driver == "sim"
    assert sim.imaging is not None and sim.imaging.source.kind == "synthetic"


def test_valve_calibration_interpolates_both_ways() -> None:
    cal = ValveCalibration(
        points=[ValvePoint(duration_ms=20, volume_ul=2), ValvePoint(duration_ms=40, volume_ul=5)]
    )
    assert cal.ul_to_ms(2.0) == pytest.approx(20.0)
    assert cal.ul_to_ms(1.0) == pytest.approx(10.0)  # through the origin below the first point
    assert cal.ul_to_ms(3.5) == pytest.approx(30.0)
    assert cal.ul_to_ms(6.5) == pytest.approx(50.0)  # extrapolates the last segment
    assert cal.ms_to_ul(cal.ul_to_ms(4.2)) == pytest.approx(4.2)
    with pytest.raises(ValueError, match="volume_ul"):
        cal.ul_to_ms(-1)


def test_lever_calibration_round_trip(repo_root: Path) -> None:
    cfg = load_rig_config(repo_root / "hardware_configs" / "sim.yaml")
    assert cfg.lever_board is not None
    cal = cfg.lever_board.calibration
    assert cal.mm_to_counts(0.0) == cal.rest_counts
    assert cal.counts_to_mm(cal.mm_to_counts(1.5)) == pytest.approx(1.5, abs=1 / cal.counts_per_mm)


BASE = {
    "name": "r",
    "data_dir": "/tmp/x",
    "lever_board": {"driver": "sim"},
    "rotarod": {"driver": "sim"},
    "imaging": {"source": {"kind": "synthetic"}},
}


def _with(path: str, value: object) -> dict:
    """BASE with one dotted path set (value ``...`` deletes the key)."""
    import copy

    d = copy.deepcopy(BASE)
    keys = path.split(".")
    node = d
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is ...:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return d


# (case id, file text, field path expected in the message, words expected in the message)
BROKEN: list[tuple[str, str, str, str]] = [
    ("empty", "", "", "empty"),
    ("whitespace", "   \n\n", "", "empty"),
    ("yaml-syntax", "name: r\ndata_dir: [unclosed\n", "line", "YAML syntax"),
    ("yaml-tab", "name: r\n\tdata_dir: x\n", "line", "YAML syntax"),
    ("top-list", "- a\n- b\n", "", "mapping"),
    ("top-scalar", "42\n", "", "mapping"),
    ("unknown-key", yaml.safe_dump({**BASE, "colour": "red"}), "colour", "unknown field"),
    ("missing-name", yaml.safe_dump(_with("name", ...)), "name", "missing"),
    ("missing-data-dir", yaml.safe_dump(_with("data_dir", ...)), "data_dir", "missing"),
    ("bad-driver", yaml.safe_dump(_with("lever_board.driver", "usb")), "lever_board", "serial"),
    ("no-driver", yaml.safe_dump(_with("lever_board.driver", ...)), "lever_board", "driver"),
    (
        "serial-no-port",
        yaml.safe_dump(_with("lever_board.driver", "serial")),
        "lever_board.serial.port",
        "missing",
    ),
    (
        "counts-wrong-type",
        yaml.safe_dump(_with("lever_board.calibration.counts_per_mm", "forty")),
        "lever_board.sim.calibration.counts_per_mm",
        "number",
    ),
    (
        "counts-zero",
        yaml.safe_dump(_with("lever_board.calibration.counts_per_mm", 0)),
        "counts_per_mm",
        "non-zero",
    ),
    (
        "rest-negative",
        yaml.safe_dump(_with("lever_board.calibration.rest_counts", -3)),
        "rest_counts",
        "greater than or equal to 0",
    ),
    (
        "nested-typo",
        yaml.safe_dump(_with("lever_board.calibration.count_per_mm", 40)),
        "calibration.count_per_mm",
        "unknown field",
    ),
    (
        "valve-not-monotonic",
        yaml.safe_dump(
            _with(
                "lever_board.valve.points",
                [{"duration_ms": 40, "volume_ul": 4}, {"duration_ms": 20, "volume_ul": 2}],
            )
        ),
        "valve.points",
        "increase",
    ),
    (
        "valve-negative-ms",
        yaml.safe_dump(_with("lever_board.valve.points", [{"duration_ms": -5, "volume_ul": 1}])),
        "valve.points[0].duration_ms",
        "greater than 0",
    ),
    (
        "valve-unit-string",
        yaml.safe_dump(_with("lever_board.valve.max_valve_ms", "500 ms")),
        "max_valve_ms",
        "'500 ms'",
    ),
    (
        "max-valve-huge",
        yaml.safe_dump(_with("lever_board.valve.max_valve_ms", 60000)),
        "max_valve_ms",
        "less than or equal",
    ),
    ("tone-kind", yaml.safe_dump(_with("lever_board.tone.kind", "laser")), "tone.kind", "'pin'"),
    ("lanes-6", yaml.safe_dump(_with("rotarod.lanes", 6)), "rotarod.sim.lanes", "less than"),
    (
        "debounce-short",
        yaml.safe_dump(_with("rotarod.fall_debounce_ms", 100)),
        "fall_debounce_ms",
        "500",
    ),
    (
        "source-kind",
        yaml.safe_dump(_with("imaging.source.kind", "webcam")),
        "imaging.source",
        "tiff",
    ),
    ("backend", yaml.safe_dump(_with("imaging.backend", "tpu")), "imaging.backend", "'cupy'"),
    (
        "rois-no-path",
        yaml.safe_dump(_with("imaging.rois", {"kind": "suite2p"})),
        "imaging.rois",
        "needs rois.path",
    ),
    ("fsync-zero", yaml.safe_dump(_with("fsync_interval_s", 0)), "fsync_interval_s", "greater"),
    (
        "baud-text",
        yaml.safe_dump(
            _with("lever_board", {"driver": "serial", "port": "/dev/x", "baud": "fast"})
        ),
        "lever_board.serial.baud",
        "integer",
    ),
]


@pytest.mark.parametrize("case,text,field,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_config_check_reports_each_problem(
    tmp_path: Path, case: str, text: str, field: str, words: str
) -> None:
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    result = runner.invoke(app, ["config", "check", str(f)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines, "no error printed"
    assert "Traceback" not in result.output
    for ln in lines:  # one line per problem, each naming the file
        assert ln.startswith(str(f)), ln
    joined = "\n".join(lines)
    assert field in joined, joined
    assert words in joined, joined


def test_config_check_counts_every_problem(tmp_path: Path) -> None:
    d = _with("lever_board.calibration.counts_per_mm", "x")
    d["rotarod"]["lanes"] = 9
    d["bogus"] = 1
    f = tmp_path / "three.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as ei:
        load_rig_config(f)
    assert len(ei.value.problems) == 3
    result = runner.invoke(app, ["config", "check", str(f)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 3


def test_config_check_ok_and_missing_file(tmp_path: Path, sim_config_path: Path) -> None:
    ok = runner.invoke(app, ["config", "check", str(sim_config_path)])
    assert ok.exit_code == 0 and "OK" in ok.stdout
    missing = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "file not found" in missing.stderr


def test_config_check_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: [\n")
    p = subprocess.run(
        [sys.executable, "-m", "rig", "config", "check", str(f)], capture_output=True, text=True
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and str(f) in p.stderr


def test_data_dir_expands_user() -> None:
    cfg = RigConfig.model_validate({"name": "r", "data_dir": "~/d"})
    assert "~" not in str(cfg.data_dir)
