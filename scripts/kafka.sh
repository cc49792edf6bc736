#!/usr/bin/env bash
# A local single-node Apache Kafka broker (KRaft, broker and controller in one process) for
# development and the integration tests. It runs from Apache Kafka's jars on Maven Central, so
# it needs Java 17+ and, once, Maven; no Docker engine. Linux (setsid, flock, /proc).
#
#   scripts/kafka.sh up         fetch the jars (once), format (once), start, wait until it answers
#   scripts/kafka.sh down       clean shutdown with SIGTERM, SIGKILL after a bounded wait
#   scripts/kafka.sh status     exit 0 running and answering, 1 running but not answering, 3 stopped
#   scripts/kafka.sh logs [-f]  the broker's log
#   scripts/kafka.sh reset      stop, then delete the broker's data (topics, offsets)
#
# Secure mode: `scripts/kafka.sh up --secure` (or KAFKA_SECURE=1; every command takes it) runs
# the same broker as a node of its own on 127.0.0.1:9392 with one SASL_SSL listener (SCRAM-SHA-512
# over TLS). At every start a throw-away CA signs a fresh certificate for 127.0.0.1 and localhost
# (openssl), and the CA's key is deleted. A SCRAM user `streamproc` is created with the storage
# (a random password, kept with the data). Clients find what they need in broker-9392/tls/ca.pem,
# broker-9392/client.properties (librdkafka settings) and broker-9392/streamproc.env
# (STREAMPROC_KAFKA__* variables): `set -a; . .kafka/broker-9392/streamproc.env; set +a`.
#
# Cluster mode: `scripts/kafka.sh up --cluster` (or KAFKA_CLUSTER=1; every command takes it) runs
# three nodes, each a broker and a controller, as one cluster with a three-voter KRaft quorum:
# clients on 127.0.0.1:9492, 9494 and 9496, controllers on the port above each (9493, 9495, 9497).
# Topics default to replication factor 3 and min.insync.replicas 2, so the cluster keeps taking
# acks=all writes with one node down. A killed node is fenced after 4 s without a heartbeat (the
# default is 9 s), so failover tests wait less. For fault tests:
#   scripts/kafka.sh kill N --cluster   SIGKILL node N (1, 2 or 3), as a crash would
#   scripts/kafka.sh up --cluster       start every node that is not running; wait for all three
#   scripts/kafka.sh logs N --cluster   node N's log
#
# Everything lives in a git-ignored folder (default .kafka/ in the repository):
#   libs-<version>/            the broker's jars, complete or absent, never half
#   cds/                       a class-data archive that makes later starts faster
#   broker-<port>/data/        the KRaft log dirs, formatted once and kept across restarts
#   broker-<port>/server.log   the broker's console output (the previous run's is server.log.1)
#   broker-<port>/broker.pid
#   broker-<port>/tls/, credentials, client.properties, streamproc.env   (secure mode)
#   cluster-<port>/node-<n>/   each node's data, log and pid file, as broker-<port>/ (cluster mode)
#   cluster-<port>/cluster.id  the cluster id all three nodes are formatted with
#
# Environment (all optional):
#   KAFKA_PORT            client port on 127.0.0.1 (9092, secure 9392, cluster 9492: the first
#                         node's; nodes take every second port); the controller takes +1
#   KAFKA_SECURE          1: secure mode, as --secure
#   KAFKA_CLUSTER         1: cluster mode, as --cluster
#   KAFKA_HOME_DIR        cache, data and logs (<repo>/.kafka)
#   KAFKA_HEAP_OPTS       (-Xms256m -Xmx768m; each node of the cluster -Xms128m -Xmx512m)
#   KAFKA_LOG_LEVEL       root log level of the broker (WARN)
#   KAFKA_OPTS            extra JVM options for the broker, appended last
#   KAFKA_START_TIMEOUT   seconds to wait for the broker to answer (120)
#   KAFKA_STOP_TIMEOUT    seconds to wait for a clean shutdown before SIGKILL (30)
#   JAVA_HOME             which Java to use (else java on PATH)
set -euo pipefail

readonly KAFKA_VERSION=4.4.0
readonly LOG4J2_VERSION=2.25.5
readonly DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly SUPPORT_DIR=$REPO_ROOT/scripts/kafka
readonly POM=$SUPPORT_DIR/kafka-libs.pom.xml
readonly LOG4J2_CONFIG=$SUPPORT_DIR/log4j2.properties
readonly PROBE=$SUPPORT_DIR/probe.py

COMMAND=${1:-}
[[ $# -gt 0 ]] && shift
SECURE=${KAFKA_SECURE:-0}
CLUSTER=${KAFKA_CLUSTER:-0}
ARGS=()
for arg in "$@"; do
	case $arg in
	--secure) SECURE=1 ;;
	--cluster) CLUSTER=1 ;;
	*) ARGS+=("$arg") ;;
	esac
done
[[ $SECURE == 1 ]] || SECURE=0
[[ $CLUSTER == 1 ]] || CLUSTER=0
# Set by the cluster commands when they run this script for one of the cluster's nodes.
NODE_ID=${KAFKA_CLUSTER_NODE:-}
readonly SECURE CLUSTER NODE_ID COMMAND
if ((SECURE && CLUSTER)); then
	printf 'kafka: error: --secure and --cluster cannot be combined\n' >&2
	exit 1
fi
# Secure mode writes passwords (server.properties, credentials, client files): private files.
((SECURE)) && umask 077

if ((SECURE)); then
	KAFKA_PORT=${KAFKA_PORT:-9392}
elif ((CLUSTER)); then
	KAFKA_PORT=${KAFKA_PORT:-9492}
else
	KAFKA_PORT=${KAFKA_PORT:-9092}
fi
# The highest port taken: the controller's, the last node's in cluster mode.
if ! [[ $KAFKA_PORT =~ ^[0-9]+$ ]] || ((KAFKA_PORT < 1 || KAFKA_PORT + (CLUSTER ? 5 : 1) > 65535)); then
	printf 'kafka: error: KAFKA_PORT must be a port number that leaves room for %s more below 65536, got %q\n' \
		"$((CLUSTER ? 5 : 1))" "$KAFKA_PORT" >&2
	exit 1
fi
if [[ -n $NODE_ID ]] && { ((!CLUSTER)) || [[ ! $NODE_ID =~ ^[1-3]$ ]]; }; then
	printf 'kafka: error: KAFKA_CLUSTER_NODE is 1, 2 or 3 with --cluster, got %q\n' "$NODE_ID" >&2
	exit 1
fi
readonly CLUSTER_NODES=3
# In cluster mode KAFKA_PORT is the first node's: node n listens on KAFKA_PORT + 2(n-1).
readonly CLUSTER_PORT=$KAFKA_PORT
if [[ -n $NODE_ID ]]; then
	KAFKA_PORT=$((CLUSTER_PORT + 2 * (NODE_ID - 1)))
fi
readonly KAFKA_PORT
readonly CONTROLLER_PORT=$((KAFKA_PORT + 1))
readonly BOOTSTRAP=127.0.0.1:$KAFKA_PORT
mkdir -p "${KAFKA_HOME_DIR:=$REPO_ROOT/.kafka}"
KAFKA_HOME_DIR=$(cd "$KAFKA_HOME_DIR" && pwd)
readonly KAFKA_HOME_DIR
readonly LIBS_DIR=$KAFKA_HOME_DIR/libs-$KAFKA_VERSION
readonly CDS_DIR=$KAFKA_HOME_DIR/cds
readonly CLUSTER_DIR=$KAFKA_HOME_DIR/cluster-$CLUSTER_PORT
readonly CLUSTER_ID_FILE=$CLUSTER_DIR/cluster.id
if [[ -n $NODE_ID ]]; then
	readonly NODE_DIR=$CLUSTER_DIR/node-$NODE_ID
else
	readonly NODE_DIR=$KAFKA_HOME_DIR/broker-$KAFKA_PORT
fi
readonly DATA_DIR=$NODE_DIR/data
readonly CONFIG_FILE=$NODE_DIR/server.properties
readonly PID_FILE=$NODE_DIR/broker.pid
readonly LOG_FILE=$NODE_DIR/server.log
readonly TLS_DIR=$NODE_DIR/tls
readonly CREDENTIALS_FILE=$NODE_DIR/credentials
readonly CLIENT_PROPERTIES=$NODE_DIR/client.properties
readonly CLIENT_ENV=$NODE_DIR/streamproc.env
readonly SASL_MECHANISM=SCRAM-SHA-512
readonly SASL_USER=streamproc
PROBE_OPTS=()
((SECURE)) && PROBE_OPTS=(--client-config "$CLIENT_PROPERTIES")
readonly PROBE_OPTS
readonly START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
readonly STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}

say() { printf 'kafka: %s\n' "$*" >&2; }
die() {
	printf 'kafka: error: %s\n' "$*" >&2
	exit 1
}

# One `up`, `down` or `reset` at a time: `make test-integration` runs `up` and then the pytest
# fixture runs it again, and parallel test sessions share the broker.
# A node of the cluster is started and stopped by a cluster command that holds the lock already.
take_lock() {
	[[ -n $NODE_ID ]] && return 0
	exec 9>"$KAFKA_HOME_DIR/.lock"
	flock -w 900 9 || die "another scripts/kafka.sh held $KAFKA_HOME_DIR/.lock for 15 minutes"
}

java_bin() {
	if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
		printf '%s\n' "$JAVA_HOME/bin/java"
	else
		command -v java
	fi
}

require_java() {
	local java settings version major
	java=$(java_bin) || die "Java 17 or newer is needed to run Kafka $KAFKA_VERSION, and no 'java' \
is on PATH (JAVA_HOME is ${JAVA_HOME:-unset}). Install a JDK or JRE 17+, e.g. \
'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu), 'sudo dnf install \
java-17-openjdk-headless' (Fedora), 'brew install openjdk@17' (macOS), or set JAVA_HOME."
	settings=$("$java" -XshowSettings:properties -version 2>&1)
	version=$(sed -n 's/^ *java\.specification\.version = //p' <<<"$settings")
	JAVA_RUNTIME=$(sed -n 's/^ *java\.runtime\.version = //p' <<<"$settings")
	major=${version%%.*}
	JAVA=$java
	[[ $major =~ ^[0-9]+$ ]] && ((major >= 17)) && return 0
	die "Kafka $KAFKA_VERSION needs Java 17 or newer; $java is Java \
${version:-of unknown version}. Install Java 17+ (e.g. 'sudo apt-get install \
openjdk-17-jre-headless') and put it first on PATH or set JAVA_HOME."
}

require_maven() {
	command -v mvn >/dev/null || die "Apache Maven is needed once, to fetch Kafka $KAFKA_VERSION's \
jars from Maven Central into $LIBS_DIR, and 'mvn' is not on PATH. Install it, e.g. \
'sudo apt-get install maven' (Debian/Ubuntu), 'brew install maven' (macOS), or from \
https://maven.apache.org/download.cgi."
}

# A python that can import confluent_kafka, for the readiness probe; none means "fall back to
# the broker's startup log line".
probe_python() {
	local python
	for python in "$REPO_ROOT/.venv/bin/python" python3; do
		if "$python" -c 'import confluent_kafka' 2>/dev/null; then
			printf '%s\n' "$python"
			return 0
		fi
	done
	return 1
}

fetch_libs() {
	local stamp partial fetch_log jar started
	stamp=$(sha256sum "$POM")
	stamp=${stamp%% *}
	if [[ -f $LIBS_DIR/.complete && $(<"$LIBS_DIR/.complete") == "$stamp" ]]; then
		return 0
	fi
	require_maven
	say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS_DIR (only once)"
	started=$SECONDS
	# Copy into a side folder and rename it into place only when complete, so an interrupted or
	# failed download never passes for a cache.
	partial=$KAFKA_HOME_DIR/.libs-$KAFKA_VERSION.partial
	fetch_log=$KAFKA_HOME_DIR/fetch.log
	rm -rf "$partial"
	if ! mvn -B -q -f "$POM" "$DEPENDENCY_PLUGIN:copy-dependencies" \
		-DincludeScope=runtime -DoutputDirectory="$partial" >"$fetch_log" 2>&1; then
		tail -n 40 "$fetch_log" >&2
		rm -rf "$partial"
		die "Maven could not fetch Kafka's jars (full output: $fetch_log). Maven Central must be \
reachable, directly or through a mirror in ~/.m2/settings.xml."
	fi
	for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" \
		"kafka-server-$KAFKA_VERSION.jar" "log4j-core-$LOG4J2_VERSION.jar" \
		"log4j-slf4j-impl-$LOG4J2_VERSION.jar"; do
		[[ -f $partial/$jar ]] || {
			rm -rf "$partial"
			die "Maven finished but $jar is missing from the copied jars; see $fetch_log"
		}
	done
	printf '%s\n' "$stamp" >"$partial/.complete"
	rm -rf "$LIBS_DIR" "$CDS_DIR"
	mv "$partial" "$LIBS_DIR"
	rm -f "$fetch_log"
	say "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1)) \
in $((SECONDS - started)) s"
}

# The client listener: plain, or SASL_SSL in secure mode. The controller listener stays plain on
# loopback: it is the quorum's own channel inside this one process, not a door for clients.
listener_config() {
	if ((!SECURE)); then
		cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
		return 0
	fi
	cat <<EOF
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=$SASL_MECHANISM
sasl.mechanism.inter.broker.protocol=$SASL_MECHANISM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(credential broker)";
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
EOF
}

# Secure mode's passwords, one "name=password" line each, made with the storage and kept with it:
# SCRAM credentials live in the cluster metadata that the format writes.
credential() {
	sed -n "s/^$1=//p" "$CREDENTIALS_FILE"
}

new_credentials() {
	local file=$1 name
	: >"$file"
	for name in broker "$SASL_USER"; do
		printf '%s=%s\n' "$name" "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >>"$file"
	done
}

# A throw-away CA signs a certificate for 127.0.0.1 and localhost, then its key is deleted: no
# one can sign another certificate this CA vouches for. Made anew at every start.
make_tls() {
	local work
	command -v openssl >/dev/null || die "secure mode needs openssl to make its certificates \
(e.g. 'sudo apt-get install openssl')"
	rm -rf "$TLS_DIR"
	mkdir -p "$TLS_DIR"
	chmod 700 "$TLS_DIR"
	work=$(mktemp -d)
	if ! (
		set -e
		cd "$work"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
			-keyout ca.key -out ca.pem -subj "/CN=streamproc throw-away CA $(date -u +%FT%TZ)" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout broker.key \
			-out broker.csr -subj "/CN=localhost"
		printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
			"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" >ext.cnf
		openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
			-extfile ext.cnf -out broker.crt
		openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
		cat broker.pk8 broker.crt ca.pem >"$TLS_DIR/broker.pem"
		cp ca.pem "$TLS_DIR/ca.pem"
	) >"$TLS_DIR/openssl.log" 2>&1; then
		rm -rf "$work"
		cat "$TLS_DIR/openssl.log" >&2
		die "openssl could not make the broker's certificates (output above)"
	fi
	rm -rf "$work" "$TLS_DIR/openssl.log"
	chmod 600 "$TLS_DIR/broker.pem"
	chmod 644 "$TLS_DIR/ca.pem"
}

# New passwords go with new storage; kept storage needs the passwords it was made with.
prepare_secure() {
	if [[ ! -f $DATA_DIR/meta.properties ]]; then
		new_credentials "$CREDENTIALS_FILE"
	elif [[ ! -s $CREDENTIALS_FILE ]]; then
		die "$CREDENTIALS_FILE is missing, and the SCRAM users in $DATA_DIR were made with the \
passwords it held; 'scripts/kafka.sh reset --secure' starts afresh"
	fi
	make_tls
}

# What a client of the secure listener needs: librdkafka settings, and streamproc's variables.
write_client_files() {
	cat >"$CLIENT_PROPERTIES" <<EOF
bootstrap.servers=$BOOTSTRAP
security.protocol=SASL_SSL
sasl.mechanism=$SASL_MECHANISM
sasl.username=$SASL_USER
sasl.password=$(credential "$SASL_USER")
ssl.ca.location=$TLS_DIR/ca.pem
EOF
	cat >"$CLIENT_ENV" <<EOF
STREAMPROC_KAFKA__BOOTSTRAP_SERVERS=$BOOTSTRAP
STREAMPROC_KAFKA__SECURITY_PROTOCOL=SASL_SSL
STREAMPROC_KAFKA__SASL_MECHANISM=$SASL_MECHANISM
STREAMPROC_KAFKA__SASL_USERNAME=$SASL_USER
STREAMPROC_KAFKA__SASL_PASSWORD=$(credential "$SASL_USER")
STREAMPROC_KAFKA__SSL_CA_LOCATION=$TLS_DIR/ca.pem
EOF
}

# The quorum and the replication of one node, or of a node of the cluster.
replication_config() {
	if [[ -z $NODE_ID ]]; then
		cat <<EOF
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
default.replication.factor=1
min.insync.replicas=1

# One node: every internal topic must have replication factor 1, or consumer groups and
# transactions wait forever for a coordinator. One offsets partition and no initial rebalance
# delay make a new consumer group's first join fast.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
		return 0
	fi
	local voters=() n
	for ((n = 1; n <= CLUSTER_NODES; n++)); do
		voters+=("$n@127.0.0.1:$((CLUSTER_PORT + 2 * (n - 1) + 1))")
	done
	cat <<EOF
node.id=$NODE_ID
# A static quorum of the three nodes: each is a voter, formatted with the same cluster id.
controller.quorum.voters=$(IFS=,; printf '%s' "${voters[*]}")
default.replication.factor=3
min.insync.replicas=2

# Internal topics too: the group coordinator and the transaction coordinator survive a node.
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
group.initial.rebalance.delay.ms=0
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2

# A node that stops heartbeating is fenced (its partitions get new leaders) after 4 s, not 9.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF
}

write_config() {
	local log_dirs=$1 file=$2
	cat >"$file" <<EOF
# Written by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
controller.listener.names=CONTROLLER
$(listener_config)
log.dirs=$log_dirs

# Topics are created explicitly (streamproc.kafka.admin.ensure_topics, the test fixtures), so
# a typo in a topic name fails instead of silently creating a topic.
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1

$(replication_config)

# Sized for a 2-core development machine.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

# A Kafka cluster id is 16 random bytes in URL-safe base64 without padding; Kafka's own
# generator also avoids a leading '-', which would read as an option.
new_cluster_id() {
	local cluster_id=-
	while [[ $cluster_id == -* ]]; do
		cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
	done
	printf '%s\n' "$cluster_id"
}

# Formats into a side folder and renames it into place, so a failed format leaves no data dir
# that a later start would trust.
format_storage() {
	[[ -f $DATA_DIR/meta.properties ]] && return 0
	local partial=$NODE_DIR/data.partial cluster_id output user scram
	rm -rf "$partial" "$DATA_DIR"
	write_config "$partial" "$NODE_DIR/format.properties"
	if [[ -n $NODE_ID ]]; then
		cluster_id=$(<"$CLUSTER_ID_FILE")
	else
		cluster_id=$(new_cluster_id)
	fi
	# One node is a quorum of its own; a cluster's nodes find theirs in controller.quorum.voters.
	scram=()
	[[ -z $NODE_ID ]] && scram=(--standalone)
	if ((SECURE)); then
		# The users exist from the first start on. Their passwords are on this command line for
		# the second the tool runs: acceptable for a throw-away local broker, not for production.
		for user in broker "$SASL_USER"; do
			scram+=(--add-scram "$SASL_MECHANISM=[name=$user,password=$(credential "$user")]")
		done
	fi
	if ! output=$("$JAVA" "${TOOL_OPTS[@]}" -cp "$LIBS_DIR/*" kafka.tools.StorageTool format \
		-t "$cluster_id" -c "$NODE_DIR/format.properties" "${scram[@]}" 2>&1); then
		rm -rf "$partial"
		printf '%s\n' "$output" >&2
		die "formatting the broker's storage failed (output above)"
	fi
	mv "$partial" "$DATA_DIR"
	rm -f "$NODE_DIR/format.properties"
}

# Prints the broker's pid when the pid file names a live broker of this node; removes a stale
# pid file (the process is gone or the pid was reused by something else).
running_pid() {
	local pid cmdline
	[[ -f $PID_FILE ]] || return 1
	pid=$(<"$PID_FILE")
	if [[ $pid =~ ^[0-9]+$ ]] && cmdline=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) &&
		[[ $cmdline == *kafka.Kafka*"$CONFIG_FILE"* ]] && ! is_zombie "$pid"; then
		printf '%s\n' "$pid"
		return 0
	fi
	rm -f "$PID_FILE"
	return 1
}

is_zombie() {
	local stat
	{ stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} == Z ]]
}

alive() { kill -0 "$1" 2>/dev/null && ! is_zombie "$1"; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

port_holder() {
	local line
	line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1) || true
	if [[ $line =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
		printf '%s (pid %s)' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
	else
		printf 'another process'
	fi
}

# A broker of this node that lost its pid file is adopted rather than reported as a stranger.
adopt_orphan() {
	local pid
	pid=$(pgrep -f -n -- "kafka\.Kafka $CONFIG_FILE\$" || true)
	[[ -n $pid ]] || return 1
	printf '%s\n' "$pid" >"$PID_FILE"
	say "found this node's broker running without a pid file (pid $pid); tracking it again"
	printf '%s\n' "$pid"
}

log_tail() {
	[[ -f $LOG_FILE ]] || return 0
	printf -- '--- last lines of %s ---\n' "$LOG_FILE" >&2
	tail -n 40 "$LOG_FILE" >&2
	printf -- '---\n' >&2
}

# Waits until the broker answers a metadata request (or, without a python that has
# confluent_kafka, until it logs "Kafka Server started"). Returns 2 when the process ended.
wait_ready() {
	local pid=$1 timeout=$2 python deadline
	if python=$(probe_python); then
		"$python" "$PROBE" "$BOOTSTRAP" --timeout "$timeout" --pid "$pid" "${PROBE_OPTS[@]}"
		return
	fi
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		alive "$pid" || return 2
		grep -q 'Kafka Server started' "$LOG_FILE" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

stop_pid() {
	local pid=$1 deadline archive
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if alive "$pid"; then
		say "the broker did not stop within ${STOP_TIMEOUT} s of SIGTERM; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 10))
		while alive "$pid" && ((SECONDS < deadline)); do
			sleep 0.1
		done
		[[ -z $NODE_ID ]] && rm -f "$CDS_DIR"/*.jsa.partial
	fi
	if [[ -n $NODE_ID ]]; then
		rm -f "$PID_FILE"
		return 0 # the archive is the single broker's to write
	fi
	for archive in "$CDS_DIR"/*.jsa.partial; do
		[[ -s $archive ]] && mv -f "$archive" "${archive%.partial}"
	done
	rm -f "$PID_FILE"
}

jvm_options() {
	local heap extra archive default_heap=(-Xms256m -Xmx768m)
	# Three nodes of a test cluster need less each than the development broker.
	[[ -n $NODE_ID ]] && default_heap=(-Xms128m -Xmx512m)
	read -r -a heap <<<"${KAFKA_HEAP_OPTS:-${default_heap[*]}}"
	read -r -a extra <<<"${KAFKA_OPTS:-}"
	# Measured on 2 cores (start to first metadata answer; see the commit that added this):
	# Serial GC instead of G1 starts a little faster and leaves the second core to the tests; an
	# AppCDS archive of the broker's classes cuts the start from about 3.7 s to 2.2 s and costs
	# nothing at run time. C1-only (-XX:TieredStopAtLevel=1) would save another 0.7 s but slows
	# long benchmark runs, so it is left to KAFKA_OPTS.
	BROKER_OPTS=(
		"${heap[@]}"
		-XX:+UseSerialGC
		-XX:+ExitOnOutOfMemoryError
		-XX:-UsePerfData
		-Xlog:cds=off
		-Xlog:cds+dynamic=off
		-Djava.awt.headless=true
		"-Dlog4j2.configurationFile=$LOG4J2_CONFIG"
		"-Dkafka.log.level=${KAFKA_LOG_LEVEL:-WARN}"
	)
	# The archive is only valid for this JVM build and these jar files, hence the name and its
	# removal when the jars are fetched again. The JVM writes it when the broker exits; `down`
	# keeps it only after a clean exit, so a half-written archive is never used.
	archive=$CDS_DIR/kafka-$KAFKA_VERSION-java-${JAVA_RUNTIME//[^A-Za-z0-9._-]/_}.jsa
	mkdir -p "$CDS_DIR"
	# Only a single broker writes the archive: three nodes would write one file at once.
	[[ -z $NODE_ID ]] && rm -f "$CDS_DIR"/*.jsa.partial
	if [[ -s $archive ]]; then
		BROKER_OPTS+=("-XX:SharedArchiveFile=$archive")
	elif [[ -z $NODE_ID ]]; then
		BROKER_OPTS+=("-XX:ArchiveClassesAtExit=$archive.partial")
	fi
	BROKER_OPTS+=("${extra[@]}")
	# The storage tool runs for a second: the fastest JVM start matters, not peak speed.
	TOOL_OPTS=(
		-Xmx256m
		-XX:+UseSerialGC
		-XX:TieredStopAtLevel=1
		-XX:-UsePerfData
		"-Dlog4j2.configurationFile=$LOG4J2_CONFIG"
	)
}

cmd_up() {
	local pid port started status
	started=$SECONDS
	take_lock
	mkdir -p "$NODE_DIR"
	if pid=$(running_pid) || pid=$(adopt_orphan); then
		if wait_ready "$pid" "$START_TIMEOUT"; then
			say "already running on $BOOTSTRAP (pid $pid)"
			return 0
		fi
		log_tail
		die "a broker is running (pid $pid) but does not answer on $BOOTSTRAP; \
'scripts/kafka.sh down' stops it"
	fi
	for port in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
		if port_open "$port"; then
			die "port $port on 127.0.0.1 is taken by $(port_holder "$port"), not by this \
repository's broker. Stop that process, or use it for the tests with KAFKA_BOOTSTRAP=127.0.0.1:$port \
if it is a Kafka broker, or pick other ports with KAFKA_PORT=<port> (the controller takes the next)."
		fi
	done
	require_java
	fetch_libs
	jvm_options
	if ((SECURE)); then
		prepare_secure
	fi
	write_config "$DATA_DIR" "$CONFIG_FILE"
	format_storage
	if ((SECURE)); then
		write_client_files
	fi
	[[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
	say "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (log: $LOG_FILE)"
	# setsid: the broker must outlive this script and must not receive a Ctrl-C meant for the
	# command that started it (make, pytest). 9>&-: it must not inherit the lock.
	setsid "$JAVA" "${BROKER_OPTS[@]}" -cp "$LIBS_DIR/*" kafka.Kafka "$CONFIG_FILE" \
		</dev/null >"$LOG_FILE" 2>&1 9>&- &
	pid=$!
	printf '%s\n' "$pid" >"$PID_FILE"
	status=0
	wait_ready "$pid" "$START_TIMEOUT" || status=$?
	case $status in
	0)
		say "ready on $BOOTSTRAP (pid $pid) after $((SECONDS - started)) s"
		;;
	2)
		rm -f "$PID_FILE"
		log_tail
		die "the broker exited during start-up (log above)"
		;;
	*)
		log_tail
		stop_pid "$pid"
		die "the broker did not answer on $BOOTSTRAP within ${START_TIMEOUT} s (log above); \
stopped it. A slow machine may need KAFKA_START_TIMEOUT=<seconds>."
		;;
	esac
}

cmd_down() {
	local pid
	take_lock
	if ! pid=$(running_pid) && ! pid=$(adopt_orphan); then
		say "not running"
		return 0
	fi
	say "stopping the broker (pid $pid)"
	stop_pid "$pid"
	say "stopped"
}

cmd_status() {
	local pid python
	if ! pid=$(running_pid) && ! pid=$(adopt_orphan); then
		echo "stopped (no broker of this repository on $BOOTSTRAP)"
		if port_open "$KAFKA_PORT"; then
			echo "port $KAFKA_PORT is in use by $(port_holder "$KAFKA_PORT")"
		fi
		return 3
	fi
	python=$(probe_python) || python=
	if [[ -z $python ]] || "$python" "$PROBE" "$BOOTSTRAP" --timeout 5 --pid "$pid" "${PROBE_OPTS[@]}"; then
		echo "running: pid $pid, bootstrap $BOOTSTRAP, data $DATA_DIR, log $LOG_FILE"
		return 0
	fi
	echo "running (pid $pid) but not answering on $BOOTSTRAP; see $LOG_FILE"
	return 1
}

cmd_logs() {
	[[ -f $LOG_FILE ]] || die "no broker log yet at $LOG_FILE"
	if [[ ${1:-} == -f ]]; then
		exec tail -n 100 -F "$LOG_FILE"
	fi
	cat "$LOG_FILE"
}

# A crash, for fault tests: no shutdown hook runs, no leadership is handed over.
cmd_kill() {
	local pid
	take_lock
	if ! pid=$(running_pid) && ! pid=$(adopt_orphan); then
		say "node $NODE_ID is not running"
		return 0
	fi
	kill -KILL "$pid" 2>/dev/null || true
	while alive "$pid"; do
		sleep 0.05
	done
	rm -f "$PID_FILE"
	say "killed node $NODE_ID (pid $pid) with SIGKILL"
}

cmd_reset() {
	cmd_down
	rm -rf "$DATA_DIR" "$NODE_DIR/data.partial" "$TLS_DIR"
	rm -f "$CREDENTIALS_FILE" "$CLIENT_PROPERTIES" "$CLIENT_ENV"
	say "deleted $DATA_DIR; the next 'up' formats a fresh cluster"
}

# -- cluster mode: the commands below run this script once per node ----------------------------

cluster_bootstrap() {
	local n servers=()
	for ((n = 1; n <= CLUSTER_NODES; n++)); do
		servers+=("127.0.0.1:$((CLUSTER_PORT + 2 * (n - 1)))")
	done
	(IFS=,; printf '%s\n' "${servers[*]}")
}

on_node() {
	local node=$1
	shift
	env KAFKA_CLUSTER=1 KAFKA_PORT="$CLUSTER_PORT" KAFKA_CLUSTER_NODE="$node" \
		"$REPO_ROOT/scripts/kafka.sh" "$@"
}

# Each node waits for a majority of the quorum before it answers, so all start at once.
cluster_up() {
	local started=$SECONDS n pids=() failed=() python bootstrap
	take_lock
	fetch_libs
	mkdir -p "$CLUSTER_DIR"
	[[ -s $CLUSTER_ID_FILE ]] || new_cluster_id >"$CLUSTER_ID_FILE"
	for ((n = 1; n <= CLUSTER_NODES; n++)); do
		on_node "$n" up &
		pids+=($!)
	done
	for ((n = 1; n <= CLUSTER_NODES; n++)); do
		wait "${pids[n - 1]}" || failed+=("$n")
	done
	((${#failed[@]} == 0)) || die "node(s) ${failed[*]} did not start (see above)"
	bootstrap=$(cluster_bootstrap)
	# Every node answers; ready means every node is also an unfenced broker of the cluster.
	if python=$(probe_python) &&
		! "$python" "$PROBE" "$bootstrap" --timeout "$START_TIMEOUT" --brokers "$CLUSTER_NODES"; then
		die "the cluster did not list all $CLUSTER_NODES brokers within ${START_TIMEOUT} s"
	fi
	say "cluster ready on $bootstrap after $((SECONDS - started)) s"
}

cluster_down() {
	local n pids=()
	take_lock
	for ((n = 1; n <= CLUSTER_NODES; n++)); do
		on_node "$n" down &
		pids+=($!)
	done
	wait "${pids[@]}" || true
}

cluster_status() {
	local n status=0 python
	for ((n = 1; n <= CLUSTER_NODES; n++)); do
		printf 'node %s: ' "$n"
		on_node "$n" status || status=1
	done
	if ((status == 0)) && python=$(probe_python) &&
		! "$python" "$PROBE" "$(cluster_bootstrap)" --timeout 5 --brokers "$CLUSTER_NODES"; then
		echo "the cluster does not list all $CLUSTER_NODES brokers (a node is fenced)"
		status=1
	fi
	return "$status"
}

node_argument() {
	[[ ${1:-} =~ ^[1-3]$ ]] || die "name the node: 1, 2 or 3 (e.g. 'scripts/kafka.sh $COMMAND 2 --cluster')"
}

cluster_main() {
	case $COMMAND in
	up) cluster_up ;;
	down) cluster_down ;;
	status) cluster_status ;;
	kill)
		node_argument "${ARGS[0]:-}"
		take_lock
		on_node "${ARGS[0]}" kill
		;;
	logs)
		node_argument "${ARGS[0]:-}"
		on_node "${ARGS[0]}" logs "${ARGS[@]:1}"
		;;
	reset)
		cluster_down
		rm -rf "$CLUSTER_DIR"
		say "deleted $CLUSTER_DIR; the next 'up --cluster' formats a fresh cluster"
		;;
	*) usage ;;
	esac
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

if ((CLUSTER)) && [[ -z $NODE_ID ]]; then
	cluster_main
	exit
fi
case $COMMAND in
up) cmd_up ;;
kill) [[ -n $NODE_ID ]] && cmd_kill || usage ;;
down) cmd_down ;;
status) cmd_status ;;
logs) cmd_logs "${ARGS[0]:-}" ;;
reset) cmd_reset ;;
*) usage ;;
esac
