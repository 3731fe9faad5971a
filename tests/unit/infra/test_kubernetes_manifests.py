"""The Kubernetes manifests (``infra/k8s``, a kustomize base and a production overlay) are valid
against the Kubernetes schemas, offline (``kubernetes-validate``), and say what the README
promises: probes on /readyz and /healthz, the migrator's Secret only in the migration Job and
the partitions CronJob, non-root read-only containers with resources, a worker grace period
longer than the unit a worker finishes on SIGTERM, and overlays that name what the base has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.settings import StripeSettings

K8S = Path(__file__).resolve().parents[3] / "infra" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(path for path in (K8S / "overlays").iterdir() if path.is_dir())
# The oldest Kubernetes still maintained by the big clouds when this was written, and the
# newest the pinned validator knows.
VERSIONS = ("1.30.0", "1.37.0")


def _kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def _documents(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The resources a kustomization lists that are files of its own folder."""
    for entry in _kustomization(folder).get("resources", []):
        path = folder / entry
        if path.is_file():
            for document in yaml.safe_load_all(path.read_text()):
                yield f"{folder.name}/{entry}", document


def _example_env(overlay: Path, env_file: str) -> dict[str, str]:
    lines = (overlay / f"{env_file}.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def _generated_secrets(overlay: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Secrets kustomize's secretGenerator makes, from the committed examples."""
    for generator in _kustomization(overlay).get("secretGenerator", []):
        data: dict[str, str] = {}
        for env_file in generator["envs"]:
            data |= _example_env(overlay, env_file)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": generator["name"]},
            "type": "Opaque",
            "stringData": data,
        }
        yield f"{overlay.name}/secretGenerator {generator['name']}", secret


def _all_resources() -> list[tuple[str, dict[str, Any]]]:
    found = list(_documents(BASE))
    for overlay in OVERLAYS:
        found += list(_documents(overlay)) + list(_generated_secrets(overlay))
    return found


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _documents(BASE) if doc["kind"] == kind}


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def _workloads() -> dict[str, dict[str, Any]]:
    return {**_by_kind("Deployment"), **_by_kind("Job"), **_by_kind("CronJob")}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version: str) -> None:
    resources = _all_resources()
    assert len(resources) >= 12
    for where, document in resources:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where} ({document['kind']}): {error.message} at {list(error.path)}")


def test_every_kustomization_names_files_and_objects_that_exist() -> None:
    for folder in (BASE, *OVERLAYS):
        for entry in _kustomization(folder).get("resources", []):
            assert (folder / entry).exists(), f"{folder.name} lists {entry}"
    deployments = _by_kind("Deployment")
    images = {c["image"] for w in _workloads().values() for c in _pod_spec(w)["containers"]}
    secrets_used = {
        (ref["name"], ref["key"])
        for w in _workloads().values()
        for c in _pod_spec(w)["containers"]
        for env in c.get("env", [])
        if (ref := env.get("valueFrom", {}).get("secretKeyRef"))
    }
    for overlay in OVERLAYS:
        kustomization = _kustomization(overlay)
        assert {i["name"] for i in kustomization.get("images", [])} <= images
        assert {r["name"] for r in kustomization.get("replicas", [])} <= set(deployments)
        made = {
            (secret["metadata"]["name"], key)
            for _, secret in _generated_secrets(overlay)
            for key in secret["stringData"]
        }
        assert secrets_used <= made
        for generator in kustomization.get("configMapGenerator", []):
            assert generator["name"] in _by_kind("ConfigMap")


def test_the_api_is_probed_on_readyz_and_healthz_and_served_scaled_and_kept_available() -> None:
    api = _by_kind("Deployment")["kefu-billing-api"]
    [container] = _pod_spec(api)["containers"]
    assert container["args"] == ["serve"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [port] = container["ports"]
    assert port["containerPort"] == 8000  # BILLING_PORT in the ConfigMap
    assert _by_kind("ConfigMap")["kefu-billing-config"]["data"]["BILLING_PORT"] == "8000"
    labels = api["spec"]["template"]["metadata"]["labels"]
    for selector in (
        _by_kind("Service")["kefu-billing-api"]["spec"]["selector"],
        _by_kind("PodDisruptionBudget")["kefu-billing-api"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    target = _by_kind("HorizontalPodAutoscaler")["kefu-billing-api"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "kefu-billing-api")


def test_the_worker_has_more_grace_than_the_unit_it_finishes_on_sigterm() -> None:
    worker = _by_kind("Deployment")["kefu-billing-worker"]
    [container] = _pod_spec(worker)["containers"]
    assert container["args"] == ["worker"]
    # The longest unit: one Stripe request (no SDK retries), or one period's close (seconds).
    grace = _pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace >= 4 * StripeSettings().timeout_seconds


def test_only_the_migration_job_and_the_partitions_cronjob_hold_the_migrator_secret() -> None:
    def secrets_of(workload: dict[str, Any]) -> set[str]:
        return {
            env["valueFrom"]["secretKeyRef"]["name"]
            for c in _pod_spec(workload)["containers"]
            for env in c.get("env", [])
            if "secretKeyRef" in env.get("valueFrom", {})
        }

    holders = {name for name, w in _workloads().items() if "kefu-billing-migrator" in secrets_of(w)}
    assert holders == {"kefu-billing-migrate", "kefu-billing-partitions"}
    job_args = {
        name: _pod_spec(w)["containers"][0]["args"]
        for name, w in _workloads().items()
        if name in holders
    }
    assert job_args == {
        "kefu-billing-migrate": ["migrate"],
        "kefu-billing-partitions": ["partitions"],
    }
    for name in ("kefu-billing-api", "kefu-billing-worker"):
        assert secrets_of(_workloads()[name]) == {"kefu-billing-runtime"}


def test_every_container_is_non_root_read_only_and_bounded() -> None:
    for name, workload in _workloads().items():
        spec = _pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert {"cpu", "memory"} <= limits.keys() & requests.keys(), name
            # The one writable place: /tmp, on an emptyDir with a size limit.
            [mount] = container["volumeMounts"]
            assert mount["mountPath"] == "/tmp"
            assert "sizeLimit" in volumes[mount["name"]]["emptyDir"], name


def test_network_policies_deny_by_default_and_select_the_pods_that_exist() -> None:
    policies = _by_kind("NetworkPolicy")
    deny = policies["kefu-billing-default-deny"]["spec"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    pod_labels = [
        w["spec"]["template"]["metadata"]["labels"] for w in _by_kind("Deployment").values()
    ]
    for name, policy in policies.items():
        wanted = policy["spec"]["podSelector"]["matchLabels"]
        assert any(wanted.items() <= labels.items() for labels in pod_labels), name
    [ingress] = policies["kefu-billing-api-ingress"]["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8000}]
