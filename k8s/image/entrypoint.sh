#!/usr/bin/env bash
# Entrypoint of the videogen images (started by tini, which forwards signals and reaps the ffmpeg
# and JVM children).
#
# Dagster and the Helm chart start every container with explicit arguments (dagster api grpc ...,
# dagster code-server start ..., dagster api execute_run ..., dagster api execute_step ...): those
# run exactly as given.
#
# Spark on Kubernetes starts executor pods from the image named by spark.kubernetes.container.image
# with the single argument "executor" and the executor's settings in environment variables (the
# contract of Spark's own image entrypoint, resource-managers/kubernetes/docker/.../entrypoint.sh).
# That case starts the executor backend of the pyspark installed in the image, so the KPI executors
# run the same Spark, Java and JDBC driver as the driver (the Dagster run pod).
set -euo pipefail

if [[ "${1:-}" != "executor" ]]; then
  exec "$@"
fi
shift

: "${SPARK_HOME:?SPARK_HOME must point at the pyspark installation}"

# Spark passes the executor JVM options as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... (in that order).
java_opts=()
while IFS= read -r option; do
  java_opts+=("$option")
done < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//')

pod_ip="${SPARK_EXECUTOR_POD_IP}"
if [[ "$pod_ip" == *:* ]]; then
  pod_ip="[$pod_ip]"  # IPv6 literal
fi

# Executors fetch the driver's jars (spark.jars) into their working directory: it must be writable
# by the non-root user, which the image's WORKDIR is not.
work_dir="${SPARK_WORK_DIR:-/tmp/spark-work}"
mkdir -p "$work_dir"
cd "$work_dir"

exec java "${java_opts[@]}" \
  -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
  -cp "${SPARK_CLASSPATH:+${SPARK_CLASSPATH}:}${SPARK_HOME}/jars/*" \
  org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
  --driver-url "${SPARK_DRIVER_URL}" \
  --executor-id "${SPARK_EXECUTOR_ID}" \
  --cores "${SPARK_EXECUTOR_CORES}" \
  --app-id "${SPARK_APPLICATION_ID}" \
  --hostname "${pod_ip}" \
  --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
  --podName "${SPARK_EXECUTOR_POD_NAME}" \
  "$@"
