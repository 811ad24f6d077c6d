# Submission image: the vLLM runtime plus run.sh, run.py, submission/, models/ and an optional ensemble.json (nothing else).
#   docker build -t aij-judge-submission .            (from an unpacked bundle or the repo after `build/bundle.py`)
#   docker run --rm --gpus all --network none -v "$PWD/data:/data" aij-judge-submission /data/test.csv /data/predictions.csv
# The base is pinned through an ARG so an offline machine can pass a locally loaded image instead.
ARG BASE_IMAGE=vllm/vllm-openai:v0.26.0
FROM ${BASE_IMAGE}
# The interpreter run.sh uses; a locally bootstrapped base may keep its Python elsewhere.
ARG PYTHON=python3

ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHON=${PYTHON}

WORKDIR /app
RUN groupadd --system --gid 10001 judge && useradd --system --uid 10001 --gid judge --home-dir /app --shell /usr/sbin/nologin judge
# ensemble.json is optional (a bundle made with --ensemble has one): the glob copies it when present and, beside
# run.sh, never leaves the COPY without a source.
COPY --chown=10001:10001 run.sh run.py ensemble.jso[n] ./
COPY --chown=10001:10001 submission/ submission/
# The base must run the runtime: import every runtime module, print torch/transformers/vLLM versions, refuse a
# transformers older than vLLM 0.26's floor (submission/selfcheck.py). A base that cannot fails here, not in grading.
RUN "${PYTHON}" -m submission.selfcheck
COPY --chown=10001:10001 models/ models/
USER 10001:10001

ENTRYPOINT ["/app/run.sh"]
CMD ["/data/test.csv", "/data/predictions.csv"]
