#!/usr/bin/env bash
# Runs a class from /opt/kafka/libs, as Kafka's own script of this name does (the options it
# honours: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS, KAFKA_LOG4J_OPTS).
set -euo pipefail
read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xmx256m}"
read -r -a performance <<<"${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:-UsePerfData}"
read -r -a log4j <<<"${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties}"
read -r -a extra <<<"${KAFKA_OPTS:-}"
exec java "${heap[@]}" "${performance[@]}" "${log4j[@]}" -Djava.awt.headless=true "${extra[@]}" \
	-cp '/opt/kafka/libs/*' "$@"
