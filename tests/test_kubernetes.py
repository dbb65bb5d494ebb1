"""deploy/kubernetes: every manifest passes kubernetes-validate (strict: no unknown field)
against each Kubernetes version it bundles, and what the workers read from them is a
valid stream-gate configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from stream_gate.config import check_environment, check_runnable, load_settings

from .conftest import ROOT

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
VERSIONS = sorted({".".join(v.split(".")[:2]) for v in all_versions()})


def _docs() -> list[dict[str, Any]]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def _kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _docs() if d["kind"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_strictly(version: str) -> None:
    assert MANIFESTS
    for doc in _docs():
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_manifest_with_a_typo_is_refused() -> None:
    deployment = _kind("Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_the_configmap_is_a_runnable_cluster_config_and_the_env_names_real_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cm,) = _kind("ConfigMap")
    data = tomllib.loads(cm["data"]["cameras.toml"])
    secret_file = data["redis"]["password_file"]
    password = tmp_path / "redis-password"
    password.write_text("s3cret\n")
    data["redis"]["password_file"] = str(password)  # where the Secret is mounted in a pod
    settings = load_settings(None, data)
    check_runnable(settings)
    assert settings.cluster.enabled and settings.metrics.host == "0.0.0.0"

    (secret,) = _kind("Secret")
    for dep in _kind("Deployment"):
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        # The config file and the password file are where the config says they are.
        assert container["args"][-1].startswith(mounts["cameras"])
        item = volumes["redis-password"]["secret"]["items"][0]
        assert volumes["redis-password"]["secret"]["secretName"] == secret["metadata"]["name"]
        assert item["key"] in secret["stringData"]
        assert f"{mounts['redis-password']}/{item['path']}" == secret_file
        assert mounts["spool"] == data["redis"]["spool_dir"]
        # The probes reach the metrics port; each env variable names a real setting.
        assert container["ports"][0]["containerPort"] == data["metrics"]["port"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        env = {e["name"]: e.get("value", "x") for e in container["env"]}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        check_environment()
        assert "STREAM_GATE__CLUSTER__MEMBER_ID" in env  # the pod name: one id per pod
        assert pod["terminationGracePeriodSeconds"] > settings.decode.shutdown_grace_s
        for name in env:
            monkeypatch.delenv(name)
    gpu = [d for d in _kind("Deployment") if "nvidia.com/gpu" in
           d["spec"]["template"]["spec"]["containers"][0]["resources"].get("limits", {})]
    assert gpu, "no Deployment asks for a GPU"
