#!/usr/bin/env bash
# Proves edgepose on a Raspberry Pi's own platform: Pi OS Bookworm is Debian 12 on aarch64 with
# Python 3.11. It builds an arm64 bookworm root with debootstrap (or reuses the one cached under
# ~/.cache/edgepose/, rebuilt when RECIPE below changes), runs it under qemu-user emulation, and
# inside it (scripts/arm64-inside.sh):
#   - makes the venv as docs/INSTALL.md tells a Pi user (--system-site-packages, then
#     pip install '.[tflite,onnx,mqtt]' through the pinned constraints) and prints each wheel's tag;
#   - runs the README's first command, `models check` and `eval` on coco8-pose, and poses the
#     reference images with MoveNet and YOLO;
#   - runs the pytest subset that makes sense emulated (ARM64_TESTS below);
#   - runs scripts/install-pi.sh for real, all but starting the service, and verifies what it left.
# The same runs on this host (x86_64) come first; scripts/compare_platforms.py then compares each
# stage (picture, model input, model output on the same input), the keypoints and the eval figure.
# Emulated speed is not a performance figure. Needs root (debootstrap, chroot, mount).
#
#   bash scripts/test-arm64.sh            everything (what .ci/run runs)
# Environment: EDGEPOSE_VENV (the host's test venv, default .venv: the x86_64 side of the comparison),
# EDGEPOSE_SHARED (default ../shared), ARM64_EXTRA_REQUIREMENT (one more requirement or wheel to install
# in the root: the test of this script passes an x86_64-only wheel and expects a clear failure).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

step() { printf '\n==> arm64: %s\n' "$*"; }
die() { printf 'test-arm64: %s\n' "$*" >&2; exit 1; }

# What the root is made of; the cache key. Change it and the root is rebuilt.
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,mosquitto,mosquitto-clients,systemd,passwd,adduser,procps
RECIPE="debootstrap --arch=arm64 --variant=minbase --include=$PACKAGES $SUITE (v1)"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/edgepose"
ROOT="$CACHE/arm64-$SUITE-$KEY"
SHARED="$(cd "${EDGEPOSE_SHARED:-$REPO/../shared}" 2>/dev/null && pwd)" || die "no shared models and data at ${EDGEPOSE_SHARED:-$REPO/../shared}"
HOST_VENV="${EDGEPOSE_VENV:-.venv}"
[ -x "$HOST_VENV/bin/edgepose" ] || die "$HOST_VENV/bin/edgepose is missing: run bash scripts/test.sh first (it is the x86_64 side)"
((EUID == 0)) || die "run as root: debootstrap, chroot and the binfmt_misc registration need it"

mirror() {  # the Debian mirror this host's apt uses
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null) || true
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null) || true
  echo "${uri:-http://deb.debian.org/debian}"
}

step "host tools: qemu-user-static and debootstrap"
need=()
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

step "binfmt_misc: qemu-aarch64 registered with the F flag (the interpreter works inside the chroot)"
BINFMT=/proc/sys/fs/binfmt_misc
mountpoint -q "$BINFMT" || mount -t binfmt_misc binfmt_misc "$BINFMT"
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [ -f "$conf" ] || die "$conf is missing (Debian's qemu-user-static ships it)"
  cat "$conf" >"$BINFMT/register"
fi
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" || die "qemu-aarch64 is registered without the F flag: $(grep flags "$BINFMT/qemu-aarch64")"
grep -E '^(interpreter|flags)' "$BINFMT/qemu-aarch64"

mkdir -p "$CACHE"
exec 9>"$CACHE/arm64.lock"
flock 9  # one run at a time uses the root (a second one waits)

if [ -f "$ROOT/.complete" ]; then
  step "reusing the cached root $ROOT"
else
  step "building the root $ROOT ($RECIPE from $(mirror))"
  t=$SECONDS
  rm -rf "$ROOT.tmp"
  mkdir -p "$CACHE"
  debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT.tmp" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap failed; the end of $CACHE/debootstrap.log: $(tail -5 "$CACHE/debootstrap.log")"
  mv "$ROOT.tmp" "$ROOT"
  echo "$RECIPE" >"$ROOT/.complete"
  echo "built in $((SECONDS - t)) s"
  find "$CACHE" -maxdepth 1 -name "arm64-$SUITE-*" ! -path "$ROOT" -exec rm -rf {} + 2>/dev/null || true
fi

# The checkout (its tracked and untracked-but-not-ignored files) goes in fresh each run, at
# /work/edgepose, with the shared data beside it as tests expect (../shared).
OUT="$(mktemp -d)"
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  rm -rf "$OUT"
}
trap cleanup EXIT
bind() {  # bind SRC DEST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounted+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
rm -rf "$ROOT/work/edgepose"
mkdir -p "$ROOT/work/edgepose"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$ROOT/work/edgepose"
bind /proc "$ROOT/proc"
bind /dev "$ROOT/dev"
bind /dev/pts "$ROOT/dev/pts"
bind "$SHARED" "$ROOT/work/shared" ro
bind "$OUT" "$ROOT/out"
mkdir -p "$ROOT/tmp" && chmod 1777 "$ROOT/tmp"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/certs/host-ca.crt"  # pip verifies the index with the host's CAs
if [ -n "${ARM64_EXTRA_REQUIREMENT:-}" ] && [ -f "$ARM64_EXTRA_REQUIREMENT" ]; then
  cp "$ARM64_EXTRA_REQUIREMENT" "$ROOT/out/"
  ARM64_EXTRA_REQUIREMENT="/out/$(basename "$ARM64_EXTRA_REQUIREMENT")"
fi

# The x86_64 side first: the inside run feeds x86_64's prepared inputs to its models (--ref), so
# that the comparison can tell the platform's decoding and resizing from its inference.
step "x86_64 reference ($(uname -m)): eval, poses of the reference images, and each stage's arrays"
mkdir -p "$OUT/models"
"$HOST_VENV/bin/python" scripts/fetch_blazepose.py >/dev/null 2>"$OUT/fetch.err" \
  || die "scripts/fetch_blazepose.py failed (BlazePose lite is the float model compared): $(tail -3 "$OUT/fetch.err")"
BLAZE_DIR="${EDGEPOSE_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/edgepose/models}"
cp "$BLAZE_DIR"/{pose_landmark_lite.tflite,pose_detection.tflite,LICENSE.blazepose.txt} "$OUT/models/"
MODELS=(default "$SHARED/models/yolo11n-pose_int8.tflite" "$OUT/models/pose_landmark_lite.tflite")
x86_failed() { die "the x86_64 reference run failed ($1); the end of its log: $(tail -5 "$OUT/x86.log")"; }
"$HOST_VENV/bin/edgepose" eval --model default --data "$SHARED/data/coco8-pose" >"$OUT/eval-x86.txt" 2>>"$OUT/x86.log" \
  || x86_failed "edgepose eval"
for model in "${MODELS[@]}"; do
  "$HOST_VENV/bin/edgepose" run --source "$SHARED/data/images" --model "$model" -q \
    --output "$OUT/x86-$(basename "$model" .tflite).jsonl" 2>>"$OUT/x86.log" || x86_failed "edgepose run --model $model"
done
"$HOST_VENV/bin/python" scripts/platform_probe.py "$OUT/probe-x86" "$SHARED/data/images" "${MODELS[@]}" 2>>"$OUT/x86.log" \
  || x86_failed "scripts/platform_probe.py"

# XNNPACK finds the CPUs through cpuinfo, which reads /sys/devices/system/cpu/{possible,present}.
# Without them LiteRT quietly runs its built-in kernels, which no Pi does. The host's /sys is not
# bound: it describes x86_64 CPUs, and LiteRT crashes on it. Two files are enough.
mkdir -p "$ROOT/sys/devices/system/cpu"
for f in possible present; do echo "0-$(($(nproc) - 1))" >"$ROOT/sys/devices/system/cpu/$f"; done
# The emulated CPU is a Pi 5's Cortex-A76 (ARM64_CPU=cortex-a72 for a Pi 4's). qemu's default "max"
# CPU has extensions no Pi has (SVE2, SME, I8MM), and on it XNNPACK's INT8 kernels give outputs up to
# their whole range away from every other kernel set (qemu 7.2); on either Cortex they are bit-exact.
ARM64_CPU="${ARM64_CPU:-cortex-a76}"

step "inside the root (emulated $ARM64_CPU)"
t=$SECONDS
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 QEMU_CPU="$ARM64_CPU" \
  PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  EDGEPOSE_REQUIRE_SHARED=1 ARM64_EXTRA_REQUIREMENT="${ARM64_EXTRA_REQUIREMENT:-}" \
  bash /work/edgepose/scripts/arm64-inside.sh
echo "inside the root: $((SECONDS - t)) s"

step "the comparison: aarch64 against x86_64"
"$HOST_VENV/bin/python" scripts/compare_platforms.py "$OUT"
