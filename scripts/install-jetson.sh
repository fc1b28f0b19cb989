#!/usr/bin/env bash
# Install edgepose as a systemd service on NVIDIA Jetson (JetPack 6, L4T), ONNX Runtime on
# the TensorRT/CUDA execution providers. PyPI has no onnxruntime-gpu for Jetson (aarch64 +
# L4T CUDA): NVIDIA's wheel for your JetPack and Python is required (--ort-wheel).
# Walkthrough: docs/INSTALL.md. Shared steps: lib-install.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib-install.sh"

PLATFORM=Jetson
EXTRAS=onnx,mqtt
APT_PACKAGES=(python3-venv)
UNITS=(edgepose.service)
ENABLE_UNIT=edgepose.service
DROPIN=$EP_UNIT_DIR/edgepose.service.d/10-jetson.conf
ORT_WHEEL=""
CPU_ONLY=0

usage() {
	cat <<EOF
usage: sudo $0 --ort-wheel FILE|URL [options]
Install edgepose from this checkout ($REPO_DIR) into $EP_VENV with extras [$EXTRAS],
create user $EP_USER (groups ${EP_GROUPS[*]}), $EP_ETC/config.yaml, edgepose.service and
the Jetson drop-in $DROPIN.
  --ort-wheel W     NVIDIA's onnxruntime-gpu wheel for this JetPack and Python (file or URL);
                    it replaces the CPU onnxruntime that [onnx] may pull from PyPI
  --cpu-only        no GPU wheel: keep the CPU onnxruntime (testing only, slow)
Then set model.backend: onnx and model.providers: [TensorrtExecutionProvider,
CUDAExecutionProvider, CPUExecutionProvider] in $EP_ETC/config.yaml.
EOF
	common_usage
}

platform_preflight() {
	if [[ -r /etc/nv_tegra_release ]]; then
		log "L4T: $(head -n1 /etc/nv_tegra_release)"
	else
		warn "no /etc/nv_tegra_release: this does not look like a Jetson; continuing"
	fi
	if [[ -z $ORT_WHEEL ]] && ((!CPU_ONLY)); then
		((DRY_RUN)) || die "pass --ort-wheel: NVIDIA's onnxruntime-gpu wheel for your JetPack is required (or --cpu-only)"
		warn "no --ort-wheel given: a real run stops here"
	fi
}

platform_after_pip() {
	local py=$EP_VENV/bin/python
	if [[ -n $ORT_WHEEL ]]; then
		# Both wheels install the module 'onnxruntime': remove the PyPI (CPU) one first.
		run "$py" -m pip uninstall --yes onnxruntime onnxruntime-gpu
		pip_install "$ORT_WHEEL"
	fi
	((CPU_ONLY)) && return 0
	run "$py" -c 'import onnxruntime as ort, sys
p = ort.get_available_providers(); print("onnxruntime", ort.__version__, p)
sys.exit(0 if {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(p) else 3)' ||
		die "onnxruntime in $EP_VENV has no TensorRT/CUDA provider: install NVIDIA's Jetson wheel with --ort-wheel"
}

platform_files() {
	# CUDA and TensorRT open /dev/nvhost-*, /dev/nvmap and /dev/nvgpu/*, whose names change
	# between L4T releases: rather than guess, lift the unit's device allow-list here and
	# rely on the groups (video, render) for access. See docs/INSTALL.md to tighten it.
	write_file 0644 root:root "$DROPIN" <<'EOF'
# Installed by scripts/install-jetson.sh: Jetson GPU access for edgepose.service.
[Service]
# DevicePolicy=auto with an empty list allows every device node (file permissions still
# apply). ProtectClock=yes implies DeviceAllow=char-rtc r, which would turn the allow-list
# back on; turning it off costs nothing, as the unit keeps no CAP_SYS_TIME anyway.
DevicePolicy=auto
DeviceAllow=
ProtectClock=no
# The first start builds TensorRT engines, which can take minutes.
TimeoutStartSec=15min
EOF
}

platform_arg() {
	case $1 in
	--ort-wheel)
		(($# >= 2)) || {
			printf 'error: --ort-wheel needs a file or URL\n' >&2
			exit 2
		}
		ORT_WHEEL=$2 CONSUMED=2
		;;
	--cpu-only) CPU_ONLY=1 CONSUMED=1 ;;
	esac
}

parse_args "$@"
main_install
