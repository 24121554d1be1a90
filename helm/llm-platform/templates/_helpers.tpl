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

{{- define "llmp.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) -}}
{{- end -}}
