{{/* Names and labels shared by every template. */}}

{{- define "fc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fc.fullname" -}}
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

{{/* Component names: the agent's also names its headless Service, whose DNS the agents'
serving certificate covers, so it stays short enough for a DNS label. */}}
{{- define "fc.operatorName" -}}{{ include "fc.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "fc.agentName" -}}{{ include "fc.fullname" . | trunc 57 | trimSuffix "-" }}-agent{{- end -}}

{{- define "fc.archiveReader" -}}{{ include "fc.fullname" . | trunc 48 | trimSuffix "-" }}-archive-reader{{- end -}}
{{- define "fc.custodianRole" -}}{{ include "fc.fullname" . | trunc 53 | trimSuffix "-" }}-custodian{{- end -}}

{{- define "fc.operatorServiceAccount" -}}{{ default (include "fc.operatorName" .) .Values.operator.serviceAccount.name }}{{- end -}}
{{- define "fc.agentServiceAccount" -}}{{ default (include "fc.agentName" .) .Values.agent.serviceAccount.name }}{{- end -}}
{{- define "fc.agentCASecret" -}}{{ default (printf "%s-ca" (include "fc.agentName" .)) .Values.agent.tls.ca.secretName }}{{- end -}}
{{- define "fc.kubeletClientCASecret" -}}{{ default (printf "%s-kubelet-client-ca" (include "fc.fullname" .)) .Values.kubelet.clientCA.secretName }}{{- end -}}
{{- define "fc.kubeletClientSecret" -}}{{ default (printf "%s-kubelet-client" (include "fc.fullname" .)) .Values.kubelet.clientCertificate.secretName }}{{- end -}}

{{- define "fc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: forensic-checkpoint
{{- end -}}

{{- define "fc.operatorSelector" -}}
app.kubernetes.io/name: {{ include "fc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "fc.agentSelector" -}}
app.kubernetes.io/name: {{ include "fc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "fc.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* The agents' DNS suffix. Each agent advertises <pod IP, dashed>.<this>: the cluster DNS's pod
record (CoreDNS `pods insecure|verified`, the kubeadm default), which the wildcard serving
certificate covers. A headless Service would not do: it names a DaemonSet's pods only when each
sets its own spec.hostname, which a pod template cannot. */}}
{{- define "fc.agentDomain" -}}{{ .Release.Namespace }}.pod.{{ .Values.clusterDomain }}{{- end -}}

{{- /*
A pod template's labels: the selector's, the chart's, then the user's podLabels, each key once
(a key written twice is invalid YAML to strict parsers such as kubeconform -strict); the
selector's win, so that podLabels can never detach the pods from their workload.
Call with (dict "root" . "selector" "fc.agentSelector" "extra" .Values.agent.podLabels).
*/ -}}
{{- define "fc.podLabels" -}}
{{- $labels := merge (include .selector .root | fromYaml) (include "fc.labels" .root | fromYaml) (.extra | default dict) -}}
{{- toYaml $labels -}}
{{- end -}}
