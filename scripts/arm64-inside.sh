#!/usr/bin/env bash
# Runs inside the arm64 root that scripts/test-arm64.sh builds (emulated): the checkout is at
# /work/edgepose, the shared models and data at /work/shared, and /out is shared with the host.
set -euo pipefail
cd /work/edgepose

step() { printf '\n==> arm64 root: %s\n' "$*"; }
die() { printf 'test-arm64 (inside the root): %s\n' "$*" >&2; exit 1; }

# The pytest subset that makes sense emulated (about 1 s a MoveNet frame): config, every family's
# decode against ground truth, file/folder/video capture, JSONL, MQTT to a real mosquitto, the fake
# picamera2 dual stream, and the CLI's error paths.
ARM64_TESTS=(
  tests/test_config.py
  tests/test_families.py
  tests/test_capture.py
  tests/test_picamera.py
  "tests/test_cli.py::test_jsonl_to_stdout"
  "tests/test_cli.py::test_invalid_config_exit_2"
  "tests/test_cli.py::test_corrupt_model_exit_2"
  "tests/test_cli.py::test_missing_camera_exit_1_missing_file_exit_2"
  tests/test_cli_first_hour.py
)

step "platform: $(uname -m) (emulated ${QEMU_CPU:-max}), $(python3 --version), $(. /etc/os-release && echo "$PRETTY_NAME")"
[ "$(uname -m)" = aarch64 ] || die "uname -m says $(uname -m), not aarch64: the emulation is not in effect"

step "the venv, as docs/INSTALL.md tells a Pi user: --system-site-packages, then pip through the pinned constraints"
VENV=/opt/edgepose-test/venv
rm -rf "$VENV"
python3 -m venv --system-site-packages "$VENV"
CONSTRAINTS="$(bash scripts/constraints-for.sh "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')")"
reqs=('.[tflite,onnx,mqtt]' pytest jsonschema)
if [ -n "${ARM64_EXTRA_REQUIREMENT:-}" ]; then reqs+=("$ARM64_EXTRA_REQUIREMENT"); fi
t=$SECONDS
if ! "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "${reqs[@]}" 2>/out/pip.err; then
  cat /out/pip.err >&2
  culprit=$(grep -oE "[^ /]+\.whl is not a supported wheel on this platform|No matching distribution found for [^ ]+" /out/pip.err | head -1) || true
  pyver=$(python3 --version)
  die "pip cannot install edgepose's dependencies on aarch64 ($pyver, $(uname -m)): ${culprit:-see the pip output above}. \
Every runtime dependency must publish an aarch64 (manylinux_*_aarch64) wheel or build from source on a Pi: \
drop or replace the one named, or keep it out of the extras a Pi installs."
fi
echo "installed in $((SECONDS - t)) s"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
rows = []
for dist in md.distributions():
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    rows.append((dist.metadata["Name"], dist.version, ", ".join(tags) or "(no WHEEL file: not from a wheel)"))
print("installed wheels and their platform tags:")
for name, version, tags in sorted(rows, key=lambda r: r[0].lower()):
    print(f"  {name} {version}: {tags}")
bad = [r for r in rows if "x86_64" in r[2]]
assert not bad, f"x86_64 wheels in an aarch64 venv: {bad}"
EOF

step "the README's first command"
"$VENV/bin/edgepose" run --source sample --output - >/out/first.jsonl
[ "$(wc -l </out/first.jsonl)" -eq 2 ] || die "the first command printed $(wc -l </out/first.jsonl) JSON lines, not 2"
"$VENV/bin/edgepose" run --source sample --output jsonl:/dev/null -q --log-level debug 2>/out/first.debug
if grep -q "Error in cpuinfo" /out/first.debug || ! grep -q "Created TensorFlow Lite XNNPACK delegate" /out/first.debug; then
  die "LiteRT runs without XNNPACK here, unlike a Pi: $(grep -m2 -E "cpuinfo|XNNPACK" /out/first.debug)"
fi
echo "LiteRT created its XNNPACK delegate, and cpuinfo saw the CPUs"

step "edgepose models check (the shipped model) and edgepose eval"
"$VENV/bin/edgepose" models check
"$VENV/bin/edgepose" eval --model default --data /work/shared/data/coco8-pose | tee /out/eval-arm64.txt

step "keypoints on the reference images, and each stage's arrays on x86_64's inputs, for the comparison"
MODELS=(default /work/shared/models/yolo11n-pose_int8.tflite /out/models/pose_landmark_lite.tflite)
for model in "${MODELS[@]}"; do
  "$VENV/bin/edgepose" run --source /work/shared/data/images --model "$model" -q \
    --output "/out/arm64-$(basename "$model" .tflite).jsonl"
done
"$VENV/bin/python" scripts/platform_probe.py /out/probe-arm64 /work/shared/data/images "${MODELS[@]}" --ref /out/probe-x86

step "pytest subset: ${ARM64_TESTS[*]}"
t=$SECONDS
"$VENV/bin/python" -m pytest -p no:cacheprovider -q -m "not slow" -ra "${ARM64_TESTS[@]}"
echo "pytest subset: $((SECONDS - t)) s"

step "scripts/install-pi.sh for real (no camera stack: Debian has no python3-picamera2), all but starting the service"
# A fresh root each time is too slow; undo the last run's install first.
bash scripts/install-pi.sh --uninstall --purge >/dev/null 2>&1 || true
PIP_CONSTRAINT="/work/edgepose/$CONSTRAINTS" bash scripts/install-pi.sh --no-picamera
test -x /opt/edgepose/venv/bin/edgepose || die "install-pi.sh left no /opt/edgepose/venv/bin/edgepose"
grep -q '^include-system-site-packages = true' /opt/edgepose/venv/pyvenv.cfg || die "the venv has no system site packages"
getent passwd edgepose >/dev/null || die "install-pi.sh created no user edgepose"
test -f /etc/edgepose/config.yaml || die "install-pi.sh left no /etc/edgepose/config.yaml"
for unit in edgepose.service edgepose-kiosk.service; do
  test -f "/etc/systemd/system/$unit" || die "install-pi.sh did not install $unit"
done
systemctl is-enabled edgepose.service
/opt/edgepose/venv/bin/edgepose check /etc/edgepose/config.yaml
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify /etc/systemd/system/edgepose.service /etc/systemd/system/edgepose-kiosk.service
echo "install-pi.sh: venv, user, /etc/edgepose/config.yaml and units in place; systemd-analyze verify passed"
