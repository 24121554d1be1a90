"""The serving Deployment becomes Ready only once our server reports healthy: the operator renders it (kopf against
the emulated API), the test plays the kubelet, running the real server on the Deployment's port and probing the
readiness path the Deployment declares, and reports the Deployment available only when that probe passes."""

from __future__ import annotations

import threading

import httpx

from llm_platform.services.openai_server import ServeOptions, engine_loader, make_server

from ..observability.prometheus import free_port
from .cluster import stays, wait_for
from .helpers import DATA, PRETRAIN, SERVE, TOKENIZER, child, job_dict
from .test_operator_e2e import finish_first_stages


def test_the_serving_deployment_is_available_only_once_the_server_is_healthy(cluster, tiny_chat_model):
    cluster.start_operator(cluster.reconciler())
    cluster.apply(job_dict(DATA, TOKENIZER, PRETRAIN, {**SERVE, "serve": {"port": free_port()}}))
    finish_first_stages(cluster)
    cluster.finish("PyTorchJob", child("demo", "pretrain"), "Succeeded")
    deployment = wait_for(lambda: cluster.child("Deployment", child("demo", "serve")), what="the serving Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    readiness = container["readinessProbe"]["httpGet"]
    url = f"http://127.0.0.1:{ports[readiness['port']]}{readiness['path']}"

    # the kubelet starts the container: our server on that port, its weights still loading
    loaded = threading.Event()
    load = engine_loader(ServeOptions(model=tiny_chat_model))
    server, _ = make_server(ServeOptions(model=tiny_chat_model, port=ports["http"]), lambda: loaded.wait(30) and load())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def probe_passes() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: server.started, what="the server listening")
        assert not probe_passes()
        assert stays(lambda: cluster.stage("demo", "serve").get("phase") != "Succeeded")
        loaded.set()
        wait_for(probe_passes, timeout=30, what="the readiness probe passing")
        cluster.finish("Deployment", child("demo", "serve"), "Succeeded")  # Ready pods: the Deployment is Available
        wait_for(lambda: cluster.phase("demo") == "Succeeded", what="phase Succeeded")
    finally:
        loaded.set()
        server.should_exit = True
        thread.join(30)
