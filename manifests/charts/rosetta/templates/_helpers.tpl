{{- define "rosetta.labels" -}}
app.kubernetes.io/name: rosetta
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The flags that get a workload certificate from istiod's CA. */}}
{{- define "rosetta.istiodArgs" -}}
- --ca-address={{ .Values.mesh.caAddress }}
- --ca-root-cert=/var/run/secrets/istio/root-cert.pem
- --token-file=/var/run/secrets/tokens/istio-token
{{- end -}}

{{/* Where the token (audience istio-ca) and the mesh root are mounted. */}}
{{- define "rosetta.istiodMounts" -}}
- {name: istio-token, mountPath: /var/run/secrets/tokens, readOnly: true}
- {name: istiod-ca-cert, mountPath: /var/run/secrets/istio, readOnly: true}
{{- end -}}

{{- define "rosetta.istiodVolumes" -}}
- name: istio-token
  projected:
    sources:
    - serviceAccountToken: {audience: istio-ca, expirationSeconds: 43200, path: istio-token}
- name: istiod-ca-cert
  configMap: {name: istio-ca-root-cert}
{{- end -}}

{{/* The namespace of the chart's lazy fallback proxies. */}}
{{- define "rosetta.fallbackNamespace" -}}
{{ .Values.lazy.fallbackProxy.namespace | default .Values.namespace }}
{{- end -}}

{{/*
The controller's --lazy-fallback: lazy.fallback when set, else the DNS
name of the chart's fallback Service when it renders one, else nothing.
*/}}
{{- define "rosetta.lazyFallback" -}}
{{- if .Values.lazy.fallback -}}
{{ .Values.lazy.fallback }}
{{- else if .Values.lazy.fallbackProxy.enabled -}}
{{ .Values.lazy.fallbackProxy.name }}.{{ include "rosetta.fallbackNamespace" . }}.svc.{{ .Values.controller.domainSuffix }}
{{- end -}}
{{- end -}}
