"""The Kubernetes operator: renders each LLMJob stage into an existing engine's workload and follows it.

Pure core:
  render (+ render_pytorchjob, render_rayjob, render_batch, render_serve, pods)  LLMJob + stage -> manifests
  children   a child's status in stage terms, and the patch that suspends or resumes it
  plan       what to create, retry, suspend or delete, and the new status
  admission  why an LLMJob write should be refused
Edges:
  kube (API client), reconcile (read, plan, apply, write status and events), artifacts (checkpoints in the store),
  handlers (kopf), webhook (the admission server), runner (`llmp operator`), fetch_model (vLLM's init container).

Importing this package imports nothing heavy (no kopf, no Kubernetes client); docs/operator.md is the user guide.
"""
