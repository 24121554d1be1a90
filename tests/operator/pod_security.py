"""A checker of the Pod Security Standards' "restricted" profile, written from the published rules (Kubernetes
documentation, "Pod Security Standards", policies as of v1.30), plus the hardening we add on top; and the pod
templates inside every kind of workload the operator renders.

"restricted" contains every "baseline" control; each is checked on the pod spec and on every container, init
container and ephemeral container:

Baseline
 1. HostProcess: `securityContext.windowsOptions.hostProcess` unset or false (pod and containers).
 2. Host namespaces: `hostNetwork`, `hostPID`, `hostIPC` unset or false.
 3. Privileged containers: `securityContext.privileged` unset or false.
 4. Capabilities: `capabilities.add` only from AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD,
    NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT (narrowed by restricted control 17).
 5. HostPath volumes: no `volumes[*].hostPath`.
 6. Host ports: `ports[*].hostPort` unset or 0.
 7. AppArmor: `appArmorProfile.type` (pod and containers) unset, RuntimeDefault or Localhost; the
    `container.apparmor.security.beta.kubernetes.io/*` annotations unset, `runtime/default` or `localhost/*`.
 8. SELinux: `seLinuxOptions.type` unset or one of container_t, container_init_t, container_kvm_t,
    container_engine_t; `seLinuxOptions.user` and `.role` unset.
 9. /proc mount type: `securityContext.procMount` unset or Default.
10. Seccomp: `seccompProfile.type` (pod and containers) not Unconfined.
11. Sysctls: `securityContext.sysctls[*].name` only from the safe set (SAFE_SYSCTLS).

Restricted
12. Volume types: only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret.
13. Privilege escalation: every container sets `securityContext.allowPrivilegeEscalation: false`.
14. Running as non-root: `runAsNonRoot: true` on the pod, or on every container; no container sets it false.
15. Running as non-root user: `runAsUser` (pod and containers) unset or not 0.
16. Seccomp: `seccompProfile.type` RuntimeDefault or Localhost on the pod, or on every container.
17. Capabilities: every container drops ALL (`capabilities.drop` contains ALL) and adds nothing but
    NET_BIND_SERVICE.

Ours (not part of the standard): a read-only root file system, CPU and memory requests and limits on every
container, no service account token mounted, and a named (not the namespace's default) service account.
"""

from __future__ import annotations

from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def pod_templates(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{where: pod template} of every pod a workload makes (KubeRay's submitter included)."""
    kind, spec = obj["kind"], obj.get("spec") or {}
    name = f"{kind}/{obj['metadata']['name']}"
    if kind in ("Job", "Deployment"):
        return {name: spec["template"]}
    if kind == "PyTorchJob":
        return {f"{name} {r}": s["template"] for r, s in spec["pytorchReplicaSpecs"].items()}
    if kind == "RayJob":
        cluster = spec["rayClusterSpec"]
        out = {f"{name} head": cluster["headGroupSpec"]["template"]}
        out |= {f"{name} {g['groupName']}": g["template"] for g in cluster.get("workerGroupSpecs") or []}
        if "submitterPodTemplate" in spec:
            out[f"{name} submitter"] = spec["submitterPodTemplate"]
        return out
    return {}


def _all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or []), *(pod.get("ephemeralContainers") or [])]


def _apparmor_ok(profile: dict[str, Any] | None) -> bool:
    return profile is None or profile.get("type") in ("RuntimeDefault", "Localhost")


def _selinux_problems(options: dict[str, Any] | None, where: str) -> list[str]:
    if not options:
        return []
    problems = []
    if options.get("type", "") not in SELINUX_TYPES:
        problems.append(f"{where}: seLinuxOptions.type {options['type']!r} is not allowed")
    problems += [f"{where}: seLinuxOptions.{k} must be unset" for k in ("user", "role") if options.get(k)]
    return problems


def restricted_violations(template: dict[str, Any], where: str = "pod") -> list[str]:
    """Every "restricted" control (1-17 above) a pod template breaks; [] when it complies."""
    pod = template.get("spec") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    psc = pod.get("securityContext") or {}
    problems: list[str] = []
    # pod-level controls
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append(f"{where}: securityContext.windowsOptions.hostProcess")  # 1
    problems += [f"{where}: {f} is set" for f in ("hostNetwork", "hostPID", "hostIPC") if pod.get(f)]  # 2
    for volume in pod.get("volumes") or []:
        types = set(volume) - {"name"}
        if "hostPath" in types:
            problems.append(f"{where}: volume {volume['name']} is a hostPath")  # 5
        if not types <= RESTRICTED_VOLUMES:
            problems.append(f"{where}: volume {volume['name']} has a type outside the restricted list: {types}")  # 12
    if not _apparmor_ok(psc.get("appArmorProfile")):
        problems.append(f"{where}: securityContext.appArmorProfile")  # 7
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION) and not (value == "runtime/default" or value.startswith("localhost/")):
            problems.append(f"{where}: annotation {key}={value}")  # 7
    problems += _selinux_problems(psc.get("seLinuxOptions"), where)  # 8
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        problems.append(f"{where}: securityContext.seccompProfile is Unconfined")  # 10
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"{where}: sysctl {sysctl.get('name')} is not in the safe set")  # 11
    if psc.get("runAsUser") == 0:
        problems.append(f"{where}: securityContext.runAsUser is 0")  # 15
    # container-level controls
    for c in _all_containers(pod):
        at = f"{where} container {c.get('name')}"
        csc = c.get("securityContext") or {}
        if (csc.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{at}: windowsOptions.hostProcess")  # 1
        if csc.get("privileged"):
            problems.append(f"{at}: privileged")  # 3
        caps = csc.get("capabilities") or {}
        added = set(caps.get("add") or [])
        if not added <= BASELINE_CAPABILITIES:
            problems.append(
                f"{at}: adds capabilities outside the baseline set: {sorted(added - BASELINE_CAPABILITIES)}"
            )
        if not added <= {"NET_BIND_SERVICE"}:
            problems.append(f"{at}: adds capabilities other than NET_BIND_SERVICE: {sorted(added)}")  # 17
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{at}: does not drop ALL capabilities")  # 17
        problems += [f"{at}: hostPort {p['hostPort']}" for p in c.get("ports") or [] if p.get("hostPort")]  # 6
        if not _apparmor_ok(csc.get("appArmorProfile")):
            problems.append(f"{at}: appArmorProfile")  # 7
        problems += _selinux_problems(csc.get("seLinuxOptions"), at)  # 8
        if csc.get("procMount", "Default") != "Default":
            problems.append(f"{at}: procMount {csc['procMount']}")  # 9
        seccomp = (csc.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            problems.append(f"{at}: seccompProfile is Unconfined")  # 10
        if seccomp not in ("RuntimeDefault", "Localhost") and pod_seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{at}: no RuntimeDefault or Localhost seccomp profile (pod or container)")  # 16
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation is not false")  # 13
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{at}: runAsNonRoot is not true (pod or container)")  # 14
        if csc.get("runAsUser") == 0:
            problems.append(f"{at}: runAsUser is 0")  # 15
    return problems


def hardening_violations(template: dict[str, Any], where: str = "pod") -> list[str]:
    """What we ask beyond "restricted" (the last paragraph above)."""
    pod = template.get("spec") or {}
    problems = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken is not false")
    if pod.get("serviceAccountName", "default") == "default":
        problems.append(f"{where}: runs as the namespace's default service account")
    for c in _all_containers(pod):
        at = f"{where} container {c.get('name')}"
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: the root file system is writable")
        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(part) or {})
            if missing:
                problems.append(f"{at}: no {part} for {', '.join(sorted(missing))}")
    return problems
