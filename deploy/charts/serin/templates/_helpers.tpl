{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "serin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, unless it lacks the chart name. */}}
{{- define "serin.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "serin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "serin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "serin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "serin.labels" -}}
helm.sh/chart: {{ include "serin.chart" . }}
{{ include "serin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "serin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "serin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when leader election is on: explicitly, or auto with more than one replica. */}}
{{- define "serin.leaderElect" -}}
{{- $le := .Values.leaderElection.enabled -}}
{{- if eq (toString $le) "auto" -}}
{{- if gt (int .Values.replicas) 1 -}}true{{- else -}}false{{- end -}}
{{- else -}}
{{- ternary "true" "false" (eq (toString $le) "true") -}}
{{- end -}}
{{- end -}}

{{- define "serin.metricsServer" -}}
{{- if .Values.prometheus.install -}}
{{- printf "http://%s-prometheus.%s:9090" (include "serin.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.metricsServer -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding alert webhook URLs: an existing one, the chart's, or none. */}}
{{- define "serin.alertsSecretName" -}}
{{- if .Values.alertsSecretName -}}
{{- .Values.alertsSecretName -}}
{{- else if or .Values.slack.url .Values.msteams.url -}}
{{- printf "%s-alerts" (include "serin.fullname" .) -}}
{{- end -}}
{{- end -}}
