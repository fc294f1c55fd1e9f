{{/*
Audit logging. The server reads the policy from the ConfigMap (audit-policy.yaml) and
writes audit.k8s.io/v1 events to audit.logPath: "-" for the container's standard output,
or a file on the volume mounted at the file's directory.
*/}}

{{- define "ark-apiserver.auditPolicyName" -}}
{{- printf "%s-audit-policy" (include "ark-apiserver.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The policy: audit.policy when given (apiVersion and kind filled in), else one rule at audit.level after a rule that leaves out the probes. */}}
{{- define "ark-apiserver.auditPolicy" -}}
{{- $a := .Values.audit -}}
{{- if $a.policy }}
{{- toYaml (merge (deepCopy $a.policy) (dict "apiVersion" "audit.k8s.io/v1" "kind" "Policy")) }}
{{- else }}
{{- if not (has $a.level (list "Metadata" "Request" "RequestResponse")) }}
{{- fail (printf "audit.level must be Metadata, Request or RequestResponse, not %v" $a.level) }}
{{- end }}
apiVersion: audit.k8s.io/v1
kind: Policy
{{- with $a.omitStages }}
omitStages:
  {{- toYaml . | nindent 2 }}
{{- end }}
rules:
  # The kubelet's probes, every few seconds, would fill the log.
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*"]
  - level: {{ $a.level }}
{{- end }}
{{- end }}

{{- define "ark-apiserver.auditLogToFile" -}}
{{- $path := .Values.audit.logPath -}}
{{- if and .Values.audit.enabled $path (ne $path "-") }}
{{- if not (isAbs $path) }}
{{- fail (printf "audit.logPath must be \"-\" or an absolute path, not %q" $path) }}
{{- end }}true
{{- end }}
{{- end }}

{{/* The serve flags. */}}
{{- define "ark-apiserver.auditArgs" -}}
{{- $a := .Values.audit -}}
{{- if $a.enabled }}
- --audit-policy-file=/etc/ark/audit/policy.yaml
- {{ printf "--audit-log-path=%s" (required "audit.logPath is required with audit.enabled (\"-\" for standard output)" $a.logPath) | quote }}
{{- if include "ark-apiserver.auditLogToFile" . }}
- {{ printf "--audit-log-maxsize=%d" (int $a.maxSize) | quote }}
- {{ printf "--audit-log-maxbackup=%d" (int $a.maxBackup) | quote }}
- {{ printf "--audit-log-maxage=%d" (int $a.maxAge) | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ark-apiserver.auditVolumeMounts" -}}
{{- if .Values.audit.enabled }}
- name: audit-policy
  mountPath: /etc/ark/audit
  readOnly: true
{{- if include "ark-apiserver.auditLogToFile" . }}
- name: audit-log
  mountPath: {{ dir .Values.audit.logPath | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ark-apiserver.auditVolumes" -}}
{{- if .Values.audit.enabled }}
- name: audit-policy
  configMap:
    name: {{ include "ark-apiserver.auditPolicyName" . | quote }}
{{- if include "ark-apiserver.auditLogToFile" . }}
- name: audit-log
  {{- if .Values.audit.volume }}
  {{- toYaml .Values.audit.volume | nindent 2 }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}
