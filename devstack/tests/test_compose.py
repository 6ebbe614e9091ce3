"""docker-compose.yml, the Dockerfiles and the PostgreSQL init script, checked without a
Docker engine: every path, command, port and variable the images and the compose file
name must exist in the repository and in the code they run."""

from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from devstack.servers import POSTGRES_BIN_PATH, EmbeddedPostgres, free_port
from servicekit.asgi import MULTIPROCESS_ENV, web_concurrency
from servicekit.relay import JobPolicy
from servicekit.tracing import tracing_enabled

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
INIT_SCRIPT = REPO_ROOT / "docker" / "postgres" / "init" / "01-databases.sh"
MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
# Our images copy repository paths to the same paths under their WORKDIR.
IMAGE_ROOT = PurePosixPath("/app")
# The ports of DESIGN.md §1, which `make run`, the images and compose share.
API_PORTS = {"books": 8001, "orders": 8082}
# The setting that holds the port each `python -m` program serves its metrics on.
PORT_SETTINGS = {
    "books": "port",
    "orders": "port",
    "books.relay": "relay_metrics_port",
    "orders.relay": "relay_metrics_port",
    "workers.worker": "metrics_port",
    "web": "port",
}
# Third-party images Prometheus scrapes: the port each listens on by default.
IMAGE_PORTS = {"oliver006/redis_exporter": 9121, "prometheuscommunity/postgres-exporter": 9187}
# Jaeger all-in-one's OTLP/HTTP receiver and its UI/query API (the Grafana datasource).
JAEGER_OTLP_HTTP_PORT = 4318
JAEGER_QUERY_PORT = 16686
# Third-party images the workers mail through: the SMTP port each listens on by default.
SMTP_PORTS = {"axllent/mailpit": 1025}


def _cloudinary_account() -> object:
    import cloudinary

    return cloudinary.Config().cloud_name


# Variables a service passes to a library its package uses rather than to its settings:
# name -> (the library's distribution, what the library makes of the environment).
LIBRARY_ENV: dict[str, tuple[str, Callable[[], object]]] = {
    "CLOUDINARY_URL": ("cloudinary", _cloudinary_account),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("servicekit", tracing_enabled),
    "WEB_CONCURRENCY": ("servicekit", lambda: web_concurrency(os.environ)),
}


# --- reading the files -----------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def tokens(self) -> list[str]:
        return shlex.split(self.args)


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    stages: tuple[tuple[Instruction, ...], ...]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        stages: list[list[Instruction]] = []
        for line in _logical_lines(path.read_text()):
            keyword, _, args = line.partition(" ")
            instruction = Instruction(keyword.upper(), args.strip())
            if instruction.keyword == "FROM":
                stages.append([])
            if stages:
                stages[-1].append(instruction)
        return cls(path, tuple(tuple(stage) for stage in stages))

    @property
    def final(self) -> tuple[Instruction, ...]:
        return self.stages[-1]

    @property
    def builder(self) -> tuple[Instruction, ...]:
        """The stage that runs `uv sync`."""
        (stage,) = [s for s in self.stages if any("uv sync" in i.args for i in s)]
        return stage

    def last(self, keyword: str) -> Instruction:
        """The final stage's last `keyword` instruction (the one that takes effect)."""
        found = [i for i in self.final if i.keyword == keyword]
        assert found, f"{self.path.relative_to(REPO_ROOT)}: no {keyword}"
        return found[-1]

    @property
    def cmd(self) -> list[str]:
        return _exec_form(self.last("CMD"))

    @property
    def env(self) -> dict[str, str]:
        """The final stage's ENV variables (`NAME=value` form)."""
        env = {}
        for instruction in self.final:
            if instruction.keyword == "ENV":
                for token in instruction.tokens():
                    name, separator, value = token.partition("=")
                    assert separator, f"ENV {instruction.args}: use NAME=value"
                    env[name] = value
        return env

    @property
    def healthcheck(self) -> list[str]:
        _, _, command = self.last("HEALTHCHECK").args.partition("CMD ")
        return list(json.loads(command))

    @property
    def package(self) -> str:
        """The workspace member the image is built for (`uv sync --package`)."""
        (package,) = {_option(sync, "--package") for sync in self.uv_syncs()}
        return package

    def uv_syncs(self) -> list[list[str]]:
        syncs = []
        for instruction in self.builder:
            if instruction.keyword == "RUN" and "uv sync" in instruction.args:
                tokens = instruction.tokens()
                syncs.append(tokens[tokens.index("uv") :])
        return syncs

    def context_copies(
        self, stage: tuple[Instruction, ...] | None = None
    ) -> Iterator[tuple[Instruction, list[str], str]]:
        """(instruction, sources, destination) of each COPY from the build context."""
        for instruction in stage or self.final:
            tokens = instruction.tokens()
            if instruction.keyword != "COPY" or any(t.startswith("--from=") for t in tokens):
                continue
            paths = [t for t in tokens if not t.startswith("--")]
            yield instruction, paths[:-1], paths[-1]


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


def _exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.args)
    assert isinstance(value, list), f"{instruction.keyword} must use the exec (JSON) form"
    return [str(item) for item in value]


def _option(argv: list[str], name: str) -> str:
    for index, token in enumerate(argv):
        if token == name:
            return argv[index + 1]
        if token.startswith(f"{name}="):
            return token.partition("=")[2]
    raise AssertionError(f"{name} missing from {shlex.join(argv)}")


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def built_services() -> list[str]:
    return [name for name, service in services().items() if "build" in service]


def dockerfile_of(service: str) -> Dockerfile:
    build = services()[service]["build"]
    return Dockerfile.read(REPO_ROOT / build["context"] / build["dockerfile"])


def command_of(service: str) -> list[str]:
    """What the container runs: compose's `command`, else the image's CMD."""
    command = services()[service].get("command")
    if command is None:
        return dockerfile_of(service).cmd
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def is_one_shot(service: str) -> bool:
    """A job other services wait for to finish (a migration), not a long-running server."""
    return any(
        isinstance(deps, dict)
        and deps.get(service, {}).get("condition") == "service_completed_successfully"
        for deps in (other.get("depends_on") for other in services().values())
    )


def environment_of(service: str) -> dict[str, str]:
    environment = services()[service].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def healthcheck_of(service: str) -> list[str] | None:
    """The check compose runs: the service's own, else its image's (None if none)."""
    check = services()[service].get("healthcheck", {})
    if check.get("disable"):
        return None
    if "test" in check:
        test = check["test"]
        return ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]
    if "build" in services()[service]:
        dockerfile = dockerfile_of(service)
        if any(i.keyword == "HEALTHCHECK" for i in dockerfile.final):
            return ["CMD", *dockerfile.healthcheck]
    return None


def container_env(service: str) -> dict[str, str]:
    """What the process sees: the image's ENV, overridden by compose's (interpolated)."""
    compose_env = {k: interpolate(v, env_example()) for k, v in environment_of(service).items()}
    return dockerfile_of(service).env | compose_env


def listening_port(service: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """The port the service's program serves HTTP on (its API or its metrics)."""
    if "build" not in services()[service]:
        return IMAGE_PORTS[image_name(service)]
    program, *args = command_of(service)
    if program == "uvicorn":
        return int(_option(args, "--port"))
    assert program == "python", f"{service}: teach this test where {program} listens"
    module, attribute = args[1], PORT_SETTINGS[args[1]]
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations is not None:
        module += ".__main__"  # `python -m package` runs its __main__
    assert f"settings.{attribute}" in inspect.getsource(importlib.import_module(module))
    package = dockerfile_of(service).package
    return int(getattr(settings_in(package, container_env(service), monkeypatch), attribute))


def settings_in(package: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The package's settings in a container whose environment is `env`."""
    fields = settings_fields(package)
    return load_settings(package, {k: v for k, v in env.items() if k in fields}, monkeypatch)


def checked_port(
    package: str, check: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> int:
    """The port a `python -c` health check asks: written in it, or the one the package's
    settings give its server (`get_settings().port`) in a container whose environment is
    `env`."""
    if written := re.search(r"http://127\.0\.0\.1:(\d+)/", check):
        return int(written[1])
    assert "http://127.0.0.1:{get_settings().port}/" in check, check
    assert f"from {package}.config import get_settings" in check, check
    return int(settings_in(package, env, monkeypatch).port)


def image_name(service: str) -> str:
    """The service's image without its tag."""
    return str(services()[service]["image"]).partition(":")[0]


def scrape_targets() -> list[Any]:
    """(job, host, port) of every target in monitoring/prometheus.yml."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = []
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets.append(pytest.param(host, int(port), id=job["job_name"]))
        for dns in job.get("dns_sd_configs", []):
            targets += [pytest.param(n, dns["port"], id=job["job_name"]) for n in dns["names"]]
    return targets


def seconds(duration: str) -> int:
    """A compose duration such as `1m30s`, in whole seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"unsupported duration {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group() == "$$":
            return "$"
        name = match["braced"] or match["bare"]
        current, op = env.get(name), match["op"] or ""
        missing = current is None or (op.startswith(":") and current == "")
        if missing and op.endswith("-"):
            return match["arg"]
        assert not (missing and op.endswith("?")), f"{name} is required: {match['arg']}"
        return current or ""

    return _VARIABLE.sub(replace, value)


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def bind_mounts() -> list[tuple[str, str]]:
    mounts = []
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                mounts.append((name, source))
    return mounts


def container_ports(service: str) -> set[int]:
    ports = set()
    for port in services()[service].get("ports", []):
        ports.add(int(port["target"]) if isinstance(port, dict) else int(str(port).split(":")[-1]))
    return ports


@cache
def workspace_members() -> dict[str, dict[str, Any]]:
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return {
        member: tomllib.loads((REPO_ROOT / member / "pyproject.toml").read_text())
        for member in root["tool"]["uv"]["workspace"]["members"]
    }


def requirement_names(package: str) -> set[str]:
    dependencies = workspace_members()[package]["project"]["dependencies"]
    return {canonicalize_name(Requirement(d).name) for d in dependencies}


def members_needed_by(package: str) -> set[str]:
    needed, todo = set(), [package]
    while todo:
        member = todo.pop()
        needed.add(member)
        todo += [
            d for d in requirement_names(member) if d in workspace_members() and d not in needed
        ]
    return needed


def settings_fields(package: str) -> dict[str, str]:
    """Environment variable -> attribute of the package's `config.Settings`."""
    config = importlib.import_module(f"{package}.config")
    settings = config.Settings
    if isinstance(settings, type) and issubclass(settings, BaseSettings):
        prefix = settings.model_config.get("env_prefix", "")
        fields: dict[str, str] = {}
        for name, field in settings.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                choices = [choice for choice in alias.choices if isinstance(choice, str)]
            else:
                choices = [alias if isinstance(alias, str) else prefix + name]
            fields |= {choice.upper(): name for choice in choices}
        return fields
    prefixed = {config.ENV_PREFIX + name.upper(): name for name in settings.__struct_fields__}
    aliases = {alias: prefixed[ours] for alias, ours in getattr(config, "ALIASES", {}).items()}
    return prefixed | aliases | {name: name.lower() for name in getattr(config, "SHARED_ENV", ())}


def load_settings(package: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The package's settings from exactly `env` (whatever the test run's environment)."""
    settings = importlib.import_module(f"{package}.config").Settings
    if hasattr(settings, "from_env"):
        return settings.from_env(env)
    for name in settings_fields(package):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings()


def empty_example_variables() -> list[Any]:
    """(service, variable) for each variable the example leaves empty and a service gets."""
    empty = {name for name, value in env_example().items() if value == ""}
    params = []
    for service in built_services():
        for name, value in environment_of(service).items():
            match = _VARIABLE.fullmatch(value)
            if match and (match["braced"] or match["bare"]) in empty:
                params.append(pytest.param(service, name))
    return params


def _docker_glob(pattern: str, path: str) -> bool:
    """Go's filepath.Match (`*` stays within one name), plus Docker's leading `**/`."""
    if pattern.startswith("**/"):
        parts = PurePosixPath(path).parts
        return any(_docker_glob(pattern[3:], "/".join(parts[i:])) for i in range(len(parts)))
    return PurePosixPath("/", path).match("/" + pattern)


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    candidates = [
        str(p) for p in (PurePosixPath(path), *PurePosixPath(path).parents) if str(p) != "."
    ]
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        if any(_docker_glob(glob, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


DOCKERFILES = sorted(REPO_ROOT.glob("*/Dockerfile"))


# --- the compose file ------------------------------------------------------------------


class TestComposeFile:
    def test_parses_into_named_services(self) -> None:
        assert compose()["name"] == "bookstore"
        assert {"db", "redis", "books", "orders"} <= services().keys()

    def test_every_variable_it_uses_is_in_env_example(self) -> None:
        used = {
            match["braced"] or match["bare"]
            for value in strings_in(compose())
            for match in _VARIABLE.finditer(value)
            if match.group() != "$$"
        }
        assert used, "the file takes its secrets from .env"
        assert used - env_example().keys() == set()

    def test_interpolates_with_the_example_values(self) -> None:
        for value in strings_in(compose()):
            interpolate(value, env_example())

    @pytest.mark.parametrize("service", built_services())
    def test_builds_from_the_repository_root_with_an_existing_dockerfile(
        self, service: str
    ) -> None:
        build = services()[service]["build"]
        assert (REPO_ROOT / build["context"]).resolve() == REPO_ROOT, "uv needs the workspace"
        assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file()

    @pytest.mark.parametrize(("service", "source"), bind_mounts())
    def test_bind_mounted_path_exists(self, service: str, source: str) -> None:
        path = (REPO_ROOT / source).resolve()
        if path.is_relative_to(MONITORING) and not MONITORING.exists():
            pytest.skip("monitoring/ is not written yet; its mounts are checked once it exists")
        assert path.exists(), f"{service} mounts {source}, which does not exist"

    @pytest.mark.parametrize("service", list(services()))
    def test_restarts_unless_stopped_except_one_shot_jobs(self, service: str) -> None:
        expected = "no" if is_one_shot(service) else "unless-stopped"
        assert services()[service].get("restart") == expected

    @pytest.mark.parametrize("service", list(services()))
    def test_has_cpu_and_memory_limits(self, service: str) -> None:
        limits = services()[service]["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0
        assert re.fullmatch(r"\d+[KMG]", str(limits["memory"]))

    @pytest.mark.parametrize("service", list(services()))
    def test_services_waited_on_as_healthy_have_a_healthcheck(self, service: str) -> None:
        dependencies = services()[service].get("depends_on", {})
        for dependency, rule in dependencies.items():
            if rule["condition"] == "service_healthy":
                assert healthcheck_of(dependency), dependency

    @pytest.mark.parametrize("service", [s for s in built_services() if not is_one_shot(s)])
    def test_long_running_service_checks_the_port_its_program_serves(
        self, service: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The image's check asks the image's own CMD; another command (a relay in the
        books or orders image) needs a check of its own, on its metrics port."""
        check = healthcheck_of(service)
        assert check, f"{service} has no healthcheck"
        assert check[:3] == ["CMD", "python", "-c"], "the slim images have no curl"
        package = dockerfile_of(service).package
        checked = checked_port(package, check[3], container_env(service), monkeypatch)
        assert checked == listening_port(service, monkeypatch)

    @pytest.mark.parametrize("service", [s for s in built_services() if not is_one_shot(s)])
    def test_waits_for_the_migrations_of_its_image(self, service: str) -> None:
        image = services()[service]["image"]
        migrations = [
            name
            for name in built_services()
            if is_one_shot(name) and services()[name]["image"] == image
        ]
        dependencies = services()[service].get("depends_on", {})
        for migration in migrations:
            assert dependencies[migration]["condition"] == "service_completed_successfully"
            assert services()[migration]["depends_on"]["db"]["condition"] == "service_healthy"

    def test_monitoring_services_are_behind_the_monitoring_profile(self) -> None:
        monitoring = {
            name
            for name, service in services().items()
            if "monitoring" in service.get("profiles", [])
        }
        assert monitoring == {
            "prometheus",
            "grafana",
            "redis-exporter",
            "postgres-exporter",
            "rq-dashboard",
            "jaeger",
        }
        assert all("profiles" not in services()[name] for name in services().keys() - monitoring)


# --- what the containers run -----------------------------------------------------------


def _repo_path(working_dir: str, relative: str) -> Path:
    image_path = PurePosixPath(working_dir) / relative
    assert image_path.is_relative_to(IMAGE_ROOT), f"{image_path} is outside {IMAGE_ROOT}"
    return REPO_ROOT / image_path.relative_to(IMAGE_ROOT)


def _copied_into_final_image(dockerfile: Dockerfile, path: Path) -> bool:
    relative = str(path.relative_to(REPO_ROOT))
    return any(
        relative in sources and destination.rstrip("/") == relative
        for _, sources, destination in dockerfile.context_copies()
    )


class TestCommands:
    @pytest.mark.parametrize("service", built_services())
    def test_program_is_a_script_of_a_direct_dependency(self, service: str) -> None:
        program = command_of(service)[0]
        if program == "python":
            return
        (script,) = importlib.metadata.entry_points(group="console_scripts", name=program)
        assert script.dist is not None
        package = dockerfile_of(service).package
        assert canonicalize_name(script.dist.name) in requirement_names(package)

    @pytest.mark.parametrize("service", built_services())
    def test_command_names_an_entry_point_that_exists(self, service: str) -> None:
        program, *args = command_of(service)
        if program == "python":
            assert args[0] == "-m", "run modules, not files that may not be in the image"
            spec = importlib.util.find_spec(args[1])
            assert spec is not None, f"{service}: no module {args[1]}"
            if spec.submodule_search_locations is not None:
                assert importlib.util.find_spec(f"{args[1]}.__main__") is not None
        elif program == "uvicorn":
            module, _, attribute = _option(args, "--factory").partition(":")
            assert callable(getattr(importlib.import_module(module), attribute))
        elif program == "alembic":
            dockerfile = dockerfile_of(service)
            working_dir = services()[service].get("working_dir") or dockerfile.last("WORKDIR").args
            ini = _repo_path(working_dir, _option(args, "-c"))
            assert ini.is_file()
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(ini)
            scripts = ini.parent / parser["alembic"]["script_location"].replace("%(here)s/", "")
            assert (scripts / "env.py").is_file()
            assert _copied_into_final_image(dockerfile, ini)
            assert _copied_into_final_image(dockerfile, scripts)
        else:
            pytest.fail(f"{service}: teach this test how {program} finds its entry point")

    @pytest.mark.parametrize("service", built_services())
    def test_runs_the_package_its_image_installs(self, service: str) -> None:
        program, *args = command_of(service)
        package = dockerfile_of(service).package
        if program == "python":
            assert args[1].split(".")[0] == package
        elif program == "uvicorn":
            assert _option(args, "--factory").split(".")[0] == package


# --- ports and environment -------------------------------------------------------------


class TestPortsAndEnvironment:
    @pytest.mark.parametrize(("service", "port"), API_PORTS.items())
    def test_api_serves_publishes_and_checks_its_port(
        self, service: str, port: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert command_of(service) == ["python", "-m", service]
        dockerfile = dockerfile_of(service)
        assert settings_in(service, container_env(service), monkeypatch).host == "0.0.0.0"
        assert listening_port(service, monkeypatch) == port
        assert int(dockerfile.last("EXPOSE").args) == port
        check = " ".join(dockerfile.healthcheck)
        assert "/livez" in check
        assert checked_port(service, check, container_env(service), monkeypatch) == port
        assert container_ports(service) == {port}

    @pytest.mark.parametrize("variable", ["PORT", "BOOKS_PORT", "ORDERS_PORT"])
    @pytest.mark.parametrize("service", API_PORTS)
    def test_the_port_variables_move_the_server_and_its_check(
        self, service: str, variable: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`PORT` (the predecessor's name) or the service's own variable, set on the
        container, moves the server and the image's check alike; the other service's
        variable moves nothing."""
        moved = variable in ("PORT", f"{service.upper()}_PORT")
        expected = 9123 if moved else API_PORTS[service]
        monkeypatch.setitem(
            services()[service], "environment", {**environment_of(service), variable: "9123"}
        )
        check = " ".join(dockerfile_of(service).healthcheck)
        assert listening_port(service, monkeypatch) == expected
        assert checked_port(service, check, container_env(service), monkeypatch) == expected

    def test_orders_looks_for_books_on_the_books_port(self) -> None:
        from orders.config import Settings

        assert urlsplit(Settings().books_url).port == API_PORTS["books"]

    def test_the_apis_and_the_workers_share_one_required_service_key(self) -> None:
        """Workers present the key to both internal APIs; an API without it refuses them."""
        keys = {environment_of(service).get("SERVICE_KEY") for service in (*API_PORTS, "workers")}
        (key,) = keys
        assert key is not None
        assert key.startswith("${SERVICE_KEY:?")

    @pytest.mark.parametrize("service", built_services())
    def test_sets_only_variables_its_settings_or_libraries_read(self, service: str) -> None:
        package = dockerfile_of(service).package
        for_libraries = {
            name
            for name, (library, _) in LIBRARY_ENV.items()
            if library in requirement_names(package)
        }
        unknown = environment_of(service).keys() - settings_fields(package).keys() - for_libraries
        assert unknown == set(), f"{service} sets variables nothing reads"

    @pytest.mark.parametrize("service", built_services())
    def test_settings_accept_its_environment(
        self, service: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env = {k: interpolate(v, env_example()) for k, v in environment_of(service).items()}
        assert load_settings(dockerfile_of(service).package, env, monkeypatch) is not None

    @pytest.mark.parametrize(("service", "variable"), empty_example_variables())
    def test_an_empty_example_value_means_unset(
        self, service: str, variable: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`NAME=` in .env.example reaches the container as an empty string, which the
        settings must read as "not configured" (their default), not as a value."""
        if variable in LIBRARY_ENV:
            read = LIBRARY_ENV[variable][1]
            monkeypatch.setenv(variable, "")
            configured = read()
            monkeypatch.delenv(variable)
            assert configured == read()
            return
        package = dockerfile_of(service).package
        attribute = settings_fields(package)[variable]
        configured = load_settings(package, {variable: ""}, monkeypatch)
        assert getattr(configured, attribute) == getattr(
            load_settings(package, {}, monkeypatch), attribute
        )

    @pytest.mark.parametrize("service", built_services())
    def test_urls_point_at_services_and_their_ports(
        self, service: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in environment_of(service).items():
            url = urlsplit(interpolate(value, env_example()))
            if url.scheme not in ("http", "postgresql", "redis", "smtp"):
                continue
            assert url.hostname in services(), f"{name}: {url.hostname} is not a service"
            if url.scheme == "http":
                assert url.port == listening_port(url.hostname, monkeypatch)
            if url.scheme == "smtp":
                assert url.port == SMTP_PORTS[image_name(url.hostname)]
            if url.scheme == "postgresql":
                assert url.port == 5432
                db_env = environment_of(url.hostname)
                role, database = url.username, url.path.lstrip("/")
                created = re.search(
                    rf"^create_service_database {database} {role} "
                    rf'"\$\{{(\w+):\?[^}}]*\}}"$',
                    INIT_SCRIPT.read_text(),
                    re.MULTILINE,
                )
                assert created, f"the init script does not create {database} for {role}"
                password_variable = created[1]
                assert interpolate(db_env[password_variable], env_example()) == url.password


# --- monitoring and the workers --------------------------------------------------------


class TestScrapeTargets:
    @pytest.mark.parametrize(("host", "port"), scrape_targets())
    def test_target_is_a_service_serving_that_port(
        self, host: str, port: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert host in services(), f"prometheus.yml scrapes {host}, which is not a service"
        assert listening_port(host, monkeypatch) == port
        # Up whenever Prometheus is: in no profile, or in one of Prometheus'.
        profiles = set(services()[host].get("profiles", []))
        assert profiles <= set(services()["prometheus"]["profiles"])


class TestWorkers:
    def test_runs_two_replicas_prometheus_finds_by_dns(self) -> None:
        workers = services()["workers"]
        assert workers["deploy"]["replicas"] == 2
        assert "container_name" not in workers, "a fixed name allows a single replica"
        assert "ports" not in workers, "replicas cannot share a published port"

    def test_a_running_job_can_finish_before_the_stop_turns_into_a_kill(self) -> None:
        grace = seconds(services()["workers"]["stop_grace_period"])
        assert grace >= JobPolicy().timeout_s + 5

    def test_metrics_are_shared_through_a_tmpfs_of_their_own(self) -> None:
        """The directory must exist and be writable on the read-only root filesystem; a
        mount of its own exists from the start (a folder under /tmp would not)."""
        workers = services()["workers"]
        assert workers["read_only"]
        mounts = {str(mount).partition(":")[0] for mount in workers["tmpfs"]}
        assert container_env("workers")[MULTIPROCESS_ENV] in mounts


class TestMail:
    def test_workers_mail_the_catcher_when_env_sets_no_smtp_url(self) -> None:
        """An .env made before the mail catcher existed still gets the notices caught."""
        env = {k: v for k, v in env_example().items() if k != "SMTP_URL"}
        url = urlsplit(interpolate(environment_of("workers")["SMTP_URL"], env))
        assert url.scheme == "smtp"
        assert url.hostname == "mailpit"
        assert url.port == SMTP_PORTS[image_name("mailpit")]

    def test_example_smtp_url_is_the_default(self) -> None:
        default = _VARIABLE.fullmatch(environment_of("workers")["SMTP_URL"])
        assert default is not None
        assert default["op"] == ":-"
        assert env_example()["SMTP_URL"] == default["arg"]

    def test_catcher_is_in_no_profile_and_its_ui_on_loopback_only(self) -> None:
        mailpit = services()["mailpit"]
        assert "profiles" not in mailpit, "the workers mail it in every compose run"
        assert mailpit["image"].partition(":")[2].startswith("v"), "pin a version tag"
        assert mailpit["ports"] == ["127.0.0.1:8025:8025"]
        assert healthcheck_of("mailpit") == ["CMD", "/mailpit", "readyz"]


class TestTraces:
    TRACED = ("books", "orders", "books-relay", "orders-relay", "workers")

    @pytest.mark.parametrize("service", TRACED)
    def test_exports_to_the_endpoint_env_names_and_only_then(self, service: str) -> None:
        """Off with .env.example (an empty value); on and aimed at the compose Jaeger's
        OTLP/HTTP port with the value the example's comment gives."""
        value = environment_of(service)["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert not tracing_enabled(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": interpolate(value, env_example())}
        )
        url = urlsplit(interpolate(value, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}))
        assert (url.hostname, url.port) == ("jaeger", JAEGER_OTLP_HTTP_PORT)
        assert "http://jaeger:4318" in ENV_EXAMPLE.read_text()

    def test_jaeger_takes_otlp_and_its_ui_is_on_loopback_only(self) -> None:
        jaeger = services()["jaeger"]
        assert image_name("jaeger") == "jaegertracing/all-in-one"
        assert jaeger["image"].partition(":")[2][0].isdigit(), "pin a version"
        assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
        assert jaeger["ports"] == [f"127.0.0.1:{JAEGER_QUERY_PORT}:{JAEGER_QUERY_PORT}"]

    def test_grafana_has_a_jaeger_datasource(self) -> None:
        provisioned = MONITORING / "grafana" / "provisioning" / "datasources"
        sources = [
            source
            for path in provisioned.glob("*.yml")
            for source in yaml.safe_load(path.read_text())["datasources"]
        ]
        (jaeger,) = [source for source in sources if source["type"] == "jaeger"]
        url = urlsplit(jaeger["url"])
        assert (url.hostname, url.port) == ("jaeger", JAEGER_QUERY_PORT)
        mounts = {str(volume).partition(":")[0] for volume in services()["grafana"]["volumes"]}
        assert "./monitoring/grafana/provisioning" in mounts


# --- the Dockerfiles -------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
class TestDockerfile:
    def test_is_built_for_its_own_member(self, path: Path) -> None:
        assert Dockerfile.read(path).package == path.parent.name

    def test_every_uv_sync_is_frozen_and_without_dev_tools(self, path: Path) -> None:
        syncs = Dockerfile.read(path).uv_syncs()
        assert len(syncs) == 2
        for sync in syncs:
            assert {"--frozen", "--no-dev"} <= set(sync)

    def test_dependencies_are_installed_before_the_sources_arrive(self, path: Path) -> None:
        dockerfile = Dockerfile.read(path)
        first_sync = next(
            i for i in dockerfile.builder if i.keyword == "RUN" and "uv sync" in i.args
        )
        assert "--no-install-workspace" in first_sync.args
        before = dockerfile.builder[: dockerfile.builder.index(first_sync)]
        copied = {s for _, sources, _ in dockerfile.context_copies(before) for s in sources}
        metadata = {"pyproject.toml", "uv.lock"} | {
            f"{m}/pyproject.toml" for m in workspace_members()
        }
        assert copied == metadata

    def test_copies_the_sources_of_the_members_it_needs(self, path: Path) -> None:
        dockerfile = Dockerfile.read(path)
        copied = {
            source
            for _, sources, _ in dockerfile.context_copies(dockerfile.builder)
            for source in sources
            if source.endswith("/src")
        }
        assert copied == {f"{m}/src" for m in members_needed_by(dockerfile.package)}

    def test_final_stage_is_slim_and_runs_as_non_root(self, path: Path) -> None:
        dockerfile = Dockerfile.read(path)
        assert dockerfile.last("WORKDIR").args == str(IMAGE_ROOT)
        user = dockerfile.last("USER").args.split(":")[0]
        assert user not in ("root", "0")
        copied_stages = {
            t.removeprefix("--from=")
            for i in dockerfile.final
            if i.keyword == "COPY"
            for t in i.tokens()
            if t.startswith("--from=")
        }
        assert copied_stages == {"builder"}, "only the venv comes from the build stages"
        runs = " ".join(i.args for i in dockerfile.final if i.keyword == "RUN")
        assert not re.search(r"apt-get install|pip install|\buv\b", runs)
        assert "/app/.venv/bin" in dockerfile.last("ENV").args

    def test_healthcheck_uses_python_not_curl(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        dockerfile = Dockerfile.read(path)
        check = dockerfile.healthcheck
        assert check[:2] == ["python", "-c"]
        port = int(dockerfile.last("EXPOSE").args)
        assert checked_port(dockerfile.package, check[2], dockerfile.env, monkeypatch) == port

    def test_copies_only_files_the_dockerignore_sends(self, path: Path) -> None:
        dockerfile = Dockerfile.read(path)
        for stage in dockerfile.stages:
            for instruction, sources, _ in dockerfile.context_copies(stage):
                for source in sources:
                    root = REPO_ROOT / source
                    assert root.exists(), instruction.args
                    files = [root] if root.is_file() else root.rglob("*")
                    for file in files:
                        relative = str(file.relative_to(REPO_ROOT))
                        if file.is_file() and "__pycache__" not in file.parts:
                            assert not dockerignore_excludes(relative), relative


class TestDockerignore:
    @pytest.mark.parametrize(
        "path",
        [
            ".env",
            ".git/HEAD",
            ".venv/pyvenv.cfg",
            ".data/postgres/PG_VERSION",
            "books/tests/conftest.py",
            "books/src/books/__pycache__/app.cpython-311.pyc",
        ],
    )
    def test_keeps_secrets_and_local_state_out_of_the_context(self, path: str) -> None:
        assert dockerignore_excludes(path)


# --- PostgreSQL init script ------------------------------------------------------------

PASSWORDS = {"books": "books-secret", "orders": "orders-secret"}


@pytest.fixture(scope="module")
def initialised_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A private server initialised by the script, then switched to password logins the
    way the postgres image does (scram-sha-256 for every role but the superuser)."""
    with EmbeddedPostgres(tmp_path_factory.mktemp("init-postgres"), free_port()) as server:
        environment = {
            **os.environ,
            "PATH": f"{POSTGRES_BIN_PATH}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": server.host,
            "PGPORT": str(server.port),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "postgres",
            "BOOKS_DB_PASSWORD": PASSWORDS["books"],
            "ORDERS_DB_PASSWORD": PASSWORDS["orders"],
        }
        result = subprocess.run(
            [str(INIT_SCRIPT)], env=environment, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        (server.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield server


def _url(server: EmbeddedPostgres, role: str, database: str, password: str | None = None) -> str:
    return (
        f"postgresql://{role}:{password or PASSWORDS[role]}@{server.host}:{server.port}/{database}"
    )


class TestPostgresInit:
    def test_script_is_executable_so_the_image_runs_it(self) -> None:
        assert os.access(INIT_SCRIPT, os.X_OK)

    @pytest.mark.parametrize("role", PASSWORDS)
    def test_each_role_owns_its_database_and_can_create_tables(
        self, initialised_postgres: EmbeddedPostgres, role: str
    ) -> None:
        with psycopg.connect(_url(initialised_postgres, role, f"{role}_db")) as conn:
            owner = conn.execute(
                "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            assert owner == (role,)
            conn.execute("CREATE TABLE probe (id int)")
            conn.rollback()

    @pytest.mark.parametrize(
        ("role", "database"),
        [
            ("books", "orders_db"),
            ("orders", "books_db"),
            ("books", "postgres"),
            ("orders", "template1"),
        ],
    )
    def test_a_role_cannot_connect_to_any_other_database(
        self, initialised_postgres: EmbeddedPostgres, role: str, database: str
    ) -> None:
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(_url(initialised_postgres, role, database)).close()

    def test_a_wrong_password_is_refused(self, initialised_postgres: EmbeddedPostgres) -> None:
        url = _url(initialised_postgres, "books", "books_db", password="wrong")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(url).close()


# --- Docker Compose itself, where installed ----------------------------------------------


def _compose_config(scratch: Path) -> subprocess.CompletedProcess[str]:
    """`config --quiet` by Docker Compose v2, else by v1 (Debian's `docker-compose`) on a
    copy in `scratch` without the top-level `name`, which v1 predates. Relative paths
    resolve against the repository either way, so missing build contexts still fail."""
    compose_file = COMPOSE_FILE
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        command = [docker, "compose"]
    elif legacy := shutil.which("docker-compose"):
        command = [legacy]
        document = yaml.safe_load(COMPOSE_FILE.read_text())
        document.pop("name")
        compose_file = scratch / "docker-compose.yml"
        compose_file.write_text(yaml.safe_dump(document))
    else:
        pytest.skip(
            "neither Docker Compose v2 nor docker-compose is installed; the checks above stand in"
        )
    return subprocess.run(
        [
            *command,
            "--project-directory",
            str(REPO_ROOT),
            "--env-file",
            str(ENV_EXAMPLE),
            "--file",
            str(compose_file),
            "--profile",
            "monitoring",
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    result = _compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
