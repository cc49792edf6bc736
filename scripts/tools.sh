#!/usr/bin/env bash
# The tools the deployment tests check deploy/ with, installed from package registries only:
#
#   scripts/tools.sh promtool      Prometheus's rule checker: Debian's `prometheus` package
#                                  (apt-get, needs root), unless a promtool is on PATH already
#   scripts/tools.sh kubeconform   the Kubernetes manifest validator: `go install` from the Go
#                                  module proxy into .tools/bin
#   scripts/tools.sh keda-crds     KEDA's CRDs, whose OpenAPI schemas validate ScaledObjects: the
#                                  Go module github.com/kedacore/keda/v2, copied to .tools/
#   scripts/tools.sh chromium      the headless browser the status page is tested in: Debian's
#                                  `chromium` package (apt-get, needs root), unless a chromium is
#                                  on PATH already
#
# Each prints the path of what it provides on stdout, and returns at once when it is there
# already. The Kubernetes schemas themselves come from PyPI (kubernetes-validate, a dev extra).
# Exit status 3 means the tool cannot be installed on this machine at all (no apt-get, or not
# root): a test may say so and skip, where CI (root on Debian) never does.
#
# Environment (all optional):
#   TOOLS_DIR   where kubeconform and the CRDs go (<repo>/.tools, git-ignored)
set -euo pipefail

readonly KUBECONFORM_VERSION=v0.8.0
readonly KEDA_VERSION=v2.21.0

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
mkdir -p "${TOOLS_DIR:=$REPO_ROOT/.tools}"
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
readonly TOOLS_DIR

say() { printf 'tools: %s\n' "$*" >&2; }
die() {
	printf 'tools: error: %s\n' "$*" >&2
	exit 1
}
unavailable() {
	printf 'tools: cannot install here: %s\n' "$*" >&2
	exit 3
}

# One install at a time: parallel test sessions may ask for the same tool.
take_lock() {
	exec 9>"$TOOLS_DIR/.lock"
	flock -w 900 9 || die "another scripts/tools.sh held $TOOLS_DIR/.lock for 15 minutes"
}

require_go() {
	command -v go >/dev/null || die "Go is needed to fetch $1 from the Go module proxy, and \
'go' is not on PATH. Install Go 1.22+ (e.g. 'sudo apt-get install golang', or go.dev/dl)."
}

apt_install() {
	# Another install on the machine (a parallel test session) may hold dpkg's lock a while.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-o DPkg::Lock::Timeout=600 "$@" >&2
}

cmd_promtool() {
	local found
	if found=$(command -v promtool); then
		printf '%s\n' "$found"
		return 0
	fi
	take_lock
	command -v apt-get >/dev/null || die "promtool is not on PATH. Install Prometheus's \
'promtool' (Debian/Ubuntu: the 'prometheus' package; macOS: 'brew install prometheus')."
	((EUID == 0)) || die "promtool is not on PATH; install it with \
'sudo apt-get install --no-install-recommends prometheus' (it ships /usr/bin/promtool)."
	say "installing Debian's prometheus package for promtool"
	# Only promtool is used; nothing of streamproc depends on the package's server. Package
	# lists that are missing or stale are refreshed once.
	if ! apt_install prometheus; then
		apt-get update -qq >&2 || die "apt-get update failed"
		apt_install prometheus || die "apt-get could not install the prometheus package"
	fi
	command -v promtool || die "the prometheus package is installed but promtool is not on PATH"
}

cmd_kubeconform() {
	local bin=$TOOLS_DIR/bin/kubeconform stamp=$TOOLS_DIR/bin/.kubeconform-version started
	if [[ -x $bin && -f $stamp && $(<"$stamp") == "$KUBECONFORM_VERSION" ]]; then
		printf '%s\n' "$bin"
		return 0
	fi
	take_lock
	require_go kubeconform
	say "building kubeconform $KUBECONFORM_VERSION from the Go module proxy (only once)"
	started=$SECONDS
	mkdir -p "$TOOLS_DIR/bin"
	GOBIN=$TOOLS_DIR/bin GOFLAGS=-mod=mod go install -trimpath -ldflags="-s -w" \
		"github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2 ||
		die "go install of kubeconform $KUBECONFORM_VERSION failed"
	printf '%s\n' "$KUBECONFORM_VERSION" >"$stamp"
	say "built kubeconform in $((SECONDS - started)) s"
	printf '%s\n' "$bin"
}

cmd_keda_crds() {
	local target=$TOOLS_DIR/keda-crds-$KEDA_VERSION partial json dir
	if [[ -f $target/.complete ]]; then
		printf '%s\n' "$target"
		return 0
	fi
	take_lock
	require_go "KEDA's CRDs"
	say "fetching KEDA $KEDA_VERSION's CRDs from the Go module proxy (only once)"
	json=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION") ||
		die "go mod download of github.com/kedacore/keda/v2@$KEDA_VERSION failed: $json"
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	[[ -d $dir/config/crd/bases ]] || die "the KEDA module has no config/crd/bases (in '$dir')"
	partial=$target.partial
	rm -rf "$partial"
	mkdir -p "$partial"
	cp "$dir"/config/crd/bases/keda.sh_*.yaml "$partial/"
	touch "$partial/.complete"
	rm -rf "$target"
	mv "$partial" "$target"
	printf '%s\n' "$target"
}

cmd_chromium() {
	local found
	if found=$(command -v chromium); then
		printf '%s\n' "$found"
		return 0
	fi
	take_lock
	command -v apt-get >/dev/null || unavailable "Chromium is not on PATH and there is no \
apt-get; install Chromium (the 'chromium' command) to run the status page's browser test."
	((EUID == 0)) || unavailable "Chromium is not on PATH; install it with \
'sudo apt-get install --no-install-recommends chromium'."
	say "installing Debian's chromium package for the status page's browser test"
	# The browser only: no recommended extras. Package lists that are missing or stale are
	# refreshed once. Its .deb files stay in apt's cache for the next install.
	if ! apt_install chromium; then
		apt-get update -qq >&2 || die "apt-get update failed"
		apt_install chromium || die "apt-get could not install the chromium package"
	fi
	command -v chromium || die "the chromium package is installed but chromium is not on PATH"
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

case ${1:-} in
promtool) cmd_promtool ;;
kubeconform) cmd_kubeconform ;;
keda-crds) cmd_keda_crds ;;
chromium) cmd_chromium ;;
*) usage ;;
esac
