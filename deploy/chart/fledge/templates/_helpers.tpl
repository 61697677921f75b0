{{/* The release's full name: "fledge" for a release named fledge. */}}
{{- define "fledge.fullname" -}}
{{- if contains "fledge" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-fledge" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fledge.serviceAccountName" -}}
{{- default (include "fledge.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "fledge.labels" -}}
app.kubernetes.io/name: fledge
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fledge.selectorLabels" -}}
app.kubernetes.io/name: fledge
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* An image reference: repository, then @digest or :tag (default appVersion). */}}
{{- define "fledge.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount as an RBAC subject. */}}
{{- define "fledge.subject" -}}
- kind: ServiceAccount
  name: {{ include "fledge.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{/* The engine's pods (the load tester's are component loadtester). */}}
{{- define "fledge.engineSelectorLabels" -}}
{{ include "fledge.selectorLabels" . }}
app.kubernetes.io/component: engine
{{- end -}}
