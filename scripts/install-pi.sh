#!/usr/bin/env bash
# Install edgepose as a hardened systemd service on Raspberry Pi OS Bookworm (Pi 4/5).
# Camera through apt's python3-picamera2, so the venv sees system site packages.
# Walkthrough: docs/INSTALL.md. Shared steps: lib-install.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib-install.sh"

PLATFORM="Raspberry Pi"
EXTRAS=tflite,mqtt
APT_PACKAGES=(python3-picamera2 python3-venv)
UNITS=(edgepose.service edgepose-kiosk.service)
ENABLE_UNIT=edgepose.service
KIOSK=0

usage() {
	cat <<EOF
usage: sudo $0 [options]
Install edgepose from this checkout ($REPO_DIR) into $EP_VENV with extras [$EXTRAS],
create user $EP_USER (groups ${EP_GROUPS[*]}), $EP_ETC/config.yaml and the systemd units.
  --kiosk           enable edgepose-kiosk.service (framebuffer display, $EP_ETC/kiosk.yaml)
                    instead of edgepose.service
  --no-picamera     USB or network cameras only: do not install python3-picamera2 (it comes
                    from Raspberry Pi OS's own archive, which plain Debian does not have)
EOF
	common_usage
}

platform_preflight() {
	local model
	model=$(tr -d '\0' 2>/dev/null </proc/device-tree/model) || true
	if [[ $model == *"Raspberry Pi"* ]]; then
		log "board: $model"
	else
		warn "this does not look like a Raspberry Pi (${model:-no /proc/device-tree/model}); continuing"
	fi
}

platform_files() {
	((KIOSK)) || return 0
	# A kiosk config of its own, so switching units never edits the user's config.yaml.
	if [[ -f $REPO_DIR/systemd/kiosk.yaml ]]; then
		install_config kiosk.yaml "$REPO_DIR/systemd/kiosk.yaml"
	else
		install_config kiosk.yaml "$REPO_DIR/config.yaml"
		warn "no kiosk.yaml in the checkout: enable the framebuffer output (/dev/fb0) in $EP_ETC/kiosk.yaml"
	fi
}

platform_arg() {
	case $1 in
	--kiosk) KIOSK=1 ENABLE_UNIT=edgepose-kiosk.service CONSUMED=1 ;;
	--no-picamera) APT_PACKAGES=(python3-venv) CONSUMED=1 ;;
	esac
}

parse_args "$@"
main_install
