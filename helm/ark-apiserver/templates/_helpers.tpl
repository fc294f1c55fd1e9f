{{/* The chart name. */}}
{{- define "ark-apiserver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: the release name, plus the chart name unless it already holds it. */}}
{{- define "ark-apiserver.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ark-apiserver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ark-apiserver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ark-apiserver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ark-apiserver.labels" -}}
helm.sh/chart: {{ include "ark-apiserver.chart" . }}
{{ include "ark-apiserver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ark-apiserver.serviceAccountName" -}}
{{- default (include "ark-apiserver.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "ark-apiserver.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
--auth-mode: auth.mode, delegated or off. A bare `off` in a values file reaches here as
the boolean false. The value was authMode before; an install still setting it would
silently get delegated, so it is refused by name.
*/}}
{{- define "ark-apiserver.authMode" -}}
{{- if hasKey .Values "authMode" }}
{{- fail "authMode was renamed to auth.mode (delegated by default; set auth.mode=off to serve without authentication)" }}
{{- end }}
{{- $mode := .Values.auth.mode }}
{{- if and (kindIs "bool" $mode) (not $mode) }}{{ $mode = "off" }}{{ end }}
{{- if not (has $mode (list "delegated" "off")) }}
{{- fail (printf "auth.mode must be delegated or off, not %v" $mode) }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* Whether the chart generates the serving certificate: neither cert-manager nor a Secret of the user's. */}}
{{- define "ark-apiserver.generateTls" -}}
{{- if and (not .Values.certManager.enabled) (not .Values.tls.secretName) }}true{{ end }}
{{- end }}

{{/* The Secret holding the serving certificate, in every mode. */}}
{{- define "ark-apiserver.tlsSecretName" -}}
{{- if .Values.certManager.enabled }}
{{- printf "%s-tls" (include "ark-apiserver.fullname" .) }}
{{- else if .Values.tls.secretName }}
{{- .Values.tls.secretName }}
{{- else }}
{{- printf "%s-serving-cert" (include "ark-apiserver.fullname" .) }}
{{- end }}
{{- end }}

{{/* The DNS names the kube-apiserver may reach the Service by. */}}
{{- define "ark-apiserver.serviceDnsNames" -}}
{{- $svc := include "ark-apiserver.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* "<namespace>/<certificate>" for cert-manager's CA injection. */}}
{{- define "ark-apiserver.certificateRef" -}}
{{- printf "%s/%s" .Release.Namespace (include "ark-apiserver.fullname" .) }}
{{- end }}

{{/*
The database settings, as container env. Called with a dict: root (the chart
context), user, secretName, secretKey. The password comes from the Secret only.
*/}}
{{- define "ark-apiserver.dbEnv" -}}
{{- $pg := .root.Values.postgresql -}}
- name: ARK_POSTGRES_HOST
  value: {{ required "postgresql.host is required" $pg.host | quote }}
- name: ARK_POSTGRES_PORT
  value: {{ $pg.port | quote }}
- name: ARK_POSTGRES_DATABASE
  value: {{ $pg.database | quote }}
- name: ARK_POSTGRES_USER
  value: {{ .user | quote }}
- name: ARK_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .secretKey | quote }}
- name: ARK_POSTGRES_SSL_MODE
  value: {{ $pg.sslMode | quote }}
{{- if $pg.caSecretName }}
- name: ARK_POSTGRES_SSL_ROOT_CERT
  value: {{ printf "/etc/ark/postgres-ca/%s" $pg.caSecretKey | quote }}
{{- end }}
{{- end }}

{{/* The runtime role's settings (the server and the cleanup Job). */}}
{{- define "ark-apiserver.runtimeDbEnv" -}}
{{- $pg := .Values.postgresql -}}
{{- include "ark-apiserver.dbEnv" (dict "root" . "user" (required "postgresql.user is required" $pg.user) "secretName" (required "postgresql.passwordSecretName is required" $pg.passwordSecretName) "secretKey" $pg.passwordSecretKey) }}
{{- end }}

{{/* The migration's settings: migration.postgresql.*, else the runtime role's. */}}
{{- define "ark-apiserver.migrationDbEnv" -}}
{{- $pg := .Values.postgresql -}}
{{- $m := .Values.migration.postgresql -}}
{{- $user := default (required "postgresql.user is required" $pg.user) $m.user -}}
{{- $secret := default (required "postgresql.passwordSecretName is required" $pg.passwordSecretName) $m.passwordSecretName -}}
{{- $key := default $pg.passwordSecretKey $m.passwordSecretKey -}}
{{- include "ark-apiserver.dbEnv" (dict "root" . "user" $user "secretName" $secret "secretKey" $key) }}
{{- end }}

{{- define "ark-apiserver.streamEnv" -}}
- name: ARK_SLOT_NAME
  value: {{ .Values.slotName | quote }}
- name: ARK_PUBLICATION_NAME
  value: {{ .Values.publicationName | quote }}
{{- end }}

{{/* The PostgreSQL CA mount, when postgresql.caSecretName is set. */}}
{{- define "ark-apiserver.caVolumeMounts" -}}
{{- if .Values.postgresql.caSecretName }}
- name: postgres-ca
  mountPath: /etc/ark/postgres-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "ark-apiserver.caVolumes" -}}
{{- if .Values.postgresql.caSecretName }}
- name: postgres-ca
  secret:
    secretName: {{ .Values.postgresql.caSecretName | quote }}
    items:
      - key: {{ .Values.postgresql.caSecretKey | quote }}
        path: {{ .Values.postgresql.caSecretKey | quote }}
{{- end }}
{{- end }}

{{/* The pod spec fields the Deployment and the Jobs share. */}}
{{- define "ark-apiserver.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.affinity }}
affinity:
  {{- toYaml .Values.affinity | nindent 2 }}
{{- else if gt (int .Values.replicaCount) 1 }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "ark-apiserver.selectorLabels" . | nindent 14 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
