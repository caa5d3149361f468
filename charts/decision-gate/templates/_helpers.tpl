{{/* The chart's name, or nameOverride. */}}
{{- define "decision-gate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name: fullnameOverride, or the release's name with the chart's. */}}
{{- define "decision-gate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "decision-gate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "decision-gate.labels" -}}
{{ include "decision-gate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "decision-gate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "decision-gate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "decision-gate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "decision-gate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator's image: there is no published one, so the repository must be given. */}}
{{- define "decision-gate.image" -}}
{{- $repository := required "image.repository must name the decision-gate image you built from the repository's Dockerfile and pushed (the project publishes none), for example --set image.repository=registry.example.com/decision-gate" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The labels of `helm test`'s pod: apart from the operator's, so no Service selects it. */}}
{{- define "decision-gate.testLabels" -}}
app.kubernetes.io/name: {{ include "decision-gate.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
