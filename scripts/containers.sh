#!/usr/bin/env bash
# Containers on a machine without Docker: rootful podman from Debian's packages runs the
# project's Dockerfile, docker-compose.yml (through podman-compose) and testcontainers (through
# podman's Docker-compatible API socket). Users with Docker do not need any of this.
#
#   scripts/containers.sh up      set everything up; quick when it is already done
#   scripts/containers.sh check   exit 0 when `up` can run here, else say why (exit 3)
#   scripts/containers.sh status  what is set up
#   scripts/containers.sh env     the environment for Docker clients and testcontainers
#   scripts/containers.sh down    stop the API socket (the images stay)
#
# `up` needs root and apt (Debian 12 or a derivative). It:
#   1. installs podman, runc, netavark, aardvark-dns, iptables and mmdebstrap, and writes
#      podman's settings (/etc/containers/containers.conf.d/50-streamproc.conf, which says why
#      each is needed);
#   2. builds stand-ins for the Docker Hub images the project's files name, which cannot be
#      pulled here, and tags them with those names: python:3.11-slim (Debian 12's Python 3.11,
#      which is 3.11 too) and apache/kafka:4.4.0 (Apache Kafka 4.4.0's own jars from Maven
#      Central on a Debian Java runtime, with the official image's paths and environment
#      conventions). An image of those names that this script did not build is left alone;
#   3. starts the Docker-compatible API on unix:///run/podman/podman.sock.
# Each stand-in carries a label with a digest of its recipe and is rebuilt only when that
# changes (or with CONTAINERS_REBUILD=1). The stand-ins trust the same extra certificate
# authorities as this machine (/usr/local/share/ca-certificates), so builds inside them reach
# the package registries the machine reaches.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly SUPPORT_DIR=$REPO_ROOT/scripts/containers
readonly SOCKET_DIR=/run/podman
readonly SOCKET=$SOCKET_DIR/podman.sock
readonly SERVICE_LOG=/var/log/streamproc-podman-service.log
readonly SETTINGS_FILE=/etc/containers/containers.conf.d/50-streamproc.conf
readonly LABEL=io.streamproc.stand-in
# netavark sets up container networks with the iptables command, which nothing else pulls in.
readonly PACKAGES=(podman runc netavark aardvark-dns iptables mmdebstrap)

readonly PYTHON_IMAGE=docker.io/library/python:3.11-slim
readonly KAFKA_IMAGE=docker.io/apache/kafka:4.4.0
readonly JRE_IMAGE=localhost/streamproc-stand-in/debian-jre:17
readonly SUITE=bookworm
readonly MIRRORS=(
	"deb http://deb.debian.org/debian $SUITE main"
	"deb http://deb.debian.org/debian $SUITE-updates main"
	"deb http://deb.debian.org/debian-security $SUITE-security main"
)
# Documentation, manual pages and translations stay out, as in the slim images. Java's
# post-install script needs the manual page folder to exist, even empty.
readonly MMDEBSTRAP_OPTIONS=(
	--quiet --variant=minbase
	--dpkgopt='path-exclude=/usr/share/doc/*'
	--dpkgopt='path-include=/usr/share/doc/*/copyright'
	--dpkgopt='path-exclude=/usr/share/man/*'
	--dpkgopt='path-exclude=/usr/share/locale/*'
	--setup-hook='mkdir -p "$1/usr/share/man/man1"'
)
readonly PYTHON_PACKAGES=ca-certificates,python3,python3-venv,python-is-python3
readonly JRE_PACKAGES=ca-certificates,openjdk-17-jre-headless
readonly MAVEN_COPY=org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies

say() { printf 'containers: %s\n' "$*" >&2; }
die() {
	printf 'containers: error: %s\n' "$*" >&2
	exit 1
}

# Why `up` cannot run here, or nothing when it can.
cannot_run_reason() {
	if [[ $(uname -s) != Linux ]]; then
		echo "it sets up rootful podman, which needs Linux"
	elif ((EUID != 0)); then
		echo "it installs system packages and runs rootful podman, which needs root (run \
'sudo make containers' once, or use Docker)"
	elif ! command -v apt-get >/dev/null || [[ ! -f /etc/debian_version ]]; then
		echo "it installs podman with apt-get, which needs Debian 12 or a derivative"
	fi
}

cmd_check() {
	local reason
	reason=$(cannot_run_reason)
	[[ -z $reason ]] && return 0
	echo "scripts/containers.sh cannot set up containers here: $reason" >&2
	return 3
}

take_lock() {
	exec 8>/run/lock/streamproc-containers.lock
	flock -w 900 8 || die "another scripts/containers.sh held its lock for 15 minutes"
}

install_packages() {
	local missing=() package
	for package in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$package")
	done
	command -v mvn >/dev/null || missing+=(maven)
	command -v curl >/dev/null || missing+=(curl)
	((${#missing[@]} == 0)) && return 0
	say "installing ${missing[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

write_settings() {
	local wanted nofile nproc
	# Containers may not ask for more than this shell's hard limits: where root lacks
	# CAP_SYS_RESOURCE (the build machines: 20000 open files) podman's defaults ask for more,
	# and every start fails with "setrlimit ... not permitted". podman caps processes at 32768.
	nofile=$(ulimit -Hn)
	[[ $nofile == unlimited ]] && nofile=1048576
	nproc=$(ulimit -Hu)
	if [[ $nproc == unlimited ]] || ((nproc > 32768)); then
		nproc=32768
	fi
	wanted=$(
		cat <<EOF
# Written by scripts/containers.sh: what rootful podman needs on a build machine of this kind.
[containers]
# This machine's hard limits: root may lack CAP_SYS_RESOURCE to raise them.
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
# crun does not support hybrid cgroups (v1 with a v2 mount); runc does.
runtime = "runc"
# No systemd: podman manages cgroups and logs its events itself.
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
# netavark with aardvark-dns resolves service names on compose networks (CNI cannot without an
# extra plugin).
network_backend = "netavark"
EOF
	)
	if [[ ! -f $SETTINGS_FILE || $(<"$SETTINGS_FILE") != "$wanted" ]]; then
		mkdir -p "$(dirname "$SETTINGS_FILE")"
		printf '%s\n' "$wanted" >"$SETTINGS_FILE"
		say "wrote $SETTINGS_FILE"
	fi
	# A machine where podman ran with CNI first keeps CNI's bridge on the same subnet as
	# netavark's, and containers on the default network then reach nothing.
	if ip link show cni-podman0 >/dev/null 2>&1; then
		ip link delete cni-podman0
		say "removed the bridge cni-podman0 left by podman's former network backend"
	fi
}

digest() { sha256sum | cut -c1-16; }

extra_authorities() { find /usr/local/share/ca-certificates -name '*.crt' -type f 2>/dev/null | sort; }

recipe_digest() {
	local packages=$1 file
	{
		printf '%s\n' "$SUITE" "$packages" "${MIRRORS[@]}" "${MMDEBSTRAP_OPTIONS[@]}"
		while IFS= read -r file; do
			cat "$file"
		done < <(extra_authorities)
	} | digest
}

# The stand-in label of an image: empty when it has none, "absent" when there is no image.
image_label() {
	podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$1" 2>/dev/null ||
		echo absent
}

# 0 when the image must be built; 1 when it is current or is not ours to replace.
needs_build() {
	local image=$1 wanted=$2 label
	label=$(image_label "$image")
	[[ $label == absent ]] && return 0
	if [[ -z $label || $label == '<no value>' ]]; then
		say "$image exists and is not a stand-in built here: using it as it is"
		return 1
	fi
	[[ ${CONTAINERS_REBUILD:-0} == 1 || $label != "$wanted" ]]
}

# A Debian root file system with the given packages, imported as an image.
debian_image() {
	local image=$1 packages=$2 key=$3 started=$SECONDS authorities=()
	local hooks=() file
	while IFS= read -r file; do
		authorities+=("$file")
	done < <(extra_authorities)
	if ((${#authorities[@]})); then
		hooks+=(--customize-hook="copy-in ${authorities[*]} /usr/local/share/ca-certificates/")
		hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1')
	fi
	say "building $image from Debian $SUITE packages ($packages)"
	mmdebstrap "${MMDEBSTRAP_OPTIONS[@]}" --include="$packages" "${hooks[@]}" \
		"$SUITE" - "${MIRRORS[@]}" </dev/null |
		podman import --quiet --change "LABEL $LABEL=$key" --change 'ENV LANG=C.UTF-8' \
			--change "${4:-CMD [\"/bin/bash\"]}" - "$image" >/dev/null
	say "built $image in $((SECONDS - started)) s"
}

build_python() {
	local key
	key=$(recipe_digest "$PYTHON_PACKAGES")
	needs_build "$PYTHON_IMAGE" "$key" || return 0
	debian_image "$PYTHON_IMAGE" "$PYTHON_PACKAGES" "$key" 'CMD ["python3"]'
}

build_kafka() {
	local jre_key key context started
	jre_key=$(recipe_digest "$JRE_PACKAGES")
	key=$({
		echo "$jre_key"
		cat "$REPO_ROOT/scripts/kafka/kafka-libs.pom.xml"
		find "$SUPPORT_DIR/kafka" -type f | sort | xargs cat
	} | digest)
	needs_build "$KAFKA_IMAGE" "$key" || return 0
	if needs_build "$JRE_IMAGE" "$jre_key"; then
		debian_image "$JRE_IMAGE" "$JRE_PACKAGES" "$jre_key"
	fi
	started=$SECONDS
	context=$(mktemp -d /var/tmp/streamproc-kafka-image.XXXXXX)
	# shellcheck disable=SC2064  # the folder is known now
	trap "rm -rf '$context'" EXIT
	cp -a "$SUPPORT_DIR/kafka/." "$context/"
	say "fetching Apache Kafka's jars from Maven Central for $KAFKA_IMAGE"
	if ! mvn -B -q -f "$SUPPORT_DIR/kafka/pom.xml" "$MAVEN_COPY" -DincludeScope=runtime \
		-DoutputDirectory="$context/libs" >"$context/fetch.log" 2>&1; then
		tail -n 40 "$context/fetch.log" >&2
		die "Maven could not fetch Kafka's jars; Maven Central must be reachable"
	fi
	rm -f "$context/fetch.log" "$context/pom.xml"
	podman build --quiet --build-arg "BASE=$JRE_IMAGE" --label "$LABEL=$key" \
		--tag "$KAFKA_IMAGE" "$context" >/dev/null
	rm -rf "$context"
	trap - EXIT
	say "built $KAFKA_IMAGE in $((SECONDS - started)) s"
}

socket_answers() {
	[[ -S $SOCKET ]] && curl -fsS --max-time 5 --unix-socket "$SOCKET" http://podman/_ping \
		>/dev/null 2>&1
}

# A service started from a checkout that was deleted since answers pings but cannot start a
# container: conmon fails to get its working directory ("write child: broken pipe").
stop_orphaned_service() {
	local pid
	pid=$(cat "$SOCKET_DIR/streamproc-service.pid" 2>/dev/null) || return 0
	[[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == *" (deleted)" ]] || return 0
	say "podman's API service (pid $pid) runs in a deleted directory; restarting it"
	kill "$pid" 2>/dev/null || true
	rm -f "$SOCKET"
}

start_socket() {
	local deadline
	stop_orphaned_service
	socket_answers && return 0
	mkdir -p "$SOCKET_DIR"
	rm -f "$SOCKET"
	# setsid: the service outlives this script and is not stopped by a Ctrl-C meant for make;
	# env -C /: it does not hold on to this checkout, which may be deleted before it ends.
	setsid env -C / podman system service --time=0 "unix://$SOCKET" </dev/null \
		>>"$SERVICE_LOG" 2>&1 8>&- &
	echo $! >"$SOCKET_DIR/streamproc-service.pid"
	deadline=$((SECONDS + 30))
	until socket_answers; do
		((SECONDS < deadline)) || die "podman's API did not answer on $SOCKET within 30 s \
(log: $SERVICE_LOG)"
		sleep 0.2
	done
	say "podman's Docker-compatible API answers on unix://$SOCKET"
}

cmd_up() {
	local started=$SECONDS
	cmd_check || exit 3
	take_lock
	install_packages
	write_settings
	build_python
	build_kafka
	start_socket
	say "ready in $((SECONDS - started)) s: podman $(podman version --format '{{.Client.Version}}'), \
images $PYTHON_IMAGE and $KAFKA_IMAGE, API unix://$SOCKET"
}

cmd_env() {
	echo "export DOCKER_HOST=unix://$SOCKET"
	# Ryuk, testcontainers' reaper, is an image on Docker Hub; the fixtures remove what they start.
	echo "export TESTCONTAINERS_RYUK_DISABLED=true"
	# Inside a container (/.dockerenv) testcontainers would otherwise look for a gateway.
	echo "export TESTCONTAINERS_CONNECTION_MODE=docker_host"
}

cmd_status() {
	local image status=0
	if ! command -v podman >/dev/null; then
		echo "podman: not installed (scripts/containers.sh up installs it)"
		return 3
	fi
	echo "podman: $(podman version --format '{{.Client.Version}}')"
	for image in "$PYTHON_IMAGE" "$KAFKA_IMAGE"; do
		case $(image_label "$image") in
		absent)
			echo "$image: absent"
			status=3
			;;
		'' | '<no value>') echo "$image: present (not a stand-in)" ;;
		*) echo "$image: stand-in built here" ;;
		esac
	done
	if socket_answers; then
		echo "API: answering on unix://$SOCKET"
	else
		echo "API: not running"
		status=3
	fi
	return "$status"
}

cmd_down() {
	local pid_file=$SOCKET_DIR/streamproc-service.pid pid
	[[ -f $pid_file ]] || {
		say "the API service is not running"
		return 0
	}
	pid=$(<"$pid_file")
	if [[ $pid =~ ^[0-9]+$ ]] && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == \
		*"system service"* ]]; then
		kill -TERM "$pid"
		say "stopped the API service (pid $pid)"
	fi
	rm -f "$pid_file"
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

case ${1:-} in
up) cmd_up ;;
check) cmd_check ;;
status) cmd_status ;;
env) cmd_env ;;
down) cmd_down ;;
*) usage ;;
esac
