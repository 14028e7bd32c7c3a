{{/* Names and labels shared by every template. */}}

{{- define "fleettwin.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's resource name: the release name, with the chart's name unless it holds it. */}}
{{- define "fleettwin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless service the StatefulSet's pods get their DNS names from. */}}
{{- define "fleettwin.headless" -}}
{{- printf "%s-nodes" (include "fleettwin.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fleettwin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleettwin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fleettwin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fleettwin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fleettwin
{{- end -}}

{{- define "fleettwin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fleettwin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fleettwin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* TLS on every port (tls.existingSecret), or plaintext by explicit choice (insecure). */}}
{{- define "fleettwin.tlsServerName" -}}
{{- default (include "fleettwin.fullname" .) .Values.tls.serverName -}}
{{- end -}}

{{- define "fleettwin.transport" -}}
{{- if and (not .Values.tls.existingSecret) (not .Values.insecure) -}}
{{- fail "set tls.existingSecret (a Secret with tls.crt, tls.key and ca.crt: TLS on every port) or insecure: true (plaintext, on a network you trust)" -}}
{{- end -}}
{{- end -}}

{{/* The node's configuration file: the values' node options, then what the chart owns. */}}
{{- define "fleettwin.nodeConfig" -}}
# fleettwin-node --config: keys are the node's long option names.
{{- $owned := list "grpc" "metrics" "data-dir" "node-id" "advertise-host" "cluster-port" "kafka" "kafka-option" "models" "aggregates" "config" "tls-cert" "tls-key" "tls-ca" "tls-client-auth" "insecure" "auth-jwks" "auth-hs256-secret-file" "auth-issuer" "auth-audience" }}
{{- range $key, $value := .Values.node }}
{{- if has $key $owned }}
{{- fail (printf "node.%s is set by the chart (ports, kafka, config, tls, insecure and the pod's name decide it)" $key) }}
{{- end }}
{{ $key }} = {{ toJson $value }}
{{- end }}
grpc = {{ printf "0.0.0.0:%d" (int .Values.ports.grpc) | quote }}
metrics = {{ printf "0.0.0.0:%d" (int .Values.ports.metrics) | quote }}
cluster-port = {{ int .Values.ports.cluster }}
data-dir = "/var/lib/fleettwin/data"
kafka = {{ required "kafka.bootstrap is required: the Kafka bootstrap servers (host:port,...)" .Values.kafka.bootstrap | quote }}
{{- with .Values.kafka.options }}
kafka-option = {{ toJson . }}
{{- end }}
{{- if .Values.config.models }}
models = "/etc/fleettwin/config/models.toml"
{{- end }}
{{- if .Values.config.aggregates }}
aggregates = "/etc/fleettwin/config/aggregates.toml"
{{- end }}
{{- end -}}
