#!/usr/bin/env bash
# End-to-end test of the operator on a real Kubernetes cluster: kind + Kubeflow training-operator + KubeRay.
#
# What the kmock-based tests cannot check runs here: real pods running `llmp stage run`, the training operator's
# torchrun rendezvous, KubeRay, owner-reference garbage collection, CRD schema validation, and the admission webhook
# refusing `kubectl apply` of a bad spec.
#
# Needs: docker, kind, kubectl, helm (make e2e-kind puts kubectl and helm from .tools/bin on PATH).
# Usage:  make e2e-kind            (or hack/e2e-kind.sh)
# Knobs (environment):
#   CLUSTER=llmp-e2e               kind cluster name (created if absent)
#   TRAINER_IMAGE, OPERATOR_IMAGE  prebuilt images to use; else built from images/{trainer,operator}/Dockerfile
#   KEEP=1                         keep the cluster afterwards (default: delete it if this script created it)
#   TIMEOUT=1800                   seconds to wait for the pipeline to succeed
set -euo pipefail

CLUSTER=${CLUSTER:-llmp-e2e}
TIMEOUT=${TIMEOUT:-1800}
TRAINING_OPERATOR_REF=${TRAINING_OPERATOR_REF:-v1.9.0}
KUBERAY_CHART_VERSION=${KUBERAY_CHART_VERSION:-1.3.2}
NAMESPACE=llmp-e2e
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

log() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || fail "needs '$tool' on PATH (docker and kind from their sites; kubectl and helm: make .tools/bin/kubectl)"
done
docker info >/dev/null 2>&1 || fail "docker is installed but its daemon is not reachable"

created=0
if ! kind get clusters | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s
  created=1
fi
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    log "diagnostics"
    kubectl get llmjobs,pytorchjobs,rayjobs,jobs,deployments,pods -A -o wide || true
    kubectl -n llm-platform logs deploy/llm-platform-operator --tail=200 || true
    kubectl -n "$NAMESPACE" describe llmjob e2e || true
  fi
  if [ "$created" = 1 ] && [ "${KEEP:-0}" != 1 ]; then
    log "deleting kind cluster $CLUSTER (KEEP=1 keeps it)"
    kind delete cluster --name "$CLUSTER"
  fi
  exit "$status"
}
trap cleanup EXIT
kubectl config use-context "kind-$CLUSTER" >/dev/null

build_image() {  # name dockerfile -> prints the image reference
  local name=$1 dockerfile=$2 tag="llm-platform/$1:e2e"
  [ -f "$dockerfile" ] || fail "no $dockerfile; set ${name^^}_IMAGE to a prebuilt image"
  docker build -q -t "$tag" -f "$dockerfile" . >/dev/null
  echo "$tag"
}
TRAINER_IMAGE=${TRAINER_IMAGE:-$(build_image trainer images/trainer/Dockerfile)}
OPERATOR_IMAGE=${OPERATOR_IMAGE:-$(build_image operator images/operator/Dockerfile)}
log "loading images $TRAINER_IMAGE $OPERATOR_IMAGE into kind"
kind load docker-image --name "$CLUSTER" "$TRAINER_IMAGE" "$OPERATOR_IMAGE"

log "installing Kubeflow training-operator $TRAINING_OPERATOR_REF"
kubectl apply --server-side --force-conflicts \
  -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=$TRAINING_OPERATOR_REF"
log "installing KubeRay operator (chart $KUBERAY_CHART_VERSION)"
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ >/dev/null 2>&1 || true
helm repo update kuberay >/dev/null
helm upgrade --install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_CHART_VERSION" \
  --namespace kuberay --create-namespace --wait
kubectl -n kubeflow rollout status deploy/training-operator --timeout=300s

log "installing llm-platform with its chart: CRDs, RBAC, peering, operator"
helm upgrade --install llm-platform helm/llm-platform --namespace llm-platform --create-namespace --wait \
  --set image.operator.repository="${OPERATOR_IMAGE%:*}" --set image.operator.tag="${OPERATOR_IMAGE##*:}" \
  --set image.trainer.repository="${TRAINER_IMAGE%:*}" --set image.trainer.tag="${TRAINER_IMAGE##*:}" \
  --set image.pullPolicy=IfNotPresent --set "operator.allow.claims={llmp-storage}"
kubectl -n llm-platform rollout status deploy/llm-platform-operator --timeout=300s

log "waiting for the admission webhook to be registered"
for _ in $(seq 60); do
  kubectl get validatingwebhookconfiguration llmjobs.llmplatform.dev >/dev/null 2>&1 && break
  sleep 2
done
kubectl get validatingwebhookconfiguration llmjobs.llmplatform.dev >/dev/null || fail "webhook not registered"

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
# Storage every pod of the job shares: one kind node, so a local-path volume is visible to all of them.
kubectl apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: llmp-storage, namespace: $NAMESPACE}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
EOF

log "the webhook refuses a bad spec with the validation message"
bad=$(cat <<EOF
apiVersion: llmplatform.dev/v1alpha1
kind: LLMJob
metadata: {name: bad, namespace: $NAMESPACE}
spec:
  storage: {uri: "s3://bucket/$NAMESPACE/bad"}
  stages:
  - {name: data, kind: data, data: {sources: [{type: stdlib}]}}
  - {name: tok, kind: tokenizer, needs: [dta]}
EOF
)
if out=$(echo "$bad" | kubectl apply -f - 2>&1); then
  fail "a bad LLMJob was admitted: $out"
fi
echo "$out" | grep -q "spec.stages\[1\].needs\[0\]: 'dta' is not a stage of this job" \
  || fail "unexpected rejection message: $out"
echo "refused as expected: $out"

log "running a small CPU pipeline: data (Job) -> tokenizer (Job) -> pretrain (PyTorchJob, 2 nodes) -> eval (Job)"
kubectl apply -f - <<EOF
apiVersion: llmplatform.dev/v1alpha1
kind: LLMJob
metadata:
  name: e2e
  namespace: $NAMESPACE
  annotations: {llmplatform.dev/storage-claim: llmp-storage}
spec:
  storage: {uri: file:///data/llmp}
  image: $TRAINER_IMAGE
  model:
    preset: llama-tiny
    overrides: {dim: 64, n_layers: 2, n_heads: 4, num_kv_heads: 2, ffn_dim: 128, max_seq_len: 128}
  max_retries: 1
  stages:
  - name: data
    kind: data
    data: {sources: [{type: stdlib, include: "*.py", max_docs: 300}], clean: {min_chars: 200}}
  - name: tokenizer
    kind: tokenizer
    needs: [data]
    tokenizer: {vocab_size: 512, train_max_bytes: 1000000}
  - name: pretrain
    kind: pretrain
    needs: [tokenizer]
    train: {steps: 20, micro_batch: 4, seq_len: 64, precision: fp32, device: cpu, parallel: {strategy: ddp, nodes: 2}}
  - name: eval
    kind: eval
    needs: [pretrain]
    eval: {metrics: [perplexity], limit: 5}
EOF

deadline=$(( $(date +%s) + TIMEOUT ))
phase=""
while [ "$(date +%s)" -lt "$deadline" ]; do
  phase=$(kubectl -n "$NAMESPACE" get llmjob e2e -o jsonpath='{.status.phase}')
  stage=$(kubectl -n "$NAMESPACE" get llmjob e2e -o jsonpath='{.status.current_stage}')
  printf '%s phase=%s stage=%s\n' "$(date +%T)" "${phase:-?}" "${stage:-}"
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 15
done
kubectl -n "$NAMESPACE" get llmjob e2e -o yaml
[ "$phase" = Succeeded ] || fail "the pipeline ended in phase '${phase:-none}'"
kubectl -n "$NAMESPACE" get pytorchjob -l llmplatform.dev/job=e2e,llmplatform.dev/stage=pretrain \
  -o jsonpath='{.items[0].spec.pytorchReplicaSpecs.Worker.replicas}' \
  | grep -qx 1 || fail "pretrain did not run as Master + 1 Worker"

log "deleting the job removes its children (finalizer), and keeps the artifacts (cleanup: keep)"
kubectl -n "$NAMESPACE" delete llmjob e2e --timeout=300s
left=$(kubectl -n "$NAMESPACE" get jobs,pytorchjobs,configmaps,serviceaccounts -l llmplatform.dev/job=e2e -o name)
[ -z "$left" ] || fail "children left after deletion: $left"

log "end-to-end test passed"
