# shellcheck shell=bash
# Shared by install-pi.sh and install-jetson.sh (sourced, never run): options, dry-run,
# user, venv, config, units. A platform script sets PLATFORM, EXTRAS, APT_PACKAGES,
# UNITS and ENABLE_UNIT, may define the hooks platform_preflight, platform_after_pip and
# platform_files, then calls main_install. Every change goes through run or
# write_file, so --dry-run shows the whole plan and changes nothing.

EP_USER=edgepose
EP_PREFIX=/opt/edgepose
EP_VENV=$EP_PREFIX/venv
EP_ETC=/etc/edgepose
EP_STATE=/var/lib/edgepose
EP_UNIT_DIR=/etc/systemd/system
EP_GROUPS=(video render)
EP_MIN_SYSTEMD=247 # LoadCredential=, ProtectProc=
# The OS's Python, whatever PATH says: only its venv sees apt's python3-picamera2.
EP_PYTHON=/usr/bin/python3
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DRY_RUN=0
UNINSTALL=0
PURGE=0
WITH_MOSQUITTO=0

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# quote ARG: ARG as a shell word, quoted only when it has to be (readable logs, copy-pasteable).
quote() {
	if [[ $1 =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then
		printf '%s' "$1"
	else
		printf "'%s'" "${1//\'/\'\\\'\'}"
	fi
}

# run CMD ARGS...: print the command, then execute it (only print it under --dry-run).
run() {
	local a line=+
	for a in "$@"; do line+=" $(quote "$a")"; done
	printf '%s\n' "$line"
	if ((DRY_RUN)); then return 0; fi
	"$@"
}

# write_file MODE OWNER:GROUP PATH < content: install a file from stdin (print it under --dry-run).
write_file() {
	local mode=$1 owner=$2 path=$3 tmp
	printf '+ write %s (mode %s, owner %s):\n' "$path" "$mode" "$owner"
	if ((DRY_RUN)); then
		sed 's/^/    | /'
		return 0
	fi
	tmp=$(mktemp)
	cat >"$tmp"
	install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$path"
	rm -f "$tmp"
}

systemd_running() { [[ -d /run/systemd/system ]]; }
# live_systemd: act as on a booted system (always true in a dry run, to show the full plan).
live_systemd() { ((DRY_RUN)) || systemd_running; }

# parse_common_arg ARG: consume an option shared by both installers; 1 if ARG is not one.
parse_common_arg() {
	case $1 in
	--dry-run) DRY_RUN=1 ;;
	--uninstall) UNINSTALL=1 ;;
	--purge) PURGE=1 ;;
	--with-mosquitto) WITH_MOSQUITTO=1 ;;
	*) return 1 ;;
	esac
}

# parse_args "$@": the installers' shared option loop. Each installer defines platform_arg, which
# consumes its own options from "$@" and sets CONSUMED to how many words it took (0: not its option).
parse_args() {
	while (($#)); do
		CONSUMED=0
		if parse_common_arg "$1"; then
			CONSUMED=1
		else
			platform_arg "$@"
		fi
		if ((CONSUMED == 0)); then
			case $1 in
			-h | --help)
				usage
				exit 0
				;;
			*)
				printf 'error: unknown option %s\n' "$1" >&2
				usage >&2
				exit 2
				;;
			esac
		fi
		shift "$CONSUMED"
	done
}

common_usage() {
	cat <<EOF
  --dry-run         print every action and change nothing (no root needed)
  --with-mosquitto  also install the mosquitto MQTT broker and clients (apt)
  --uninstall       stop and remove the units, the venv and user $EP_USER;
                    keeps $EP_ETC and the model cache in $EP_STATE
  --purge           with --uninstall: also remove $EP_ETC and $EP_STATE
  -h, --help        this help
Re-running is safe: existing config and credentials are never overwritten.
EOF
}

begin() {
	if ((PURGE && !UNINSTALL)); then
		printf 'error: --purge only goes with --uninstall\n' >&2
		exit 2
	fi
	if ((DRY_RUN)); then
		log "dry run ($PLATFORM): printing the plan, changing nothing"
	elif ((EUID != 0)); then
		die "run as root (sudo $0 ...), or try --dry-run first"
	fi
}

check_systemd_version() {
	local v
	v=$(systemctl --version 2>/dev/null | awk 'NR==1 {print $2}') || true
	v=${v%%[!0-9]*}
	if [[ -z $v ]]; then
		warn "systemctl not found: the units need systemd >= $EP_MIN_SYSTEMD"
	elif ((v < EP_MIN_SYSTEMD)); then
		((DRY_RUN)) && warn "systemd $v is too old (need >= $EP_MIN_SYSTEMD): a real run stops here" && return 0
		die "systemd $v is too old (need >= $EP_MIN_SYSTEMD for LoadCredential=); upgrade the OS (Pi OS Bookworm, JetPack 6)"
	fi
}

apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		log "apt packages already installed: $*"
		return 0
	fi
	run apt-get update
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_user() {
	local g
	for g in "${EP_GROUPS[@]}"; do
		getent group "$g" >/dev/null || run groupadd --system "$g"
	done
	if getent passwd "$EP_USER" >/dev/null; then
		log "user $EP_USER exists"
		run usermod --append --groups "$(IFS=,; echo "${EP_GROUPS[*]}")" "$EP_USER"
	else
		run useradd --system --user-group --home-dir "$EP_STATE" --no-create-home \
			--shell /usr/sbin/nologin --groups "$(IFS=,; echo "${EP_GROUPS[*]}")" "$EP_USER"
	fi
}

make_venv() {
	if grep -qs '^include-system-site-packages = true' "$EP_VENV/pyvenv.cfg"; then
		log "venv $EP_VENV exists (with system site packages)"
	else
		run install -d -m 0755 "$EP_PREFIX"
		run "$EP_PYTHON" -m venv --system-site-packages "$EP_VENV"
	fi
}

pip_install() {
	run "$EP_VENV/bin/python" -m pip install --disable-pip-version-check "$@"
}

# install_edgepose: this checkout with its extras, numpy pinned to the OS's own (apt) numpy.
# Without the pin pip may put numpy 2 into the venv (opencv-python-headless 5 wants it),
# shadowing apt's numpy 1.x, against which apt's compiled modules (picamera2's simplejpeg,
# NVIDIA's Python bindings) were built: they would then fail to import.
install_edgepose() {
	local reqs=("${REPO_DIR}[${EXTRAS}]") np
	np=$("$EP_PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null) || np=""
	if [[ -n $np ]]; then
		reqs+=("numpy==$np")
	else
		log "no numpy in $EP_PYTHON yet: pip picks one (apt's python3-numpy would be pinned)"
	fi
	pip_install "${reqs[@]}"
}

# install_config NAME SOURCE: copy SOURCE to $EP_ETC/NAME unless the user already has one.
install_config() {
	local dest=$EP_ETC/$1 src=$2
	if [[ -e $dest ]]; then
		log "keeping existing $dest"
		return 0
	fi
	if [[ ! -f $src ]]; then
		((DRY_RUN)) || die "$src is missing: run the installer from a complete edgepose checkout"
		warn "$src is missing (a real run stops here)"
	fi
	run install -m 0640 -o root -g "$EP_USER" "$src" "$dest"
}

install_etc() {
	run install -d -m 0750 -o root -g "$EP_USER" "$EP_ETC"
	install_config config.yaml "$REPO_DIR/config.yaml"
	# LoadCredential= fails the unit if the file is absent: keep an empty one (= no password).
	if [[ -e $EP_ETC/mqtt_password ]]; then
		log "keeping existing $EP_ETC/mqtt_password"
	else
		run install -m 0600 -o root -g root /dev/null "$EP_ETC/mqtt_password"
	fi
}

install_units() {
	local u
	for u in "${UNITS[@]}"; do
		run install -m 0644 -o root -g root "$REPO_DIR/systemd/$u" "$EP_UNIT_DIR/$u"
	done
	run install -m 0644 -o root -g root "$REPO_DIR/docs/INSTALL.md" "$EP_PREFIX/INSTALL.md"
}

enable_units() {
	local was_active=$1 u
	if ! live_systemd; then
		warn "systemd is not running (chroot or image build): enabling only, start it after boot"
		run systemctl enable "$ENABLE_UNIT"
		return 0
	fi
	run systemctl daemon-reload
	for u in "${UNITS[@]}"; do
		if [[ $u != "$ENABLE_UNIT" ]] && systemctl is-enabled --quiet "$u" 2>/dev/null; then
			run systemctl disable --now "$u"
		fi
	done
	run systemctl enable --now "$ENABLE_UNIT"
	# An upgrade: enable --now leaves a running service on the old code.
	if ((was_active)); then run systemctl try-restart "$ENABLE_UNIT"; fi
	log "done: journalctl -u $ENABLE_UNIT -f   shows the log; see $EP_PREFIX/INSTALL.md"
}

uninstall() {
	local u
	for u in "${UNITS[@]}"; do
		if [[ -e $EP_UNIT_DIR/$u ]]; then
			# without a running systemd (chroot), disable still removes the .wants symlinks
			if live_systemd; then run systemctl disable --now "$u"; else run systemctl disable "$u"; fi
		fi
		run rm -f "$EP_UNIT_DIR/$u"
	done
	if [[ -n ${DROPIN:-} ]]; then
		run rm -f "$DROPIN"
		[[ -d ${DROPIN%/*} ]] && run rmdir --ignore-fail-on-non-empty "${DROPIN%/*}"
	fi
	if live_systemd; then run systemctl daemon-reload; fi
	run rm -rf "$EP_PREFIX"
	if getent passwd "$EP_USER" >/dev/null; then
		run userdel "$EP_USER" # also removes its user group
		if ((!DRY_RUN)) && getent group "$EP_USER" >/dev/null; then run groupdel "$EP_USER"; fi
	else
		log "no user $EP_USER"
	fi
	if ((PURGE)); then
		run rm -rf "$EP_ETC" "$EP_STATE"
	else
		log "kept $EP_ETC and $EP_STATE (remove them with --uninstall --purge)"
	fi
	log "uninstalled"
}

platform_preflight() { :; }
platform_after_pip() { :; }
platform_files() { :; }

main_install() {
	begin
	if ((UNINSTALL)); then
		uninstall
		return 0
	fi
	check_systemd_version
	platform_preflight
	local was_active=0 pkgs=("${APT_PACKAGES[@]}")
	systemctl is-active --quiet "$ENABLE_UNIT" 2>/dev/null && was_active=1
	((WITH_MOSQUITTO)) && pkgs+=(mosquitto mosquitto-clients)
	apt_install "${pkgs[@]}"
	ensure_user
	make_venv
	install_edgepose
	platform_after_pip
	install_etc
	install_units
	platform_files
	enable_units "$was_active"
}
