# streamproc as a container: `docker build -t streamproc .`, then `docker run streamproc --help`.
# docker-compose.yml runs it twice: as the Control Room emulator and as the processor.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/streamproc
# Dependencies first, pinned by constraints.txt, so a source change does not reinstall them.
# Every dependency ships manylinux wheels (confluent-kafka bundles librdkafka): no compiler.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && /opt/streamproc/bin/pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY streamproc ./streamproc
# pip and setuptools are build tools: they stay in this stage.
RUN /opt/streamproc/bin/pip install --no-deps . \
 && /opt/streamproc/bin/python -m pip uninstall -q -y pip setuptools \
 && /opt/streamproc/bin/python -m compileall -q /opt/streamproc/lib

FROM python:3.11-slim
RUN groupadd --system --gid 10001 streamproc \
 && useradd --system --uid 10001 --gid streamproc --no-create-home --home-dir /app streamproc
COPY --from=build /opt/streamproc /opt/streamproc
WORKDIR /app
COPY config ./config
# In a container the metrics and health server must listen beyond loopback to be reachable.
ENV PATH=/opt/streamproc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMPROC_OBSERVABILITY__HTTP_HOST=0.0.0.0
# Numeric, so runtimes that enforce non-root (runAsNonRoot) can verify it without /etc/passwd.
USER 10001:10001
# 8090: the emulator; 9108: the processor's /metrics, /healthz (liveness) and /readyz
# (readiness). No HEALTHCHECK: the image runs several commands (processor, emulator, generator)
# and each answers on its own port, so each deployment names its probe (docker-compose.yml,
# or Kubernetes probes on /healthz and /readyz).
EXPOSE 8090 9108
ENTRYPOINT ["streamproc"]
CMD ["--help"]
