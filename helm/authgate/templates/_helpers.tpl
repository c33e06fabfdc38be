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
{{- /* redis.sentinel and redis.cluster come from the redis values, like
       the URL; the rest of the redis section stays free-form. */ -}}
{{- $redis := deepCopy (get $cfg "redis" | default dict) -}}
{{- range $key := list "sentinel" "cluster" -}}
{{- if hasKey $redis $key -}}
{{- fail (printf "config.redis.%s is set by the chart; use redis.%s" $key $key) -}}
{{- end -}}
{{- end -}}
{{- with .Values.redis.sentinel -}}
{{- if .masterName -}}
{{- $sentinel := dict "master_name" .masterName "addresses" .addresses -}}
{{- with .username -}}
{{- $_ := set $sentinel "username" . -}}
{{- end -}}
{{- $_ := set $redis "sentinel" $sentinel -}}
{{- end -}}
{{- end -}}
{{- with .Values.redis.cluster.addresses -}}
{{- $_ := set $redis "cluster" (dict "addresses" .) -}}
{{- end -}}
{{- if $redis -}}
{{- $_ := set $cfg "redis" $redis -}}
{{- end -}}
{{- $_ := set $cfg "policy_file" "/etc/authgate/policy/policy.yaml" -}}
{{- if include "authgate.usersEnabled" . -}}
{{- $_ := set $cfg "users_file" "/etc/authgate/users/users.yaml" -}}
{{- end -}}
{{- if include "authgate.apiKeysEnabled" . -}}
{{- $_ := set $cfg "api_keys_file" "/etc/authgate/keys/keys.yaml" -}}
{{- end -}}
{{- /* tls.ca_file is rendered only with a caBundle, so a config without one
       stays loadable by binaries that predate the key. */ -}}
{{- if include "authgate.caEnabled" . -}}
{{- $tls := deepCopy (get $cfg "tls" | default dict) -}}
{{- if hasKey $tls "ca_file" -}}
{{- fail "config.tls.ca_file is set by the chart when caBundle is set; remove it from config" -}}
{{- end -}}
{{- $_ := set $tls "ca_file" "/etc/authgate/ca/ca.crt" -}}
{{- $_ := set $cfg "tls" $tls -}}
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
{{- with .Values.caBundle.pem }}
{{- /* A new inline CA bundle rolls the pods, so it is in use whether or not
       the gateway rereads the file. */}}
checksum/authgate-ca: {{ . | sha256sum }}
{{- end }}
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
    {{- with .Values.jwt.signingKeys }}
    {{- if .existingSecret }}
    - name: AUTHGATE_JWT_SIGNING_KEY_FILE
      value: /etc/authgate/signing/{{ .signingKey }}
    {{- if .nextKey }}
    - name: AUTHGATE_JWT_NEXT_KEY_FILE
      value: /etc/authgate/signing/{{ .nextKey }}
    {{- end }}
    {{- if .previousKeys }}
    - name: AUTHGATE_JWT_PREVIOUS_KEYS_FILE
      value: /etc/authgate/signing/{{ .previousKeys }}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- if .Values.redis.url }}
    - name: AUTHGATE_REDIS_URL
      value: {{ .Values.redis.url | quote }}
    {{- end }}
    {{- if .Values.redis.existingSecret }}
    - name: AUTHGATE_REDIS_PASSWORD_FILE
      value: /etc/authgate/redis/password
    {{- end }}
    {{- range .Values.oidcClientSecrets }}
    - name: AUTHGATE_OIDC_{{ .id | upper | replace "-" "_" }}_CLIENT_SECRET_FILE
      value: /etc/authgate/oidc/{{ .id }}/client-secret
    {{- end }}
    {{- if .Values.redis.sentinel.existingSecret }}
    - name: AUTHGATE_REDIS_SENTINEL_PASSWORD_FILE
      value: /etc/authgate/redis-sentinel/password
    {{- end }}
    {{- with include "authgate.goMemLimitEnv" . }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with .Values.tracing }}
    {{- if .endpoint }}
    - name: OTEL_EXPORTER_OTLP_ENDPOINT
      value: {{ .endpoint | quote }}
    - name: OTEL_EXPORTER_OTLP_PROTOCOL
      value: {{ .protocol | quote }}
    - name: OTEL_TRACES_SAMPLER
      value: {{ .sampler | quote }}
    {{- if .samplerArg }}
    - name: OTEL_TRACES_SAMPLER_ARG
      value: {{ .samplerArg | quote }}
    {{- end }}
    {{- if .headersSecret.name }}
    - name: OTEL_EXPORTER_OTLP_HEADERS
      valueFrom:
        secretKeyRef:
          name: {{ .headersSecret.name | quote }}
          key: {{ .headersSecret.key | quote }}
    {{- end }}
    {{- end }}
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
    {{- if .Values.jwt.signingKeys.existingSecret }}
    - name: authgate-signing
      mountPath: /etc/authgate/signing
      readOnly: true
    {{- end }}
    {{- if .Values.redis.existingSecret }}
    - name: authgate-redis
      mountPath: /etc/authgate/redis
      readOnly: true
    {{- end }}
    {{- range .Values.oidcClientSecrets }}
    - name: authgate-oidc-{{ .id }}
      mountPath: /etc/authgate/oidc/{{ .id }}
    {{- end }}
    {{- if .Values.redis.sentinel.existingSecret }}
    - name: authgate-redis-sentinel
      mountPath: /etc/authgate/redis-sentinel
      readOnly: true
    {{- end }}
    {{- if include "authgate.caEnabled" . }}
    - name: authgate-ca
      mountPath: /etc/authgate/ca
      readOnly: true
    {{- end }}
    - name: authgate-tmp
      mountPath: /tmp
    {{- with .Values.gateway.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
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
{{- if .Values.jwt.signingKeys.existingSecret }}
{{- /* The whole Secret, no items: a rotation updates all files at once. */}}
- name: authgate-signing
  secret:
    secretName: {{ .Values.jwt.signingKeys.existingSecret }}
    defaultMode: 0440
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
{{- range .Values.oidcClientSecrets }}
- name: authgate-oidc-{{ .id }}
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .existingSecretKey | default "client-secret" }}
        path: client-secret
{{- end }}
{{- if .Values.redis.sentinel.existingSecret }}
- name: authgate-redis-sentinel
  secret:
    secretName: {{ .Values.redis.sentinel.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.redis.sentinel.existingSecretKey }}
        path: password
{{- end }}
{{- if include "authgate.caEnabled" . }}
{{- $ca := .Values.caBundle }}
- name: authgate-ca
  {{- if $ca.existingSecret }}
  secret:
    secretName: {{ $ca.existingSecret }}
    defaultMode: 0444
    items:
      - key: {{ $ca.key }}
        path: ca.crt
  {{- else }}
  configMap:
    name: {{ $ca.existingConfigMap | default (printf "%s-ca" (include "authgate.fullname" .)) }}
    items:
      - key: {{ ternary $ca.key "ca.crt" (ne $ca.existingConfigMap "") }}
        path: ca.crt
  {{- end }}
{{- end }}
- name: authgate-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- with .Values.gateway.extraVolumes }}
{{ toYaml . }}
{{- end }}
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
{{- with .Values.redis -}}
{{- $kinds := compact (list (ternary "url" "" (ne .url "")) (ternary "sentinel" "" (or (ne .sentinel.masterName "") (gt (len .sentinel.addresses) 0))) (ternary "cluster" "" (gt (len .cluster.addresses) 0))) -}}
{{- if gt (len $kinds) 1 -}}
{{- fail (printf "redis: set one of url, sentinel and cluster, not %s" (join " and " $kinds)) -}}
{{- end -}}
{{- if and .existingSecret (not $kinds) -}}
{{- fail "redis.existingSecret is set but redis.url, redis.sentinel and redis.cluster are empty" -}}
{{- end -}}
{{- if and (or .sentinel.masterName .sentinel.addresses) (not (and .sentinel.masterName .sentinel.addresses)) -}}
{{- fail "redis.sentinel needs both masterName and addresses" -}}
{{- end -}}
{{- if and .sentinel.existingSecret (not .sentinel.masterName) -}}
{{- fail "redis.sentinel.existingSecret is set but redis.sentinel.masterName is empty" -}}
{{- end -}}
{{- end -}}
{{- with .Values.caBundle -}}
{{- if gt (len (compact (list .pem .existingConfigMap .existingSecret))) 1 -}}
{{- fail "caBundle: set one of pem, existingConfigMap and existingSecret" -}}
{{- end -}}
{{- /* A paste that is not PEM would otherwise surface only at the first
       TLS handshake to the upstream, an IdP or Redis. */ -}}
{{- if and .pem (not (contains "-----BEGIN CERTIFICATE-----" .pem)) -}}
{{- fail "caBundle.pem must hold PEM certificates (-----BEGIN CERTIFICATE-----)" -}}
{{- end -}}
{{- end -}}
{{- $_ := include "authgate.shutdownPlan" . -}}
{{- end -}}

{{/*
Seconds in a Go duration string ("5s", "1m30s", "250ms", "0"), as a float.
Call with (dict "key" "listen.shutdown_delay" "value" $v). The binary decodes
durations only from strings, so anything else is an error here too.
*/}}
{{- define "authgate.durationSeconds" -}}
{{- $v := .value -}}
{{- if not (kindIs "string" $v) -}}
{{- fail (printf "config.%s must be a duration string such as \"5s\" or \"1m30s\", got %v" .key $v) -}}
{{- end -}}
{{- if not (regexMatch "^(0|([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$" $v) -}}
{{- fail (printf "config.%s: %q is not a duration (write it like \"5s\", \"1m30s\" or \"250ms\")" .key $v) -}}
{{- end -}}
{{- $units := dict "ns" 1e-9 "us" 1e-6 "µs" 1e-6 "ms" 1e-3 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range $part := regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" $v -1 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $part -}}
{{- $unit := trimPrefix $num $part -}}
{{- $total = addf $total (mulf (float64 $num) (get $units $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
The shutdown plan, as JSON: the order in which the pod stops, computed from
the gateway's config (listen.shutdown_delay, listen.shutdown_timeout) with
the binary's defaults (config.example.yaml; helm/test checks they agree).

  drain      the gateway's worst case after SIGTERM: readiness off, the delay,
             then draining in-flight requests (delay + timeout, rounded up)
  appSleep   wrap mode: the application's preStop sleep, so that it keeps
             serving until the gateway has drained (drain + appExtraSeconds)
  grace      terminationGracePeriodSeconds: the last container's stop plus
             shutdown.stopMarginSeconds (the application's own exit after its
             SIGTERM, the gateway's state-store flush)
  minGrace   the least grace period that keeps this order
  chartHook  whether the chart adds the application's preStop sleep
*/}}
{{- define "authgate.shutdownPlan" -}}
{{- $listen := get (.Values.config | default dict) "listen" | default dict -}}
{{- $delay := "5s" -}}
{{- if hasKey $listen "shutdown_delay" -}}{{- $delay = get $listen "shutdown_delay" -}}{{- end -}}
{{- $timeout := "30s" -}}
{{- if hasKey $listen "shutdown_timeout" -}}{{- $timeout = get $listen "shutdown_timeout" -}}{{- end -}}
{{- $delayS := include "authgate.durationSeconds" (dict "key" "listen.shutdown_delay" "value" $delay) | float64 -}}
{{- $timeoutS := include "authgate.durationSeconds" (dict "key" "listen.shutdown_timeout" "value" $timeout) | float64 -}}
{{- $drain := addf $delayS $timeoutS | ceil | int -}}
{{- $s := .Values.shutdown -}}
{{- $last := $drain -}}
{{- $appSleep := 0 -}}
{{- $chartHook := false -}}
{{- if ne .Values.mode "forward-auth" -}}
{{- $userHook := dig "lifecycle" "preStop" nil (.Values.app | default dict) -}}
{{- if $userHook -}}
{{- $appSleep = add $drain (int $s.appExtraSeconds) | int -}}
{{- with $userHook.sleep -}}
{{- $appSleep = int .seconds -}}
{{- /* An application that stops before the gateway has drained turns the
       requests still in flight into 502s (the whole-pod case). */ -}}
{{- if lt $appSleep $drain -}}
{{- fail (printf "app.lifecycle.preStop.sleep.seconds is %d, but the gateway drains for up to %ds (listen.shutdown_delay %s + listen.shutdown_timeout %s): the application would stop while requests are still in flight; use at least %d" $appSleep $drain $delay $timeout (add $drain (int $s.appExtraSeconds))) -}}
{{- end -}}
{{- end -}}
{{- else if $s.appPreStop -}}
{{- $appSleep = add $drain (int $s.appExtraSeconds) | int -}}
{{- $chartHook = true -}}
{{- end -}}
{{- $last = max $drain $appSleep | int -}}
{{- end -}}
{{- $minGrace := add $last (int $s.stopMarginSeconds) | int -}}
{{- $grace := $minGrace -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) -}}
{{- $grace = int .Values.terminationGracePeriodSeconds -}}
{{- /* A grace period shorter than the drain SIGKILLs the gateway mid-drain
       and before it flushes the state store. */ -}}
{{- if lt $grace $minGrace -}}
{{- fail (printf "terminationGracePeriodSeconds %d is shorter than the shutdown needs, at least %d: the gateway drains for up to %ds (listen.shutdown_delay %s + listen.shutdown_timeout %s)%s, then shutdown.stopMarginSeconds %ds; raise it, leave it empty to have it computed, or shorten the drain" $grace $minGrace $drain $delay $timeout (ternary (printf ", the application's preStop sleep lasts %ds" $appSleep) "" (gt $appSleep 0)) (int $s.stopMarginSeconds)) -}}
{{- end -}}
{{- end -}}
{{- dict "drain" $drain "appSleep" $appSleep "grace" $grace "minGrace" $minGrace "chartHook" $chartHook | toJson -}}
{{- end -}}

{{/* terminationGracePeriodSeconds for the pod (also for a parent chart's pod
     in sidecar-only mode). */}}
{{- define "authgate.terminationGracePeriodSeconds" -}}
{{- (include "authgate.shutdownPlan" . | fromJson).grace | int -}}
{{- end -}}

{{/*
The application container's lifecycle: app.lifecycle as written, plus a
preStop sleep (Kubernetes >= 1.30, native to the kubelet, so distroless
applications without a sleep binary work) that keeps the application serving
until the gateway has drained. Renders nothing when there is nothing to set.
A parent chart in sidecar-only mode can include it in its own container.
*/}}
{{- define "authgate.appLifecycle" -}}
{{- $plan := include "authgate.shutdownPlan" . | fromJson -}}
{{- $lc := deepCopy ((.Values.app | default dict).lifecycle | default dict) -}}
{{- if $plan.chartHook -}}
{{- if and .Capabilities (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "the application's preStop sleep (lifecycle.preStop.sleep) needs Kubernetes >= 1.30, this cluster is %s: set app.lifecycle.preStop yourself (for example an exec sleep of %d seconds, if the image has a shell), or shutdown.appPreStop: false to stop the application at once" .Capabilities.KubeVersion.Version (int $plan.appSleep)) -}}
{{- end -}}
{{- $_ := set $lc "preStop" (dict "sleep" (dict "seconds" (int $plan.appSleep))) -}}
{{- end -}}
{{- if $lc -}}
lifecycle:
  {{- toYaml $lc | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
Bytes in a Kubernetes quantity ("256Mi", "1Gi", "500M", "268435456"), as a
float. Call with (dict "key" "gateway.resources.limits.memory" "value" $v).
*/}}
{{- define "authgate.quantityBytes" -}}
{{- $v := toString .value -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $v) -}}
{{- fail (printf "%s: cannot read the quantity %q (write it like 256Mi or 1Gi)" .key $v) -}}
{{- end -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $v -}}
{{- $suffix := trimPrefix $num $v -}}
{{- $mult := dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 -}}
{{- mulf (float64 $num) (get $mult $suffix) -}}
{{- end -}}

{{/*
GOMEMLIMIT for the gateway: a soft limit under the container's memory limit,
so that the Go garbage collector works harder before the kernel OOM-kills the
container. With gateway.resources.limits.memory set, it is
gateway.goMemLimitRatio of that limit in bytes, computed here. Otherwise the
limit the pod really gets (a LimitRange default, or the node's allocatable
memory when there is none) comes from the downward API in MiB, and
GOMEMLIMIT is that number followed by six zeros: bytes = MiB x 10^6, which is
10^6 / 2^20 = 95.4% of the limit (the downward API cannot multiply, and
GOMEMLIMIT takes a plain byte count). A GOMEMLIMIT in gateway.extraEnv wins.
*/}}
{{- define "authgate.goMemLimitEnv" -}}
{{- $ratio := .Values.gateway.goMemLimitRatio | default 0 | float64 -}}
{{- $own := false -}}
{{- range .Values.gateway.extraEnv -}}{{- if eq .name "GOMEMLIMIT" -}}{{- $own = true -}}{{- end -}}{{- end -}}
{{- if and (gt $ratio 0.0) (not $own) -}}
{{- $limit := dig "limits" "memory" "" (.Values.gateway.resources | default dict) -}}
{{- if $limit -}}
{{- $bytes := include "authgate.quantityBytes" (dict "key" "gateway.resources.limits.memory" "value" $limit) | float64 -}}
- name: GOMEMLIMIT
  value: {{ printf "%d" (mulf $bytes $ratio | floor | int64) | quote }}
{{- else -}}
- name: MEMORY_LIMIT_MIB
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
      divisor: 1Mi
- name: GOMEMLIMIT
  value: "$(MEMORY_LIMIT_MIB)000000"
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when a CA bundle is configured. */}}
{{- define "authgate.caEnabled" -}}
{{- with .Values.caBundle -}}
{{- if or .pem .existingConfigMap .existingSecret }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the cluster serves the Prometheus Operator's API for the
     given kind; helm template sees it with --api-versions monitoring.coreos.com/v1. */}}
{{- define "authgate.hasMonitoringAPI" -}}
{{- if or (.ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind)) (.ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end -}}
{{- end -}}
