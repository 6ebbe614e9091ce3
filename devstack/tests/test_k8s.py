"""The Kubernetes manifests (deploy/k8s): both overlays rendered by `kubectl kustomize`,
every object validated against its schema, and the invariants that keep them honest
against the code they run (settings, compose, RQ, the monitoring files)."""

from __future__ import annotations

import functools
import importlib
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from rq import Queue
from rq.serializers import JSONSerializer

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
NAMESPACE = "bookstore"
# Kubernetes release whose API schemas the objects must satisfy (kubernetes-validate's).
KUBERNETES_VERSION = "1.32"
# Operators' kinds: hand-written subset schemas in deploy/k8s/schemas/.
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "cluster-postgresql-v1.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "scheduledbackup-postgresql-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
LONG_RUNNING_KINDS = ("Deployment", "StatefulSet")
# Our images and the workspace package each runs.
OUR_IMAGE = re.compile(r"(?:^|/)bookstore[-/](books|orders|workers)(?::|@|$)")
# The APIs serve /metrics on their HTTP port; everything else on a port named `metrics`.
API_SERVICES = {"books": 8001, "orders": 8082}
# Read by a library rather than by our settings classes.
LIBRARY_ENV = {"CLOUDINARY_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "WEB_CONCURRENCY"}
# The port of OTLP over HTTP, which the services' exporter speaks.
OTLP_HTTP_PORT = 4318
# Sample values for Secret keys, to check that the settings accept the rendered env.
SECRET_SAMPLES = {
    ("books-db-app", "uri"): "postgresql://books:sample@books-db-rw:5432/books_db",
    ("orders-db-app", "uri"): "postgresql://orders:sample@orders-db-rw:5432/orders_db",
    ("bookstore-service-key", "service-key"): "sample-service-key",
    ("redis-auth", "password"): "sample-password",
    ("bookstore-cloudinary", "url"): "cloudinary://key:secret@cloud",
    ("bookstore-cloudinary", "upload-preset"): "sample",
    ("bookstore-smtp", "url"): "smtp://mail.example.com:25",
}


@functools.cache
def _kustomize_major() -> int | None:
    if shutil.which("kubectl") is None:
        return None
    result = subprocess.run(
        ["kubectl", "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    version = json.loads(result.stdout).get("kustomizeVersion", "")
    match = re.match(r"v(\d+)", version)
    return int(match[1]) if match else None


KUSTOMIZE_MISSING = (
    "needs kubectl with kustomize v5 (`make test` installs Debian's kubectl where it can; "
    "an older kubectl's kustomize cannot render these overlays)"
)


# --- rendering and reading ---------------------------------------------------------------


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    if (_kustomize_major() or 0) < 5:
        pytest.skip(KUSTOMIZE_MISSING)
    output = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(output) if doc)


def objects(overlay: str, *kinds: str) -> list[dict[str, Any]]:
    return [obj for obj in rendered(overlay) if not kinds or obj["kind"] in kinds]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects(overlay, kind) if obj["metadata"]["name"] == name]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(
    workload: dict[str, Any], *, init: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = pod_spec(workload)
    groups = ("initContainers", "containers") if init else ("containers",)
    for group in groups:
        for container in spec.get(group, []):
            yield (
                f"{workload['kind']}/{workload['metadata']['name']}:{container['name']}",
                container,
            )


def all_containers(overlay: str, *, init: bool = True) -> list[tuple[str, dict[str, Any]]]:
    return [
        pair
        for workload in objects(overlay, *WORKLOAD_KINDS)
        for pair in containers(workload, init=init)
    ]


def package_of(image: str) -> str | None:
    match = OUR_IMAGE.search(image)
    return match[1] if match else None


def our_workloads(overlay: str) -> list[dict[str, Any]]:
    return [
        workload
        for workload in objects(overlay, *WORKLOAD_KINDS)
        if any(package_of(c["image"]) for _, c in containers(workload))
    ]


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod_spec(workload)["containers"][0]
    return container


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        present, value = key in labels, labels.get(key)
        if operator == "In":
            ok = value in expression["values"]
        elif operator == "NotIn":
            ok = value not in expression["values"]
        else:
            ok = present == (operator == "Exists")
        if not ok:
            return False
    return True


def compose_environment(service: str) -> set[str]:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return set(compose["services"][service].get("environment", {}))


def settings_env_names(package: str) -> set[str]:
    """Environment variables the package's `config.Settings` reads."""
    config = importlib.import_module(f"{package}.config")
    settings = config.Settings
    if isinstance(settings, type) and issubclass(settings, BaseSettings):
        prefix = settings.model_config.get("env_prefix", "")
        names: set[str] = set()
        for name, field in settings.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
            else:
                names.add(alias.upper() if isinstance(alias, str) else (prefix + name).upper())
        return names
    return {config.ENV_PREFIX + name.upper() for name in settings.__struct_fields__} | set(
        getattr(config, "SHARED_ENV", ())
    )


def helper_variables(container: dict[str, Any]) -> set[str]:
    """Variables set only to be expanded into others, as `$(NAME)`."""
    env = container.get("env", [])
    values = " ".join(entry.get("value", "") for entry in env)
    return {entry["name"] for entry in env if f"$({entry['name']})" in values}


def resolved_env(overlay: str, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment with sample Secret values, the overlay's ConfigMap
    values and `$(NAME)` expanded."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "configMapKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["configMapKeyRef"]
            env[entry["name"]] = named(overlay, "ConfigMap", ref["name"])["data"][ref["key"]]
        elif "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = SECRET_SAMPLES[ref["name"], ref["key"]]
        else:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], entry.get("value", ""))
    return env


def outside_the_namespace(host: str | None) -> bool:
    """`name.namespace.svc[.cluster.local]` of another namespace: not in this render."""
    parts = (host or "").split(".")
    return len(parts) >= 3 and parts[2] == "svc" and parts[1] != NAMESPACE


def secret_refs(overlay: str) -> list[tuple[str, str, bool]]:
    """(where, Secret name, optional) for every Secret an object of ours refers to."""
    refs = []
    for where, container in all_containers(overlay):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.append((f"{where} {entry['name']}", ref["name"], ref.get("optional", False)))
    for auth in objects(overlay, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            refs.append((f"TriggerAuthentication/{auth['metadata']['name']}", ref["name"], False))
    for cluster in objects(overlay, "Cluster"):
        credentials = (
            cluster["spec"].get("backup", {}).get("barmanObjectStore", {}).get("s3Credentials", {})
        )
        for ref in credentials.values():
            if isinstance(ref, dict):
                refs.append((f"Cluster/{cluster['metadata']['name']}", ref["name"], False))
    for ingress in objects(overlay, "Ingress"):
        for tls in ingress["spec"].get("tls", []):
            refs.append((f"Ingress/{ingress['metadata']['name']}", tls["secretName"], False))
    return refs


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


# --- rendering, generated files, schemas -------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestRender:
    def test_renders_every_component_in_the_namespace(self, overlay: str) -> None:
        names = {(obj["kind"], obj["metadata"]["name"]) for obj in rendered(overlay)}
        for kind, name in [
            ("Deployment", "books"),
            ("Deployment", "orders"),
            ("Deployment", "books-relay"),
            ("Deployment", "orders-relay"),
            ("Deployment", "workers"),
            ("Job", "books-migrate"),
            ("Job", "orders-migrate"),
            ("StatefulSet", "redis"),
            ("Cluster", "books-db"),
            ("Cluster", "orders-db"),
            ("ScaledObject", "workers"),
            ("HorizontalPodAutoscaler", "books"),
            ("HorizontalPodAutoscaler", "orders"),
        ]:
            assert (kind, name) in names
        outside = [
            f"{obj['kind']}/{obj['metadata']['name']}"
            for obj in rendered(overlay)
            if obj["kind"] != "Namespace" and obj["metadata"].get("namespace") != NAMESPACE
        ]
        assert outside == []


class TestGeneratedMonitoring:
    def test_base_monitoring_is_in_sync_with_monitoring(self) -> None:
        result = subprocess.run(
            [sys.executable, str(K8S / "sync-monitoring.py"), "--check"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_prometheus_rules_are_the_alert_rules(self, overlay: str) -> None:
        """One PrometheusRule per monitoring/rules file, its spec that file's content."""
        rules = {obj["metadata"]["name"]: obj["spec"] for obj in objects(overlay, "PrometheusRule")}
        expected = {
            f"bookstore-{path.stem}": yaml.safe_load(path.read_text())
            for path in (REPO_ROOT / "monitoring" / "rules").glob("*.yml")
        }
        assert rules == expected

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_dashboards_are_configmaps_for_the_grafana_sidecar(self, overlay: str) -> None:
        maps = {
            obj["metadata"]["name"]: obj
            for obj in objects(overlay, "ConfigMap")
            if obj["metadata"]["name"].startswith("grafana-dashboard-")
        }
        dashboards = sorted((REPO_ROOT / "monitoring" / "grafana" / "dashboards").glob("*.json"))
        assert sorted(maps) == [f"grafana-dashboard-{path.stem}" for path in dashboards]
        for path in dashboards:
            config_map = maps[f"grafana-dashboard-{path.stem}"]
            assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert config_map["data"] == {path.name: path.read_text()}


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((K8S / "schemas" / CRD_SCHEMAS[(api_version, kind)]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(obj: dict[str, Any]) -> None:
    """Raise unless the object matches its schema: Kubernetes' own (strict: no unknown
    fields) for built-in kinds, the vendored subset for the operators' kinds."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        crd_validator(*key).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


class TestSchemas:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_every_object_matches_its_schema(self, overlay: str) -> None:
        errors = []
        for obj in rendered(overlay):
            try:
                validate(obj)
            except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as error:
                path = ".".join(str(part) for part in error.absolute_path)
                errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
        assert errors == []

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_every_kind_has_a_schema(self, overlay: str) -> None:
        for obj in rendered(overlay):
            if (obj["apiVersion"], obj["kind"]) not in CRD_SCHEMAS:
                # Raises SchemaNotFoundError for a kind Kubernetes does not have.
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)

    @pytest.mark.parametrize(
        ("kind", "name", "path"),
        [
            ("Deployment", "books", ("spec", "template", "spec")),
            ("ScaledObject", "workers", ("spec",)),
            ("Cluster", "books-db", ("spec",)),
            ("ServiceMonitor", "books", ("spec",)),
            ("PrometheusRule", "bookstore-jobs", ("spec",)),
        ],
    )
    def test_a_misspelt_field_is_refused(self, kind: str, name: str, path: tuple[str, ...]) -> None:
        """The validation is strict, so the checks above would catch a typo."""
        obj = json.loads(json.dumps(named("prod", kind, name)))
        node = obj
        for part in path:
            node = node[part]
        node["replicaz"] = 3
        with pytest.raises(jsonschema.ValidationError):
            validate(obj)


# --- workloads ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestContainers:
    def test_long_running_containers_have_three_probes(self, overlay: str) -> None:
        missing = [
            f"{where} {probe}"
            for workload in objects(overlay, *LONG_RUNNING_KINDS)
            for where, container in containers(workload, init=False)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe")
            if probe not in container
        ]
        assert missing == []

    @pytest.mark.parametrize("service", API_SERVICES)
    def test_apis_are_ready_on_ready_and_alive_on_livez(self, overlay: str, service: str) -> None:
        """/health asks the database (and books): a liveness probe on it would restart
        every pod while a dependency is down, so liveness and start-up use /livez."""
        container = main_container(named(overlay, "Deployment", service))
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["startupProbe"]["httpGet"]["path"] == "/livez"
        (port,) = container["ports"]
        assert port["containerPort"] == API_SERVICES[service]

    def test_probes_ask_declared_ports(self, overlay: str) -> None:
        wrong = []
        for where, container in all_containers(overlay, init=False):
            ports = {p["name"] for p in container.get("ports", [])} | {
                p["containerPort"] for p in container.get("ports", [])
            }
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in ports:
                    wrong.append(f"{where} {probe} port {port}")
        assert wrong == []

    def test_every_container_has_requests_and_a_memory_limit(self, overlay: str) -> None:
        missing = []
        for where, container in all_containers(overlay):
            resources = container.get("resources", {})
            for part, key in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")]:
                if key not in resources.get(part, {}):
                    missing.append(f"{where} {part}.{key}")
        assert missing == []

    def test_every_container_runs_non_root_on_a_read_only_filesystem(self, overlay: str) -> None:
        wrong = []
        for workload in objects(overlay, *WORKLOAD_KINDS):
            pod = pod_spec(workload).get("securityContext", {})
            for where, container in containers(workload):
                context = container.get("securityContext", {})
                if not (pod.get("runAsNonRoot") or context.get("runAsNonRoot")):
                    wrong.append(f"{where} may run as root")
                if not context.get("readOnlyRootFilesystem"):
                    wrong.append(f"{where} has a writable root filesystem")
                if context.get("allowPrivilegeEscalation") is not False:
                    wrong.append(f"{where} may escalate privileges")
                if context.get("capabilities", {}).get("drop") != ["ALL"]:
                    wrong.append(f"{where} keeps capabilities")
        assert wrong == []

    def test_images_are_pinned(self, overlay: str) -> None:
        """An exact version tag (or a digest): never `latest` or a moving major tag."""
        images = [container["image"] for _, container in all_containers(overlay)]
        images += [cluster["spec"]["imageName"] for cluster in objects(overlay, "Cluster")]
        unpinned = [
            image
            for image in images
            if "@sha256:" not in image
            and not re.search(r":v?\d+\.\d+(\.\d+)?(-[\w.]+)?$", image.rsplit("/", 1)[-1])
        ]
        assert unpinned == []


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestEnvironment:
    def test_same_variable_names_as_compose(self, overlay: str) -> None:
        """Each workload of ours sets exactly what its compose service sets (less the
        helpers expanded into REDIS_URL); a waiting init container, what its migration sets."""
        for workload in our_workloads(overlay):
            name = workload["metadata"]["name"]
            container = main_container(workload)
            names = {entry["name"] for entry in container.get("env", [])}
            assert names - helper_variables(container) == compose_environment(name), name
            for init in pod_spec(workload).get("initContainers", []):
                package = package_of(init["image"])
                init_names = {entry["name"] for entry in init.get("env", [])}
                assert init_names == compose_environment(f"{package}-migrate"), name

    def test_every_variable_is_read_by_the_program(self, overlay: str) -> None:
        unread = []
        for where, container in all_containers(overlay):
            package = package_of(container["image"])
            if package is None:
                continue
            read = settings_env_names(package) | LIBRARY_ENV | helper_variables(container)
            unread += [
                f"{where} {entry['name']}"
                for entry in container.get("env", [])
                if entry["name"] not in read
            ]
        assert unread == []

    def test_settings_accept_the_environment(
        self, overlay: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for _, container in all_containers(overlay):
            package = package_of(container["image"])
            if package is None:
                continue
            env = resolved_env(overlay, container)
            settings = importlib.import_module(f"{package}.config").Settings
            if hasattr(settings, "from_env"):
                assert settings.from_env(env) is not None
                continue
            for name in settings_env_names(package):
                monkeypatch.delenv(name, raising=False)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            assert settings() is not None

    def test_http_urls_name_a_service_and_its_port(self, overlay: str) -> None:
        services = {
            obj["metadata"]["name"]: {port["port"] for port in obj["spec"]["ports"]}
            for obj in objects(overlay, "Service")
        }
        for where, container in all_containers(overlay):
            if package_of(container["image"]) is None:
                continue
            for name, value in resolved_env(overlay, container).items():
                url = urlsplit(value)
                if outside_the_namespace(url.hostname):
                    continue
                if url.scheme in ("http", "redis"):
                    assert url.port in services.get(url.hostname or "", set()), f"{where} {name}"

    def test_every_component_exports_traces_to_the_overlays_collector(self, overlay: str) -> None:
        """The endpoint comes from the overlay's ConfigMap (optional: without it tracing is
        off), and is an OTLP/HTTP port of a collector in another namespace."""
        traced = {"books", "orders", "books-relay", "orders-relay", "workers"}
        assert traced <= {workload["metadata"]["name"] for workload in our_workloads(overlay)}
        for workload in our_workloads(overlay):
            if workload["metadata"]["name"] not in traced:
                continue
            container = main_container(workload)
            (entry,) = [e for e in container["env"] if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"]
            assert entry["valueFrom"]["configMapKeyRef"]["optional"] is True
            url = urlsplit(resolved_env(overlay, container)["OTEL_EXPORTER_OTLP_ENDPOINT"])
            assert url.scheme == "http"
            assert url.port == OTLP_HTTP_PORT
            assert outside_the_namespace(url.hostname), url.hostname


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestSecrets:
    def test_no_secret_value_is_written_inline(self, overlay: str) -> None:
        """Credentials reach containers from Secrets; a URL's password only as $(VAR)."""
        inline = []
        for where, container in all_containers(overlay):
            for entry in container.get("env", []):
                value = entry.get("value")
                if value is None:
                    continue
                if re.search(r"KEY|PASSWORD|SECRET|TOKEN|AUTH", entry["name"]):
                    inline.append(f"{where} {entry['name']}")
        for obj in rendered(overlay):
            if obj["kind"] == "Secret":
                continue
            for text in strings_in(obj):
                for url in re.findall(r"\w+://[^\s\"']+", text):
                    password = urlsplit(url).password
                    if password and not password.startswith("$("):
                        inline.append(f"{obj['kind']}/{obj['metadata']['name']}: {url}")
        assert inline == []

    def test_secrets_exist_only_from_the_dev_generator(self, overlay: str) -> None:
        secrets = {obj["metadata"]["name"] for obj in objects(overlay, "Secret")}
        if overlay == "prod":
            assert secrets == set()
            return
        generator = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text())
        assert secrets == {entry["name"] for entry in generator["secretGenerator"]}
        for path in K8S.rglob("*.yaml"):
            if path.parent != K8S / "overlays" / "dev":
                assert "secretGenerator" not in path.read_text(), path

    def test_required_secrets_are_generated_or_made_by_the_operator(self, overlay: str) -> None:
        """In dev everything starts; prod's list is what the README tells operators to make."""
        made = {f"{c['metadata']['name']}-app" for c in objects(overlay, "Cluster")}
        made |= {obj["metadata"]["name"] for obj in objects(overlay, "Secret")}
        missing = {name for _, name, optional in secret_refs(overlay) if not optional} - made
        if overlay == "dev":
            assert missing == set()
        else:
            readme = (REPO_ROOT / "README.md").read_text()
            undocumented = {name for name in missing if f"`{name}`" not in readme}
            assert undocumented == set()


# --- scaling -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestScaling:
    @pytest.mark.parametrize("service", API_SERVICES)
    def test_apis_scale_on_cpu(self, overlay: str, service: str) -> None:
        hpa = named(overlay, "HorizontalPodAutoscaler", service)["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": service,
        }
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert (
            "cpu" in main_container(named(overlay, "Deployment", service))["resources"]["requests"]
        )
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]

    @pytest.mark.parametrize("service", [*API_SERVICES, "web"])
    def test_apis_run_one_process_per_core_of_their_limit(self, overlay: str, service: str) -> None:
        """Without WEB_CONCURRENCY an API runs one process per core of the node, whatever
        the pod's CPU limit."""
        container = main_container(named(overlay, "Deployment", service))
        limit = str(container["resources"]["limits"]["cpu"])
        cores = float(limit.removesuffix("m")) / 1000 if limit.endswith("m") else float(limit)
        (processes,) = [e["value"] for e in container["env"] if e["name"] == "WEB_CONCURRENCY"]
        assert int(processes) == max(1, int(cores))

    def test_autoscaled_deployments_leave_the_count_to_the_autoscaler(self, overlay: str) -> None:
        for name in (*API_SERVICES, "workers"):
            assert "replicas" not in named(overlay, "Deployment", name)["spec"], name

    def test_workers_scale_on_rq_queue_lists(self, overlay: str) -> None:
        from workers.config import QUEUES

        scaled = named(overlay, "ScaledObject", "workers")["spec"]
        assert scaled["scaleTargetRef"]["name"] == "workers"
        assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
        triggers = scaled["triggers"]
        assert {trigger["type"] for trigger in triggers} == {"redis"}
        keys = {trigger["metadata"]["listName"] for trigger in triggers}
        assert keys == {Queue(name, connection=redis.Redis()).key for name in QUEUES}
        assert keys == {f"rq:queue:{name}" for name in QUEUES}
        formula = scaled["advanced"]["scalingModifiers"]["formula"]
        assert set(re.findall(r"\w+", formula)) == {trigger["name"] for trigger in triggers}

    def test_keda_reaches_the_redis_service_with_its_password(self, overlay: str) -> None:
        redis_port = named(overlay, "Service", "redis")["spec"]["ports"][0]["port"]
        auth = named(overlay, "TriggerAuthentication", "redis-auth")["spec"]["secretTargetRef"]
        redis_password = next(
            entry["valueFrom"]["secretKeyRef"]
            for entry in main_container(named(overlay, "StatefulSet", "redis"))["env"]
            if entry["name"] == "REDIS_PASSWORD"
        )
        assert auth == [{"parameter": "password", **redis_password}]
        for trigger in named(overlay, "ScaledObject", "workers")["spec"]["triggers"]:
            assert trigger["metadata"]["address"] == (
                f"redis.{NAMESPACE}.svc.cluster.local:{redis_port}"
            )
            assert trigger["authenticationRef"]["name"] == "redis-auth"
            assert trigger["metadata"]["databaseIndex"] == "0"
        workers_url = resolved_env(overlay, main_container(named(overlay, "Deployment", "workers")))
        assert urlsplit(workers_url["REDIS_URL"]).path == "/0"


class TestRqQueueKeys:
    def test_a_queue_is_a_redis_list_under_its_key(self, redis_url: str) -> None:
        """What KEDA's Redis list scaler counts: LLEN of `rq:queue:<name>` is the jobs waiting."""
        connection = redis.Redis.from_url(redis_url)
        queue = Queue(
            f"k8s-test-{uuid.uuid4().hex}", connection=connection, serializer=JSONSerializer
        )
        try:
            queue.enqueue("workers.stock.place_order", {"order_id": 1})
            queue.enqueue("workers.stock.place_order", {"order_id": 2})
            assert queue.key == f"rq:queue:{queue.name}"
            assert connection.type(queue.key) == b"list"
            assert connection.llen(queue.key) == 2
        finally:
            queue.delete(delete_jobs=True)


# --- data --------------------------------------------------------------------------------


class TestData:
    @pytest.mark.parametrize(("overlay", "instances"), [("dev", 1), ("prod", 3)])
    def test_one_postgres_cluster_per_service_database(self, overlay: str, instances: int) -> None:
        clusters = {c["metadata"]["name"]: c["spec"] for c in objects(overlay, "Cluster")}
        assert sorted(clusters) == ["books-db", "orders-db"]
        for name, spec in clusters.items():
            service = name.removesuffix("-db")
            assert spec["bootstrap"]["initdb"] == {"database": f"{service}_db", "owner": service}
            assert spec["instances"] == instances
            if overlay == "prod":
                assert spec["backup"]["barmanObjectStore"]["destinationPath"].endswith(name)
                (backup,) = [
                    b
                    for b in objects(overlay, "ScheduledBackup")
                    if b["spec"]["cluster"]["name"] == name
                ]
                assert backup["spec"]["schedule"]

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_services_read_their_own_database_secret(self, overlay: str) -> None:
        for where, container in all_containers(overlay):
            for entry in container.get("env", []):
                if entry["name"].endswith("_DATABASE_URL"):
                    service = entry["name"].removesuffix("_DATABASE_URL").lower()
                    assert entry["valueFrom"]["secretKeyRef"] == {
                        "name": f"{service}-db-app",
                        "key": "uri",
                    }, where

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_redis_keeps_an_append_only_file_on_a_volume_and_never_evicts(
        self, overlay: str
    ) -> None:
        config = named(overlay, "ConfigMap", "redis-config")["data"]["redis.conf"]
        settings = dict(
            line.split(None, 1) for line in config.splitlines() if line and line[0] != "#"
        )
        assert settings["appendonly"] == "yes"
        assert settings["maxmemory-policy"] == "noeviction"
        statefulset = named(overlay, "StatefulSet", "redis")
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        mounts = {m["name"]: m["mountPath"] for m in main_container(statefulset)["volumeMounts"]}
        assert mounts[claim["metadata"]["name"]] == settings["dir"]


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestMigrations:
    @pytest.mark.parametrize("service", API_SERVICES)
    def test_a_job_migrates_and_its_users_wait_for_the_schema(
        self, overlay: str, service: str
    ) -> None:
        job = main_container(named(overlay, "Job", f"{service}-migrate"))
        assert job["command"] == ["alembic", "-c", "alembic.ini", "upgrade", "head"]
        assert job["workingDir"] == f"/app/{service}"
        users = [
            workload
            for workload in objects(overlay, "Deployment")
            if any(
                entry["name"] == f"{service.upper()}_DATABASE_URL"
                for entry in main_container(workload).get("env", [])
            )
        ]
        assert sorted(w["metadata"]["name"] for w in users) == [service, f"{service}-relay"]
        for workload in users:
            (wait,) = pod_spec(workload)["initContainers"]
            assert wait["image"] == job["image"] == main_container(workload)["image"]
            assert "alembic -c alembic.ini current --check-heads" in " ".join(wait["command"])
            assert wait["workingDir"] == job["workingDir"]


# --- network -----------------------------------------------------------------------------


def allowed_pods(overlay: str, target: dict[str, str], port: Any) -> set[str]:
    """Names of this namespace's pods the NetworkPolicies let reach `target` on `port`."""
    pods = {
        pod_labels(w)["app.kubernetes.io/name"]: pod_labels(w)
        for w in objects(overlay, *WORKLOAD_KINDS)
    }
    allowed: set[str] = set()
    for policy in objects(overlay, "NetworkPolicy"):
        if not matches(policy["spec"]["podSelector"], target):
            continue
        for rule in policy["spec"].get("ingress", []):
            if port not in [p["port"] for p in rule.get("ports", [])]:
                continue
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    allowed |= {
                        n for n, labels in pods.items() if matches(peer["podSelector"], labels)
                    }
    return allowed


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestNetworkPolicies:
    def test_everything_not_allowed_is_refused(self, overlay: str) -> None:
        deny = named(overlay, "NetworkPolicy", "default-deny-ingress")["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}

    def test_only_the_workers_orders_and_web_reach_books(self, overlay: str) -> None:
        assert allowed_pods(overlay, {"app.kubernetes.io/name": "books"}, "http") == {
            "orders",
            "web",
            "workers",
        }

    def test_only_the_workers_and_web_reach_orders(self, overlay: str) -> None:
        assert allowed_pods(overlay, {"app.kubernetes.io/name": "orders"}, "http") == {
            "web",
            "workers",
        }

    def test_nothing_of_ours_reaches_web(self, overlay: str) -> None:
        assert allowed_pods(overlay, {"app.kubernetes.io/name": "web"}, "http") == set()

    @pytest.mark.parametrize("service", API_SERVICES)
    def test_only_the_service_reaches_its_database(self, overlay: str, service: str) -> None:
        database = {"cnpg.io/cluster": f"{service}-db"}
        assert allowed_pods(overlay, database, 5432) == {
            service,
            f"{service}-relay",
            f"{service}-migrate",
        }

    def test_only_relays_and_workers_reach_redis(self, overlay: str) -> None:
        assert allowed_pods(overlay, {"app.kubernetes.io/name": "redis"}, "redis") == {
            "books-relay",
            "orders-relay",
            "workers",
        }

    def test_the_ingress_routes_the_public_apis_and_nothing_internal(self, overlay: str) -> None:
        from books.app import create_app as books_app
        from orders.app import create_app as orders_app

        public = {
            "books": list(books_app().openapi()["paths"]),
            "orders": list(orders_app().openapi_schema.paths or {}),
        }
        (ingress,) = objects(overlay, "Ingress")
        prefixes = [
            (path["path"], path["backend"]["service"]["name"])
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        ]

        def routed(path: str) -> set[str]:
            return {
                svc for prefix, svc in prefixes if path == prefix or path.startswith(prefix + "/")
            }

        for service, paths in public.items():
            for path in paths:
                if path not in ("/health", "/ready"):
                    assert routed(path) == {service}, path
        # The internal APIs live under /internal (and /metrics at the root): nothing
        # outside /v1/ is routed.
        for service in API_SERVICES:
            source = "".join(p.read_text() for p in (REPO_ROOT / service / "src").rglob("*.py"))
            assert '"/internal' in source, f"{service} declares no /internal routes"
        # Outside /v1/ only the web's pages, each named: its /metrics and /livez stay inside.
        assert {svc for prefix, svc in prefixes if not prefix.startswith("/v1/")} == {"web"}
        for page in (
            "/",
            "/books/7",
            "/cart",
            "/checkout",
            "/orders/3",
            "/desk/holds",
            "/static/app.css",
        ):
            assert routed(page) == {"web"}, page
        assert not routed("/internal/v1/stock")
        assert not routed("/metrics")
        assert not routed("/livez")


# --- monitoring --------------------------------------------------------------------------


def metrics_ports(workload: dict[str, Any]) -> list[str]:
    """Port names of the workload's containers that serve /metrics."""
    ports = []
    for _, container in containers(workload, init=False):
        for port in container.get("ports", []):
            is_api = port["containerPort"] in API_SERVICES.values() and package_of(
                container["image"]
            )
            if port["name"] == "metrics" or is_api:
                ports.append(port["name"])
    return ports


def scraped(overlay: str, labels: dict[str, str], port: str) -> bool:
    for monitor in objects(overlay, "PodMonitor"):
        if matches(monitor["spec"]["selector"], labels) and port in [
            e.get("port") for e in monitor["spec"]["podMetricsEndpoints"]
        ]:
            return True
    for monitor in objects(overlay, "ServiceMonitor"):
        endpoints = [e.get("port") for e in monitor["spec"]["endpoints"]]
        for service in objects(overlay, "Service"):
            if not matches(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
                continue
            if not matches({"matchLabels": service["spec"]["selector"]}, labels):
                continue
            if any(
                p["name"] in endpoints and p["targetPort"] == port for p in service["spec"]["ports"]
            ):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestScraping:
    def test_every_metrics_port_is_scraped(self, overlay: str) -> None:
        unscraped = [
            f"{workload['metadata']['name']}:{port}"
            for workload in objects(overlay, *LONG_RUNNING_KINDS)
            for port in metrics_ports(workload)
            if not scraped(overlay, pod_labels(workload), port)
        ]
        assert unscraped == []
        for cluster in objects(overlay, "Cluster"):
            labels = {"cnpg.io/cluster": cluster["metadata"]["name"]}
            assert scraped(overlay, labels, "metrics"), cluster["metadata"]["name"]

    def test_services_are_scraped_under_the_job_names_of_the_rules(self, overlay: str) -> None:
        """A ServiceMonitor labels series with job=<Service name>, as the rules expect."""
        jobs = set()
        for path in (REPO_ROOT / "monitoring").rglob("*"):
            if path.suffix in (".yml", ".json") and "tests" not in path.parts:
                jobs |= set(re.findall(r'job=\\?"([\w-]+)\\?"', path.read_text()))
        services = {obj["metadata"]["name"] for obj in objects(overlay, "Service")}
        monitored = {
            service["metadata"]["name"]
            for monitor in objects(overlay, "ServiceMonitor")
            for service in objects(overlay, "Service")
            if matches(monitor["spec"]["selector"], service["metadata"].get("labels", {}))
        }
        assert jobs
        assert jobs <= services & monitored


# --- overlays ----------------------------------------------------------------------------


class TestOverlays:
    def test_dev_runs_one_replica_of_each_at_rest(self) -> None:
        for deployment in objects("dev", "Deployment"):
            assert deployment["spec"].get("replicas", 1) == 1
        for hpa in objects("dev", "HorizontalPodAutoscaler"):
            assert hpa["spec"]["minReplicas"] == 1
        assert named("dev", "ScaledObject", "workers")["spec"]["minReplicaCount"] == 1

    def test_prod_spreads_and_protects_every_deployment(self) -> None:
        budgets = objects("prod", "PodDisruptionBudget")
        for deployment in objects("prod", "Deployment"):
            labels = pod_labels(deployment)
            name = deployment["metadata"]["name"]
            assert [b for b in budgets if matches(b["spec"]["selector"], labels)], name
            (term,) = pod_spec(deployment)["affinity"]["podAntiAffinity"][
                "preferredDuringSchedulingIgnoredDuringExecution"
            ]
            assert matches(term["podAffinityTerm"]["labelSelector"], labels), name
            assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"

    def test_prod_runs_more_than_one_of_everything_stateless(self) -> None:
        for hpa in objects("prod", "HorizontalPodAutoscaler"):
            assert hpa["spec"]["minReplicas"] >= 2
        assert named("prod", "ScaledObject", "workers")["spec"]["minReplicaCount"] >= 2
        for relay in ("books-relay", "orders-relay"):
            assert named("prod", "Deployment", relay)["spec"]["replicas"] == 2
