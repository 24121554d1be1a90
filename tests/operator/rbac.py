"""Checking API calls against RBAC rules, as the API server's authorizer would (for the rules we write)."""

from __future__ import annotations

# the emulator's action names -> Kubernetes verbs
VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create", "UPDATE": "patch", "DELETE": "delete"}


def allowed(rules: list[dict], group: str, resource: str, verb: str, name: str | None) -> bool:
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and verb in rule["verbs"]
        and (not rule.get("resourceNames") or name in rule["resourceNames"])
        for rule in rules
    )
