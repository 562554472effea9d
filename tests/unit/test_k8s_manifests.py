"""`embedq k8s render`: the manifests validate against Kubernetes 1.37 and KEDA 2.20 schemas.

Kubernetes objects go through kubernetes-validate's bundled schemas in strict mode (unknown
fields fail, as `kubectl apply --validate=strict` does); ScaledObjects through the CRD schema
vendored from KEDA v2.20.2, made strict the same way. Nothing is fetched.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from embedq.config import load_registry
from embedq.ops.k8s.objects import Options
from embedq.ops.k8s.render import chained_queues, write
from embedq.ops.stack import queues_of
from tests.support import HASHING_MODEL, write_config

ROOT = Path(__file__).resolve().parents[2]
KEDA_CRD = ROOT / "tests" / "data" / "keda" / "keda.sh_scaledobjects.yaml"
K8S_VERSION = "1.37"


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _keda_validator() -> jsonschema.Draft202012Validator:
    crd = yaml.safe_load(KEDA_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by Kubernetes
    return jsonschema.Draft202012Validator(_strict(schema))


def _validate(document: dict[str, Any], keda: jsonschema.Draft202012Validator) -> None:
    if document["apiVersion"].startswith("keda.sh/"):
        assert document["kind"] == "ScaledObject"
        keda.validate(document)
    else:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def _documents(folder: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted(folder.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s")
    write(load_registry(), None, Options(), out)
    return out


def test_every_rendered_object_validates(rendered):
    keda = _keda_validator()
    documents = _documents(rendered)
    assert {d["kind"] for d in documents} >= {"ConfigMap", "StatefulSet", "Deployment",
                                               "Service", "ScaledObject"}
    for document in documents:
        _validate(document, keda)


def test_the_validators_do_refuse_a_wrong_object(rendered):
    keda = _keda_validator()
    worker = next(d for d in _documents(rendered) if d["kind"] == "Deployment"
                  and d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker")
    broken = copy.deepcopy(worker)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}  # a typo
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken, keda)
    scaled = next(d for d in _documents(rendered) if d["kind"] == "ScaledObject")
    wrong = copy.deepcopy(scaled)
    wrong["spec"]["minReplicas"] = 0  # KEDA spells it minReplicaCount
    with pytest.raises(jsonschema.ValidationError):
        _validate(wrong, keda)


def test_one_worker_and_scaled_object_per_queue_scaling_on_texts(rendered):
    documents = _documents(rendered)
    queues = set(queues_of(load_registry()))
    workers = {d["metadata"]["labels"]["embedq/queue"]: d for d in documents
               if d["kind"] == "Deployment" and "embedq/queue" in d["metadata"]["labels"]}
    scaled = {d["metadata"]["labels"]["embedq/queue"]: d for d in documents
              if d["kind"] == "ScaledObject"}
    assert set(workers) == set(scaled) == queues
    for queue, deployment in workers.items():
        assert "replicas" not in deployment["spec"]  # KEDA owns the count
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["exec"]["command"][:4] == ["embedq", "probe", "--queue",
                                                               queue]
        assert container["resources"]["limits"]["memory"].endswith("Mi")
        spec = scaled[queue]["spec"]
        assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert spec["minReplicaCount"] == 0  # the packaged routes have no fallback chains
        queries = " ".join(t["metadata"]["query"] for t in spec["triggers"])
        assert f'embedq_queue_texts_waiting{{queue="{queue}"}}' in queries
        assert f'embedq_queue_oldest_age_seconds{{queue="{queue}"}}' in queries


def test_a_fallback_chain_keeps_one_replica(tmp_path):
    folder = write_config(tmp_path / "config", {"a": HASHING_MODEL, "b": HASHING_MODEL},
                          {"r": {"model": "a", "fallback": ["b"]}, "s": {"model": "b"}},
                          default="r")
    registry = load_registry(folder)
    assert chained_queues(registry) == {"embed.a.fp32", "embed.b.fp32"}
    write(registry, folder, Options(namespace="ml"), tmp_path / "out")
    documents = _documents(tmp_path / "out")
    assert {d["spec"]["minReplicaCount"] for d in documents if d["kind"] == "ScaledObject"} == {1}
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    assert '"fallback"' in config["data"]["routes.json"]
    assert {d["metadata"]["namespace"] for d in documents} == {"ml"}


def test_the_committed_manifests_are_what_render_writes(rendered):
    committed = ROOT / "deploy" / "kubernetes"
    names = sorted(p.name for p in rendered.iterdir())
    assert sorted(p.name for p in committed.iterdir()) == names
    for name in names:
        assert (committed / name).read_text() == (rendered / name).read_text(), (
            f"deploy/kubernetes/{name} is stale: embedq k8s render --out deploy/kubernetes")


def test_the_command_writes_the_files(tmp_path):
    done = subprocess.run([sys.executable, "-m", "embedq.cli", "k8s", "render", "--out",
                           str(tmp_path), "--max-replicas", "3"],
                          capture_output=True, text=True, check=True)
    assert "README.txt" in done.stdout
    assert "kubectl apply -f ." in (tmp_path / "README.txt").read_text()


def test_a_route_broker_named_by_variable_is_rendered_and_given_to_every_pod(tmp_path):
    """``"broker_url": "${VAR}"``: the render owns that Redis (its own StatefulSet, Service and
    selector) and every embedq pod gets VAR pointing at it; a spelled-out URL is the user's."""
    folder = write_config(tmp_path / "config", {m: HASHING_MODEL for m in "abc"}, {
        "near": {"model": "a", "precision": "fp32"},
        "etl": {"model": "b", "precision": "fp32", "broker_url": "${EMBEDQ_ETL_BROKER_URL}",
                "cache_url": "${EMBEDQ_ETL_CACHE_URL}"},
        "outside": {"model": "c", "precision": "fp32",
                    "broker_url": "rediss://redis.example:6380/0"}}, default="near")
    out = tmp_path / "k8s"
    write(load_registry(folder), folder, Options(), out)
    keda = _keda_validator()
    documents = _documents(out)
    for document in documents:
        _validate(document, keda)
    brokers = [d for d in documents if d["kind"] == "StatefulSet"]
    assert [d["metadata"]["name"] for d in brokers] == ["embedq-broker", "embedq-broker-etl"]
    selectors = [str(d["spec"]["selector"]) for d in documents if d["kind"] == "Deployment"]
    assert len(selectors) == len(set(selectors))  # no two Deployments select the same pods
    assert (out / "12-embedq-cache-etl.yaml").exists()
    containers = [c for d in documents if d["kind"] == "Deployment"
                  for c in d["spec"]["template"]["spec"]["containers"] if c["name"] != "redis"]
    assert containers
    for container in containers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["EMBEDQ_ETL_BROKER_URL"] == \
            "redis://:$(REDIS_PASSWORD)@embedq-broker-etl:6379/0"
        assert env["EMBEDQ_ETL_CACHE_URL"] == "redis://:$(REDIS_PASSWORD)@embedq-cache-etl:6379/0"
        names = [e["name"] for e in container["env"]]
        assert names.index("REDIS_PASSWORD") < names.index("EMBEDQ_ETL_BROKER_URL")
