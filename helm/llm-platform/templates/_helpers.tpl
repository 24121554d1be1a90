{{/* Names: "<release>" (or the chart name inside it), its operator "<release>-operator". */}}
{{- define "llmp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llmp.operatorName" -}}
{{- printf "%s-operator" (include "llmp.fullname" .) -}}
{{- end -}}

{{- define "llmp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmp.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: every object carries llmp.labels; a component's selector labels are the stable subset a Deployment and
its Service select on, llmp.componentLabels the two together. Call the last two with (dict "ctx" $ "component" NAME). */}}
{{- define "llmp.labels" -}}
app.kubernetes.io/name: llm-platform
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "llmp.selectorLabels" -}}
app.kubernetes.io/name: llm-platform
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "llmp.componentLabels" -}}
{{ include "llmp.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* What jobs may name and what the trainer image provides: the operator (its admission webhook) and the jobs API
check the same lists, read from this environment (llm_platform/operator/options.py: ENVIRONMENT). */}}
{{- define "llmp.jobPolicyEnv" -}}
{{- $op := .Values.operator -}}
- name: LLMP_TRAINER_IMAGE
  value: {{ include "llmp.image" (dict "image" .Values.image.trainer "chart" .Chart) }}
{{- if $op.vllmImage }}
- name: LLMP_VLLM_IMAGE
  value: {{ $op.vllmImage }}
{{- end }}
{{- with $op.allow.images }}
- name: LLMP_ALLOW_IMAGES
  value: {{ join "," . | quote }}
{{- end }}
- name: LLMP_ALLOW_SECRETS
  value: {{ join "," $op.allow.secrets | quote }}
- name: LLMP_ALLOW_CLAIMS
  value: {{ join "," $op.allow.claims | quote }}
- name: LLMP_ALLOW_PRIORITY_CLASSES
  value: {{ join "," $op.allow.priorityClasses | quote }}
- name: LLMP_ALLOW_STORAGE_ENDPOINTS
  value: {{ join "," $op.allow.storageEndpoints | quote }}
- name: LLMP_ALLOW_STORAGE_PREFIXES
  value: {{ join "," $op.allow.storagePrefixes | quote }}
- name: LLMP_IMAGE_PACKAGES
  value: {{ join "," $op.imagePackages | quote }}
{{- end -}}

{{- define "llmp.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) -}}
{{- end -}}
