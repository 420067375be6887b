#!/usr/bin/env bash
# `make gpu-check`: the imaging GPU check (issue 6). Runs on the device machine:
#   1. installs carried wheels from .whl/ (if any) into /tmp/site;
#   2. pytest tests/gpu: CuPy results equal numpy's within float32 tolerance on fresh inputs;
#   3. the benchmark on CuPy (512 px, 500 ROIs; batch throughput incl. upload, streaming
#      latency on the CUDA-graph path and on the plain path, piecewise-rigid, upload ceiling,
#      plain-CuPy and Fourier-shift variants);
#   4. the same benchmark on numpy on the same machine (CPU reference, incl. scikit-image);
#   5. a summary against the issue's targets.
# Everything goes to $OUT (default: a new temp folder): gpu_check.log, gpu_tests.xml,
# bench_cupy.json, bench_numpy.json, summary.txt. Exit status: 0 only if the GPU tests passed and
# both benchmarks ran. Without CuPy/GPU the tests skip and the CuPy benchmark reports why (dry run).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
FRAMES=${GPU_CHECK_FRAMES:-2000}      # unique frames in the CuPy benchmark movie
REPEATS=${GPU_CHECK_REPEATS:-10}      # passes over it for the throughput figures
T0=$(date +%s)

main() {
echo "== gpu_check $(date -u +%FT%TZ) on $(hostname); OUT=$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: not available"

export PYTHONPATH=$PWD
if compgen -G ".whl/*.whl" >/dev/null; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl; then
    export PYTHONPATH=/tmp/site:$PWD
    echo "carried wheels installed: $(cd .whl && ls *.whl | tr '\n' ' ')"
  else
    echo "WARNING: installing carried wheels failed; continuing without them"
  fi
fi
export RIG_XP_FUSED=${RIG_XP_FUSED:-1}
"$PY" - <<'PYEOF'
import sys
print("python", sys.version.split()[0])
for name in ("numpy", "scipy", "cupy", "skimage", "tifffile", "typer", "rich"):
    try:
        mod = __import__(name)
        print(f"  {name} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"  {name}: not importable ({type(e).__name__}: {e})")
from acquisition.xp import cupy_available, resolve_backend
print("cupy usable:", cupy_available(), "-> backend auto =", resolve_backend("auto"))
PYEOF

echo; echo "== 1/3 GPU tests (tests/gpu)"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu --junitxml "$OUT/gpu_tests.xml"
rc_tests=$?
if [ "$rc_tests" -eq 5 ] && ! "$PY" -c "from acquisition.xp import cupy_available as c; raise SystemExit(0 if c() else 1)"; then
  echo "gpu tests: skipped (no CuPy or no CUDA device here: dry run)"
  rc_tests=0
fi
echo "gpu tests exit status: $rc_tests"

if "$PY" -c "import rig.cli" 2>/dev/null; then BENCH=("$PY" -m rig bench imaging);
else BENCH=("$PY" -m acquisition.bench); fi
echo "benchmark command: ${BENCH[*]}"

echo; echo "== 2/3 benchmark, CuPy"
if "$PY" -c "from acquisition.xp import cupy_available as c; raise SystemExit(0 if c() else 1)"; then
  timeout 150 "${BENCH[@]}" --backend cupy --size 512 --rois 500 --frames "$FRAMES" \
    --batch 256 --repeats "$REPEATS" --stream-frames 3000 --skimage-frames 0 \
    --json "$OUT/bench_cupy.json"
  rc_cupy=$?
else
  echo "CuPy/GPU not available here: CuPy benchmark skipped (dry run)"
  rc_cupy=0
fi

echo; echo "== 3/3 benchmark, numpy on this machine's CPU (reference)"
timeout 100 "${BENCH[@]}" --backend numpy --size 512 --rois 500 --frames "${GPU_CHECK_NP_FRAMES:-600}" \
  --batch 64 --stream-frames 300 --nonrigid-frames 20 --skimage-frames 30 \
  --json "$OUT/bench_numpy.json"
rc_np=$?

echo; echo "== summary (also in $OUT/summary.txt)"
"$PY" - "$OUT" "$rc_tests" "$rc_cupy" "$rc_np" <<'PYEOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out, rc_t, rc_c, rc_n = Path(sys.argv[1]), *map(int, sys.argv[2:5])
print(f"gpu tests: {'PASSED (or skipped: see the log)' if rc_t == 0 else 'FAILED (exit %d)' % rc_t}")
for name, rc in (("cupy", rc_c), ("numpy", rc_n)):
    p = out / f"bench_{name}.json"
    if not p.exists():
        print(f"bench {name}: no JSON (exit {rc})")
        continue
    r = json.loads(p.read_text())
    if not r.get("complete", True):
        print(f"bench {name}: INCOMPLETE (cut short); phases done: "
              f"{[k for k in ('accuracy', 'batch', 'stream', 'nonrigid', 'upload_ceiling') if k in r]}")
    print(f"bench {name} on {r['device']} ({r['n_frames']} frames x {r['size_px']}^2 px, "
          f"{r['n_rois']} ROIs, batch {r['batch_frames']}):")
    nan = float("nan")
    b, st, nr = r.get("batch", {}), r.get("stream", {}), r.get("nonrigid", {})
    print(f"  batch full path: {b.get('frames_per_s', nan):,.0f} frames/s; streaming p50/p99 "
          f"{st.get('latency_ms_p50', nan):.3f}/{st.get('latency_ms_p99', nan):.3f} ms; "
          f"piecewise-rigid {nr.get('frames_per_s', nan):,.0f} frames/s")
    print(f"  streaming p99 without the {st.get('baseline_refresh_frames')} baseline-refresh "
          f"frames: {st.get('latency_ms_p99_without_refresh_frames', nan):.3f} ms; "
          f"thread CPU p50 {st.get('thread_cpu_ms_p50', nan):.3f} ms")
    if st.get("latency_ms_p50_refresh_frames") is not None:
        print(f"  refresh frames p50 {st['latency_ms_p50_refresh_frames']:.3f} ms; baseline "
              f"order statistic by {st.get('baseline_select', '?')}")
    if "path" in st:
        why = f" (graph unavailable: {st['graph_unavailable']})" if st.get("graph_unavailable") else ""
        gi = st.get("graph") or {}
        if gi:
            why = (f" (private pool {gi['private_pool_bytes'] / 1e6:.1f} MB, "
                   f"{gi['capture_malloc_bytes']} B newly allocated during capture)")
        print(f"  streaming path: {st['path']}{why}")
    if "stream_plain" in r:
        sp = r["stream_plain"]
        print(f"  plain CuPy streaming p50/p99 {sp.get('latency_ms_p50', nan):.3f}/"
              f"{sp.get('latency_ms_p99', nan):.3f} ms; thread CPU p50 "
              f"{sp.get('thread_cpu_ms_p50', nan):.3f} ms")
    if "graph_vs_plain" in st:
        g = st["graph_vs_plain"]
        print(f"  graph vs plain on the same {st.get('frames')} frames: max |diff| shift "
              f"{g['max_abs_shift_diff_px']:.2g} px, F {g['max_abs_f_diff']:.2g}, dF/F "
              f"{g['max_abs_dff_diff']:.2g} (p99.9 {g['p999_abs_dff_diff']:.2g})")
    a = r.get("accuracy", {})
    print(f"  shift error mean/p99 {a.get('shift_err_mean_px', nan):.3f}/"
          f"{a.get('shift_err_p99_px', nan):.3f} px; dF/F r active median "
          f"{a.get('dff_r_active_median') or nan:.3f} ({a.get('n_active')} cells)")
    if "upload_ceiling" in r:
        u = r["upload_ceiling"]
        print(f"  upload ceiling {u['frames_per_s']:,.0f} frames/s ({u['gb_per_s']:.1f} GB/s); "
              f"full path = {100 * u['full_path_ratio']:.0f}% of it")
        print(f"  fused kernels: {r.get('fused_kernels')}; plain CuPy "
              f"{r.get('variant_plain_cupy_fps', nan):,.0f} frames/s; Fourier-shift "
              f"{r.get('variant_fourier_shift_fps', nan):,.0f} frames/s")
    if "skimage_reference" in r:
        k = r["skimage_reference"]
        print(f"  skimage phase_cross_correlation: {k['ms_per_frame']:.1f} ms/frame")
    for k, t in r.get("targets", {}).items():
        op = ">=" if t["higher_is_better"] else "<="
        v = t["value"]
        vs = "n/a" if v is None else f"{v:,.3f}"
        print(f"    {'OK    ' if t['met'] else 'MISSED'} {k}: {vs} (target {op} {t['target']:g})")
PYEOF
echo "elapsed $(( $(date +%s) - T0 )) s"
[ "$rc_tests" -eq 0 ] && [ "$rc_cupy" -eq 0 ] && [ "$rc_np" -eq 0 ]
}

# everything also goes to the log; the pipeline ends before the script does, so nothing is lost
main 2>&1 | tee -a "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
