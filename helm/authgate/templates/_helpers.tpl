{{/*
Named templates of the authgate chart.

A parent chart that lists authgate as a dependency calls the public ones
(authgate.sidecar, authgate.volumes, authgate.podAnnotations,
authgate.selectorLabels) with the subchart's own context:
  {{ include "authgate.sidecar" .Subcharts.authgate }}
They need only .Values and .Release (and .Chart for the default image tag), so
  (dict "Values" .Values.authgate "Release" .Release)
works too when image.tag is set.
*/}}

{{/* Chart name. */}}
{{- define "authgate.name" -}}
{{- default "authgate" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix, at most 55 characters so suffixes fit in 63. */}}
{{- define "authgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "authgate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "authgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "authgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "authgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: authgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "authgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "authgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Object names. */}}
{{- define "authgate.configMapName" -}}{{ include "authgate.fullname" . }}-config{{- end -}}
{{- define "authgate.policyConfigMapName" -}}
{{- .Values.existingPolicyConfigMap | default (printf "%s-policy" (include "authgate.fullname" .)) -}}
{{- end -}}
{{- define "authgate.usersSecretName" -}}
{{- .Values.users.existingSecret | default (printf "%s-users" (include "authgate.fullname" .)) -}}
{{- end -}}
{{- define "authgate.apiKeysSecretName" -}}
{{- .Values.apiKeys.existingSecret | default (printf "%s-api-keys" (include "authgate.fullname" .)) -}}
{{- end -}}
{{- define "authgate.jwtSecretName" -}}
{{- .Values.jwt.existingSecret | default (printf "%s-jwt" (include "authgate.fullname" .)) -}}
{{- end -}}

{{/* "true" when users / API keys are configured. */}}
{{- define "authgate.usersEnabled" -}}
{{- if or .Values.users.existingSecret .Values.users.content }}true{{ end -}}
{{- end -}}
{{- define "authgate.apiKeysEnabled" -}}
{{- if or .Values.apiKeys.existingSecret .Values.apiKeys.content }}true{{ end -}}
{{- end -}}

{{/* A value that may be a YAML string or a map, rendered as file content. */}}
{{- define "authgate.fileContent" -}}
{{- if kindIs "string" . -}}
{{- . -}}
{{- else -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* The authgate image reference. */}}
{{- define "authgate.image" -}}
{{- $tag := .Values.image.tag -}}
{{- if and (not $tag) .Chart -}}{{- $tag = .Chart.AppVersion -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (required "image.tag is required when the chart's appVersion is not available" $tag) -}}
{{- end -}}
{{- end -}}

{{/*
The config.yaml the gateway reads: the free-form .Values.config with the keys
the chart owns set on top. Setting an owned key in .Values.config is an error,
not a silent override, so that what the user wrote is what runs.
*/}}
{{- define "authgate.configYaml" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- range $key := list "policy_file" "users_file" "api_keys_file" -}}
{{- if hasKey $cfg $key -}}
{{- fail (printf "config.%s is set by the chart; remove it from config (see policy / users / apiKeys values)" $key) -}}
{{- end -}}
{{- end -}}
{{- $listen := deepCopy (get $cfg "listen" | default dict) -}}
{{- range $key := list "address" "admin_address" -}}
{{- if hasKey $listen $key -}}
{{- fail (printf "config.listen.%s is set by the chart; use gateway.port / gateway.adminPort" $key) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $listen "address" (printf ":%d" (int .Values.gateway.port)) -}}
{{- $_ := set $listen "admin_address" (printf ":%d" (int .Values.gateway.adminPort)) -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $upstream := deepCopy (get $cfg "upstream" | default dict) -}}
{{- if eq .Values.mode "forward-auth" -}}
{{- /* The binary's own mode: forward-auth (the decision endpoint only) by
       default, or both (decision endpoint and proxy to upstream.url). */ -}}
{{- $binMode := get $cfg "mode" | default "forward-auth" -}}
{{- if not (has $binMode (list "forward-auth" "both")) -}}
{{- fail (printf "config.mode must be forward-auth or both in forward-auth mode, got %q" $binMode) -}}
{{- end -}}
{{- $_ := set $cfg "mode" $binMode -}}
{{- /* Believing X-Original-URI / X-Forwarded-* from any peer lets a client
       choose the path that is authorized; the binary refuses to start
       without trusted peers, so fail at render time instead. */ -}}
{{- if not (get (get $cfg "forward_auth" | default dict) "trusted_peers") -}}
{{- fail "config.forward_auth.trusted_peers is required in forward-auth mode: the ingress controller addresses (CIDRs) whose X-Original-* headers authgate believes" -}}
{{- end -}}
{{- if and (eq $binMode "both") (not (get $upstream "url")) -}}
{{- fail "config.upstream.url is required when config.mode is both" -}}
{{- end -}}
{{- if and (eq $binMode "forward-auth") (get $upstream "url") -}}
{{- fail "config.upstream.url is set but config.mode is forward-auth (decisions only); set config.mode: both to also proxy to it" -}}
{{- end -}}
{{- else -}}
{{- /* The application behind the sidecar is reached only by proxying. */ -}}
{{- if eq (get $cfg "mode" | default "proxy") "forward-auth" -}}
{{- fail (printf "config.mode forward-auth never proxies to the application in %s mode; use proxy or both" .Values.mode) -}}
{{- end -}}
{{- if hasKey $upstream "url" -}}
{{- fail (printf "config.upstream.url is set by the chart in %s mode (http://127.0.0.1:<app.port>); use app.port" .Values.mode) -}}
{{- end -}}
{{- if or (eq (int .Values.app.port) (int .Values.gateway.port)) (eq (int .Values.app.port) (int .Values.gateway.adminPort)) -}}
{{- fail "app.port must differ from gateway.port and gateway.adminPort (the containers share the pod's network)" -}}
{{- end -}}
{{- $_ := set $upstream "url" (printf "http://127.0.0.1:%d" (int .Values.app.port)) -}}
{{- end -}}
{{- if $upstream -}}
{{- $_ := set $cfg "upstream" $upstream -}}
{{- end -}}
{{- $_ := set $cfg "policy_file" "/etc/authgate/policy/policy.yaml" -}}
{{- if include "authgate.usersEnabled" . -}}
{{- $_ := set $cfg "users_file" "/etc/authgate/users/users.yaml" -}}
{{- end -}}
{{- if include "authgate.apiKeysEnabled" . -}}
{{- $_ := set $cfg "api_keys_file" "/etc/authgate/keys/keys.yaml" -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Pod annotations that roll the pods when a setting that needs a restart
changes. Policy, users and API keys are deliberately absent: they are mounted
as directories and hot-reloaded, so editing them must not restart anything.
*/}}
{{- define "authgate.podAnnotations" -}}
checksum/authgate-config: {{ include "authgate.configYaml" . | sha256sum }}
{{- end -}}

{{/*
The authgate container. Files are mounted as directories, never with subPath:
the kubelet swaps a ConfigMap/Secret update in through the directory's ..data
symlink, which a subPath mount never sees (so hot reload would silently stop).
*/}}
{{- define "authgate.sidecar" -}}
- name: authgate
  image: {{ include "authgate.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve", "--config", "/etc/authgate/config/config.yaml"]
  ports:
    - name: authgate
      containerPort: {{ .Values.gateway.port }}
      protocol: TCP
    - name: authgate-admin
      containerPort: {{ .Values.gateway.adminPort }}
      protocol: TCP
  env:
    {{- if .Values.jwt.enabled }}
    - name: AUTHGATE_JWT_SECRET_FILE
      value: /etc/authgate/jwt/jwt-secret
    {{- end }}
    {{- if .Values.redis.url }}
    - name: AUTHGATE_REDIS_URL
      value: {{ .Values.redis.url | quote }}
    {{- end }}
    {{- if .Values.redis.existingSecret }}
    - name: AUTHGATE_REDIS_PASSWORD_FILE
      value: /etc/authgate/redis/password
    {{- end }}
    {{- with .Values.gateway.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.gateway.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.gateway.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.gateway.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.gateway.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.gateway.securityContext | nindent 4 }}
  volumeMounts:
    - name: authgate-config
      mountPath: /etc/authgate/config
      readOnly: true
    - name: authgate-policy
      mountPath: /etc/authgate/policy
      readOnly: true
    {{- if include "authgate.usersEnabled" . }}
    - name: authgate-users
      mountPath: /etc/authgate/users
      readOnly: true
    {{- end }}
    {{- if include "authgate.apiKeysEnabled" . }}
    - name: authgate-keys
      mountPath: /etc/authgate/keys
      readOnly: true
    {{- end }}
    {{- if .Values.jwt.enabled }}
    - name: authgate-jwt
      mountPath: /etc/authgate/jwt
      readOnly: true
    {{- end }}
    {{- if .Values.redis.existingSecret }}
    - name: authgate-redis
      mountPath: /etc/authgate/redis
      readOnly: true
    {{- end }}
    - name: authgate-tmp
      mountPath: /tmp
{{- end -}}

{{/* The volumes the authgate container mounts. */}}
{{- define "authgate.volumes" -}}
- name: authgate-config
  configMap:
    name: {{ include "authgate.configMapName" . }}
- name: authgate-policy
  configMap:
    name: {{ include "authgate.policyConfigMapName" . }}
    items:
      - key: {{ ternary .Values.existingPolicyConfigMapKey "policy.yaml" (ne .Values.existingPolicyConfigMap "") }}
        path: policy.yaml
{{- if include "authgate.usersEnabled" . }}
- name: authgate-users
  secret:
    secretName: {{ include "authgate.usersSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ ternary .Values.users.existingSecretKey "users.yaml" (ne .Values.users.existingSecret "") }}
        path: users.yaml
{{- end }}
{{- if include "authgate.apiKeysEnabled" . }}
- name: authgate-keys
  secret:
    secretName: {{ include "authgate.apiKeysSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ ternary .Values.apiKeys.existingSecretKey "keys.yaml" (ne .Values.apiKeys.existingSecret "") }}
        path: keys.yaml
{{- end }}
{{- if .Values.jwt.enabled }}
- name: authgate-jwt
  secret:
    secretName: {{ include "authgate.jwtSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ ternary .Values.jwt.existingSecretKey "jwt-secret" (ne .Values.jwt.existingSecret "") }}
        path: jwt-secret
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: authgate-redis
  secret:
    secretName: {{ .Values.redis.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.redis.existingSecretKey }}
        path: password
{{- end }}
- name: authgate-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end -}}

{{/* Sanity checks shared by every mode; renders nothing. */}}
{{- define "authgate.validate" -}}
{{- if and (not .Values.existingPolicyConfigMap) (not .Values.policy) -}}
{{- fail "policy (inline) or existingPolicyConfigMap is required: an empty policy would deny everything and the gateway refuses to start" -}}
{{- end -}}
{{- if and .Values.jwt.enabled (not .Values.jwt.existingSecret) (not .Values.jwt.secret) (not .Values.jwt.generate) -}}
{{- fail "jwt.secret or jwt.existingSecret is required (or set jwt.generate=true)" -}}
{{- end -}}
{{- if and .Values.jwt.secret (lt (len .Values.jwt.secret) 32) -}}
{{- fail "jwt.secret must be at least 32 characters" -}}
{{- end -}}
{{- if and .Values.redis.existingSecret (not .Values.redis.url) -}}
{{- fail "redis.existingSecret is set but redis.url is empty" -}}
{{- end -}}
{{- end -}}
