"""The Kubernetes operator: renders each LLMJob stage into an existing engine's workload and follows it.

`render` holds the pure functions (LLMJob + stage -> manifests: Kubeflow PyTorchJob, KubeRay RayJob, batch Job,
Deployment + Service); `plan` decides, from what the cluster shows, which children to create, retry, suspend or delete;
`reconcile` and `handlers` are the thin kopf edges that read the cluster, apply the plan and write status.
Importing this package does not import kopf.
"""
