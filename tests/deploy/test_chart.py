"""The Helm chart, rendered by the real `helm` binary: it lints, every object validates against the schema the cluster
checks it with, its values are checked, and the pieces that must meet do (Service -> operator port, ServiceMonitor ->
Service, PodMonitor -> the training pods the operator renders, the operator's flags -> `llmp operator`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import typer
import yaml
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.operator.options import DEFAULT_IMAGE_PACKAGES, ENVIRONMENT, AllowList, options_from_env
from llm_platform.operator.render import render_job
from tests.operator.helpers import REPO, example
from tests.operator.schemas import schema_errors

from .chart import CHART, HELM, helm, needs_helm, one, template

pytestmark = needs_helm

EVERYTHING_ON = [
    "metrics.serviceMonitor.enabled=true",
    "metrics.podMonitor.enabled=true",
    "operator.watchNamespaces={research,prod}",
    "api.enabled=true",
    "api.storeLogs.enabled=true",
]
EVERYTHING_OFF = [
    "operator.webhook.enabled=false",
    "operator.peering=",
    "operator.readArtifacts=false",
    "serviceAccount.create=false",
    "serviceAccount.name=existing",
    "rbac.create=false",
    "dashboards.enabled=false",
]


def crd_schemas(docs: list[dict]) -> dict:
    return {
        (f"{d['spec']['group']}/{v['name']}", d["spec"]["names"]["kind"]): v["schema"]["openAPIV3Schema"]
        for d in docs
        if d["kind"] == "CustomResourceDefinition"
        for v in d["spec"]["versions"]
    }


def test_the_chart_lints():
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("settings", [[], EVERYTHING_ON, EVERYTHING_OFF], ids=["defaults", "all-on", "all-off"])
def test_every_object_validates(settings):
    docs = template(*settings, crds=True)
    crds = crd_schemas(docs)
    assert set(crds) == {("llmplatform.dev/v1alpha1", "LLMJob"), ("kopf.dev/v1", "ClusterKopfPeering")}
    # PodMonitor has no schema among the upstream CRDs we carry; test_the_podmonitor_finds_... checks what matters
    checked = [d for d in docs if d["kind"] not in ("CustomResourceDefinition", "PodMonitor")]
    assert [e for d in checked for e in schema_errors(d, crds)] == []


def test_the_crds_are_the_generated_ones():
    docs = template(crds=True)
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    for path in (REPO / "manifests" / "crds").glob("*.yaml"):
        expected = yaml.safe_load(path.read_text())
        assert by_name[expected["metadata"]["name"]] == expected


def test_bad_values_are_refused_with_their_path():
    result = helm("template", "rel", str(CHART), "--set", "operator.peerin=x")
    assert result.returncode != 0
    assert "at '/operator': additional properties 'peerin' not allowed" in result.stderr
    result = helm("template", "rel", str(CHART), "--set", "operator.metricsPort=0")
    assert "at '/operator/metricsPort': minimum: got 0, want 1" in result.stderr


def test_the_operator_flags_parse_with_the_real_cli():
    for settings in ([], EVERYTHING_ON, EVERYTHING_OFF):
        for deployment in (d for d in template(*settings) if d["kind"] == "Deployment"):
            program, command, *args = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
            assert program == "llmp" and command in ("operator", "serve-api")
            # parse (not run) exactly what the pod runs
            typer.main.get_command(app).commands[command].make_context(command, list(args))


def test_the_service_and_servicemonitor_reach_the_operator_metrics_port():
    docs = template(*EVERYTHING_ON, "operator.metricsPort=9191")
    deployment, service = one(docs, "Deployment", "operator"), one(docs, "Service", "operator")
    monitor = one(docs, "ServiceMonitor")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert "--metrics-port=9191" in container["command"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == 9191
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {p["name"] for p in service["spec"]["ports"]} >= {monitor["spec"]["endpoints"][0]["port"], "webhook"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["llm"]}


def test_the_podmonitor_finds_the_training_pods_the_operator_renders():
    monitor = one(template(*EVERYTHING_ON), "PodMonitor")["spec"]
    job = example("pretrain.yaml")
    pytorchjob = next(d for d in render_job(job) if d["kind"] == "PyTorchJob")
    replicas = pytorchjob["spec"]["pytorchReplicaSpecs"]
    master = replicas["Master"]["template"]
    labels = master["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert all(e["key"] in labels for e in monitor["selector"]["matchExpressions"] if e["operator"] == "Exists")
    endpoint, serving = monitor["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in master["spec"]["containers"][0]["ports"]}
    assert ports[endpoint["port"]] == job.spec.stage("pretrain").train.metrics_port
    # only rank 0 serves metrics, so only the Master declares the port (no target that is always down)
    worker_ports = {p["name"] for p in replicas["Worker"]["template"]["spec"]["containers"][0]["ports"]}
    assert endpoint["port"] not in worker_ports
    # the series carry their own `job` label (the LLMJob), which the dashboards select on
    assert endpoint["honorLabels"] is True
    assert monitor["namespaceSelector"] == {"matchNames": ["research", "prod"]}
    # serving pods: the server's /metrics on the port named http, which the serve Deployment declares
    deployment = next(d for d in render_job(example("serve-vllm.yaml")) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    assert monitor["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert serving["port"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert (serving["path"], serving["honorLabels"]) == ("/metrics", True)


def test_the_api_service_reaches_the_api_and_its_role_binds_to_its_account():
    docs = template("api.enabled=true", "api.namespace=research")
    deployment, service = one(docs, "Deployment", "api"), one(docs, "Service", "api")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert not service["spec"]["selector"].items() <= one(docs, "Deployment", "operator")["spec"]["template"][
        "metadata"]["labels"].items()  # fmt: skip
    assert "--namespace=research" in pod["spec"]["containers"][0]["command"]
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "research"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["spec"]["serviceAccountName"], "namespace": "llm"}
    ]


def test_switching_parts_off_removes_them():
    kinds = [d["kind"] for d in template(*EVERYTHING_OFF)]
    assert sorted(kinds) == ["Deployment", "Service"]
    deployment = one(template(*EVERYTHING_OFF), "Deployment")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--standalone" in command and "--no-read-artifacts" in command
    assert not any(arg.startswith("--webhook") for arg in command)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_each_dashboard_ships_as_a_configmap_grafana_picks_up():
    files = sorted((CHART / "dashboards").glob("*.json"))
    if not files:
        pytest.skip("no dashboards in helm/llm-platform/dashboards yet")
    maps = [d for d in template() if d["kind"] == "ConfigMap"]
    assert len(maps) == len(files)
    shipped = {name: json.loads(text) for m in maps for name, text in m["data"].items()}
    assert shipped == {f.name: json.loads(f.read_text()) for f in files}
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "1" for m in maps)


def test_the_plain_manifests_are_rendered_from_the_chart(tmp_path):
    script = REPO / "hack" / "render_manifests.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--helm", HELM], check=True, timeout=60)
    rendered = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.yaml")}
    committed = {
        p.relative_to(REPO / "manifests"): p.read_text()
        for folder in ("operator", "monitoring", "api")
        for p in (REPO / "manifests" / folder).glob("*.yaml")
        if p.name != "namespace.yaml"
    }
    assert rendered == committed, "manifests/ drifted from helm/llm-platform: run `make manifests`"


def _policy(docs: list[dict], component: str) -> dict[str, str]:
    container = one(docs, "Deployment", component)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if e["name"] in ENVIRONMENT.values()}


def test_the_operator_and_the_api_check_jobs_against_the_same_lists_from_the_values():
    docs = template(
        "api.enabled=true",
        "operator.allow.images={registry.example/team/*}",
        "operator.allow.secrets={s3-credentials,research/s3-*}",
        "operator.allow.priorityClasses={research-*}",
        "operator.allow.storageEndpoints={http://minio.minio:9000,https://s3.eu-west-1.amazonaws.com}",
        "operator.imagePackages={ray,deepspeed}",
        "operator.allow.storagePrefixes[0]=s3://llm/{namespace}",
        "operator.allow.storagePrefixes[1]=s3://shared/*",
    )
    operator, api = _policy(docs, "operator"), _policy(docs, "api")
    assert operator == api
    options = options_from_env(operator)
    assert options.allow == AllowList(
        images=("registry.example/team/*",),
        secrets=("s3-credentials", "research/s3-*"),
        claims=(),
        priority_classes=("research-*",),
        storage_endpoints=("http://minio.minio:9000", "https://s3.eu-west-1.amazonaws.com"),
        storage_prefixes=("s3://llm/{namespace}", "s3://shared/*"),
    )
    assert options.image_packages == ("ray", "deepspeed")
    assert options.image == "ghcr.io/llm-platform/trainer:0.1.0"


def test_the_charts_default_lists_are_the_operators_defaults():
    options = options_from_env(_policy(template(), "operator"))
    assert options.allow == AllowList() and options.image_packages == DEFAULT_IMAGE_PACKAGES
    assert options.image == "ghcr.io/llm-platform/trainer:0.1.0"  # whose repository the default image list allows


def test_a_pattern_with_a_comma_is_refused_with_its_path():
    result = helm("template", "rel", str(CHART), "--set", "operator.allow.secrets[0]=a\\,b")
    assert result.returncode != 0
    assert "at '/operator/allow/secrets/0'" in result.stderr


@pytest.mark.parametrize("prefix", ["llm/{namespace}", "s3://llm//{namespace}", "s3://", "s3://a\\,b/{namespace}"])
def test_a_storage_prefix_that_could_match_nothing_is_refused_with_its_path(prefix):
    result = helm("template", "rel", str(CHART), "--set-string", f"operator.allow.storagePrefixes[0]={prefix}")
    assert result.returncode != 0
    assert "at '/operator/allow/storagePrefixes/0'" in result.stderr


@pytest.mark.parametrize("endpoint", ["minio.minio:9000", "http://user@minio:9000", "http://minio:9000?x=1", "ftp://h"])
def test_a_storage_endpoint_that_could_match_nothing_is_refused_with_its_path(endpoint, tmp_path):
    """A host without a scheme, a user, a query: an entry that `same_endpoint` would never match, so a list that
    looks configured would allow nothing. The chart refuses the value; the API and the operator refuse to start on
    the variable (`options_from_env`), naming it."""
    result = helm("template", "rel", str(CHART), "--set", f"operator.allow.storageEndpoints[0]={endpoint}")
    assert result.returncode != 0
    assert "at '/operator/allow/storageEndpoints/0'" in result.stderr
    with pytest.raises(ValueError, match=f"LLMP_ALLOW_STORAGE_ENDPOINTS: '{re.escape(endpoint)}' "):
        options_from_env({"LLMP_ALLOW_STORAGE_ENDPOINTS": endpoint})
    env = {"LLMP_ALLOW_STORAGE_ENDPOINTS": endpoint}
    served = CliRunner().invoke(app, ["serve-api", "--root", str(tmp_path), "--tokens", str(tmp_path / "t")], env=env)
    assert served.exit_code == 2 and f"LLMP_ALLOW_STORAGE_ENDPOINTS: '{endpoint}'" in served.output


def test_the_api_reads_the_token_hashes_the_chart_puts_in_its_secret():
    import base64

    from llm_platform.services.tokens import new_token, parse_entries

    secret, token = new_token("research", read_only=True)
    entry = token.entry()
    settings = ["api.enabled=true", "api.namespace=research", "api.auth.publicDocs=true"]
    settings += [f"api.auth.tokens[0].{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in entry.items()]
    docs = template(*settings)
    stored = one(docs, "Secret", "api")
    pod = one(docs, "Deployment", "api")["spec"]["template"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == stored["metadata"]["name"] and mount["readOnly"]
    (item,) = volume["secret"]["items"]
    command = pod["containers"][0]["command"]
    assert f"--tokens={mount['mountPath']}/{item['path']}" in command and "--public-docs" in command
    text = stored["stringData"][item["key"]]
    assert parse_entries(json.loads(text), "secret") == [token]
    assert secret not in text and base64.b64encode(secret.encode()).decode() not in json.dumps(docs)

    own = template("api.enabled=true", "api.auth.existingSecret=my-tokens")
    assert [d for d in own if d["kind"] == "Secret"] == []
    pod = one(own, "Deployment", "api")["spec"]["template"]["spec"]
    assert pod["volumes"][0]["secret"]["secretName"] == "my-tokens"
    assert "--public-docs" not in pod["containers"][0]["command"]


def test_bad_api_tokens_are_refused_with_their_path():
    result = helm("template", "rel", str(CHART), "--set", "api.auth.tokens[0].namespace=a", "--set",
                  "api.auth.tokens[0].sha256=not-a-hash")  # fmt: skip
    assert result.returncode != 0
    assert "/api/auth/tokens/0/sha256" in result.stderr


def test_the_network_policy_admits_only_the_api_port_of_the_api_pods():
    peers = "api.networkPolicy.from[0].namespaceSelector.matchLabels.team=research"
    docs = template("api.enabled=true", "api.port=9000", peers)
    policy = one(docs, "NetworkPolicy", "api")["spec"]
    pod = one(docs, "Deployment", "api")["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert not policy["podSelector"]["matchLabels"].items() <= one(docs, "Deployment", "operator")["spec"]["template"][
        "metadata"]["labels"].items()  # fmt: skip
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": 9000, "protocol": "TCP"}]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"team": "research"}}}]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    allowed_out = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert allowed_out == {53, 443, 6443}
    assert [
        d for d in template("api.enabled=true", "api.networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"
    ] == []


STORE_ENV = [  # how an administrator gives the operator the store: a Secret's keys, the endpoint
    "operator.env[0].name=AWS_ACCESS_KEY_ID",
    "operator.env[0].valueFrom.secretKeyRef.name=operator-s3",
    "operator.env[0].valueFrom.secretKeyRef.key=AWS_ACCESS_KEY_ID",
    "operator.env[1].name=AWS_ENDPOINT_URL",
    "operator.env[1].value=http://minio.minio:9000",
]


def _api_env_and_egress(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    container = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    return container["env"], one(docs, "NetworkPolicy", "api")["spec"]["egress"]


def test_store_logs_give_the_api_the_operators_store_environment_and_egress_to_the_store():
    """api.storeLogs: the API opens the store as the operator does, so it gets operator.env and its NetworkPolicy lets
    it reach the store; off (the default) it has neither, whatever the store's ports and addresses say."""
    where = ["api.storeLogs.ports={9000}", "api.storeLogs.cidrs={10.1.0.0/16}"]
    default = template("api.enabled=true", *STORE_ENV)
    assert template("api.enabled=true", *STORE_ENV, *where) == default
    assert template("api.enabled=true", *STORE_ENV, "api.storeLogs.enabled=false") == default
    env_off, egress_off = _api_env_and_egress(default)
    assert not [e for e in env_off if e["name"].startswith("AWS_")]
    assert {p["port"] for rule in egress_off for p in rule["ports"]} == {53, 443, 6443}

    on = template("api.enabled=true", *STORE_ENV, "api.storeLogs.enabled=true", *where)
    env_on, egress_on = _api_env_and_egress(on)
    operator_env = one(on, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]["env"]
    store_env = [e for e in operator_env if e["name"].startswith("AWS_")]
    assert [e["name"] for e in store_env] == ["AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"]
    assert env_on == env_off + store_env
    assert egress_on == egress_off + [
        {"ports": [{"port": 9000, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}
    ]
    # nothing else changes: not the operator, not the API's Role (the store is read with the API's own credentials)
    changed = [d for d in on if d not in default]
    assert {(d["kind"], d["metadata"]["name"]) for d in changed} == {
        ("Deployment", "rel-llm-platform-api"),
        ("NetworkPolicy", "rel-llm-platform-api"),
    }
    assert [e for d in changed for e in schema_errors(d)] == []
    # by default to port 443 anywhere, as for AWS S3
    _, egress = _api_env_and_egress(template("api.enabled=true", "api.storeLogs.enabled=true"))
    assert egress[-1] == {"ports": [{"port": 443, "protocol": "TCP"}]}


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (["--set", "api.storeLogs.enabled=yes"], "at '/api/storeLogs/enabled': got string, want boolean"),
        (["--set", "api.storeLogs.ports={0}"], "at '/api/storeLogs/ports/0': minimum: got 0, want 1"),
        (["--set-json", "api.storeLogs.ports=[]"], "at '/api/storeLogs/ports': minItems: got 0, want 1"),
        (["--set", "api.storeLogs.cidrs={minio.minio}"], "at '/api/storeLogs/cidrs/0'"),
    ],
    ids=["enabled-not-a-boolean", "port-0", "no-port-would-open-every-port", "cidr-a-hostname"],
)
def test_bad_store_logs_values_are_refused_with_their_path(setting, said):
    result = helm("template", "rel", str(CHART), *setting)
    assert result.returncode != 0
    assert said in result.stderr
