# syntax=docker/dockerfile:1.7
#
# The videogen user-code image, in two flavours built from the same source:
#
#   docker build --target cpu -t registry.example.com/videogen:0.1.0-cpu .
#   docker build --target gpu -t registry.example.com/videogen:0.1.0-gpu .
#
# cpu: the Dagster code server and run pods (a run's ops all run in its pod), and the Spark KPI
#      driver and executors (Java 17, pyspark, the PostgreSQL JDBC driver from Debian, the S3A jars).
# gpu: the Ray head and GPU workers of the RayService that serves generation (k8s/ray/rayservice.yaml:
#      torch built for CUDA; the NVIDIA driver comes from the node; KubeRay runs `ray start` with bash).
#
# Model weights are NOT in the image: the model cache is a volume mounted at /models
# (VIDEOGEN_MODEL_CACHE, the videogen-model-cache claim). Secrets are never baked in either; they
# arrive as environment variables from Kubernetes Secrets. See docs/kubernetes.md.

# The interpreter the project is tested with (.venv is 3.11.7), on Debian 12, which packages
# ffmpeg, openjdk-17 and libpostgresql-jdbc-java.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG TORCH_VERSION=2.13.0
# PyTorch's own wheel indexes: +cpu wheels (no CUDA libraries, several GB smaller) and CUDA 13.0 wheels
# (the CUDA runtime ships as nvidia-* wheels; the node needs a driver that supports CUDA 13.0).
# Check https://download.pytorch.org/whl/torch/ for the cuXYZ builds of a new torch version.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu130
# S3A for Spark: hadoop-aws must match pyspark 4.1.4's Hadoop client (3.4.2), and the AWS SDK v2
# bundle must be the one that hadoop-aws release declares (hadoop-project/pom.xml, 2.29.52).
ARG HADOOP_AWS_VERSION=3.4.2
ARG AWS_SDK_BUNDLE_VERSION=2.29.52
ARG MAVEN_CENTRAL=https://repo1.maven.org/maven2

# ---------------------------------------------------------------------------------------------
# builder: compilers and headers for any dependency without a wheel; never shipped.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libpq-dev curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The project's direct dependencies first (read from pyproject.toml), so that source edits do not
# re-download torch: this layer only changes with pyproject.toml or constraints.txt.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------
# builder-cpu / builder-gpu: the same install with torch from a different wheel index.
FROM builder AS builder-cpu
ARG TORCH_VERSION
ARG TORCH_CPU_INDEX
RUN pip install --index-url "${TORCH_CPU_INDEX}" --extra-index-url https://pypi.org/simple \
        -c constraints.txt "torch==${TORCH_VERSION}" \
 && pip install -c constraints.txt -r /tmp/requirements.txt
# The whole (.dockerignore-filtered) context: packages that are still empty in git do not break COPY.
COPY . .
RUN pip install -c constraints.txt . \
 && python -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__"

FROM builder AS builder-gpu
ARG TORCH_VERSION
ARG TORCH_CUDA_INDEX
RUN pip install --index-url "${TORCH_CUDA_INDEX}" --extra-index-url https://pypi.org/simple \
        -c constraints.txt "torch==${TORCH_VERSION}" \
 && pip install -c constraints.txt -r /tmp/requirements.txt
# The whole (.dockerignore-filtered) context: packages that are still empty in git do not break COPY.
COPY . .
RUN pip install -c constraints.txt . \
 && python -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}') and torch.version.cuda, torch.__version__"

# ---------------------------------------------------------------------------------------------
# s3a-jars: hadoop-aws and the AWS SDK bundle from Maven Central, checked against the published
# SHA-1 sums (Debian does not package them).
FROM builder AS s3a-jars
ARG HADOOP_AWS_VERSION
ARG AWS_SDK_BUNDLE_VERSION
ARG MAVEN_CENTRAL
WORKDIR /jars
RUN set -eu; \
    for artifact in \
        "org/apache/hadoop/hadoop-aws/${HADOOP_AWS_VERSION}/hadoop-aws-${HADOOP_AWS_VERSION}.jar" \
        "software/amazon/awssdk/bundle/${AWS_SDK_BUNDLE_VERSION}/bundle-${AWS_SDK_BUNDLE_VERSION}.jar"; do \
      jar="$(basename "$artifact")"; \
      curl -fsSL -o "$jar" "${MAVEN_CENTRAL}/${artifact}"; \
      echo "$(curl -fsSL "${MAVEN_CENTRAL}/${artifact}.sha1" | cut -c1-40)  $jar" | sha1sum -c -; \
    done

# ---------------------------------------------------------------------------------------------
# runtime: what both flavours share (ffmpeg; flite and espeak-ng for films' voice-over). No compilers, a non-root user, writable state only where needed.
FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg flite espeak-ng fonts-dejavu-core tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric UID/GID, so that Kubernetes can enforce runAsNonRoot and fsGroup matches.
RUN groupadd --gid 10001 videogen \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/videogen --shell /usr/sbin/nologin videogen
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    VIDEOGEN_HOME=/var/lib/videogen \
    VIDEOGEN_MODEL_CACHE=/models \
    HF_HUB_OFFLINE=1
# /models is a mount point only (no VOLUME: an anonymous volume would hide a missing mount instead
# of failing on it). DAGSTER_HOME/storage is where the fs IO manager writes step outputs; run pods
# mount a bounded emptyDir there (k8s/helm/values.yaml).
RUN mkdir -p /opt/dagster/dagster_home/storage /var/lib/videogen /models /opt/videogen \
 && chown -R 10001:10001 /opt/dagster/dagster_home /var/lib/videogen /models
COPY --chmod=0755 k8s/image/entrypoint.sh /usr/local/bin/videogen-entrypoint
WORKDIR /opt/videogen
# The code location module (definitions.py is a top-level module, not part of the installed packages).
COPY definitions.py ./
# The Dagster code server (gRPC) for the Helm chart's user-code deployment.
EXPOSE 3030
# No HEALTHCHECK: the same image runs the code server, run workers, Ray pods and Spark
# executors, and only the first serves gRPC; Kubernetes ignores HEALTHCHECK anyway and the chart
# probes the code server with `dagster api grpc-health-check`.
HEALTHCHECK NONE
# Pass-through entrypoint: the chart and dagster-k8s set the container args themselves.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/videogen-entrypoint"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "definitions", "-d", "/opt/videogen"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS gpu
COPY --from=builder-gpu /opt/venv /opt/venv
# Read by the NVIDIA container runtime: expose the GPUs Kubernetes assigned, for compute only.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# cpu comes last: a plain `docker build .` gives the image most pods use.
FROM runtime AS cpu
# openjdk's post-install script expects the man directories that slim images drop.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless libpostgresql-jdbc-java \
 && rm -rf /var/lib/apt/lists/* \
 && test -f /usr/share/java/postgresql.jar
COPY --from=s3a-jars /jars/ /opt/videogen/jars/
COPY --from=builder-cpu /opt/venv /opt/venv
ENV SPARK_HOME=/opt/venv/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    VIDEOGEN_JDBC_JAR=/usr/share/java/postgresql.jar
USER 10001:10001
