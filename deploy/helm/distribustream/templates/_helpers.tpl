{{/* Names: RELEASE-CHART unless overridden, cut to 63 characters (DNS label). */}}
{{- define "ds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ds.fullname" -}}
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

{{/* A component's object name: FULLNAME-COMPONENT. Call with (list $ "tracker"). */}}
{{- define "ds.componentName" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "ds.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ds.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (list $ "component"). */}}
{{- define "ds.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ include "ds.chart" $ }}
{{ include "ds.selectorLabels" . }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/part-of: distribustream
{{- with $.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels (never change across upgrades); call with (list $ "component"). */}}
{{- define "ds.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "ds.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* metadata.annotations of every object (commonAnnotations), or nothing. */}}
{{- define "ds.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The one image of every service; the tag defaults to the chart's appVersion. */}}
{{- define "ds.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "ds.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "ds.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{- define "ds.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Secret names: the operator's existingSecret, or the chart's. */}}
{{- define "ds.ticketKeySecret" -}}
{{- .Values.tracker.ticketKey.existingSecret | default (include "ds.componentName" (list . "ticket-key")) -}}
{{- end -}}
{{- define "ds.networkKeySecret" -}}
{{- .Values.checksum.networkKey.existingSecret | default (include "ds.componentName" (list . "network-key")) -}}
{{- end -}}
{{- define "ds.seederAuthSecret" -}}
{{- .Values.seeder.auth.existingSecret | default (include "ds.componentName" (list . "seeder-auth")) -}}
{{- end -}}
{{- define "ds.dashboardAuthSecret" -}}
{{- .Values.dashboard.auth.existingSecret | default (include "ds.componentName" (list . "dashboard-auth")) -}}
{{- end -}}

{{/* The Redis password Secret and key, or "" when Redis has no password. */}}
{{- define "ds.redisPasswordSecret" -}}
{{- if .Values.redis.enabled -}}
{{- .Values.redis.auth.existingSecret | default (include "ds.componentName" (list . "redis")) -}}
{{- else -}}
{{- .Values.externalRedis.existingSecret -}}
{{- end -}}
{{- end -}}
{{- define "ds.redisPasswordKey" -}}
{{- if .Values.redis.enabled -}}
{{- .Values.redis.auth.existingSecretPasswordKey -}}
{{- else -}}
{{- .Values.externalRedis.existingSecretPasswordKey -}}
{{- end -}}
{{- end -}}

{{/*
The swarm store URL with the password taken from $(REDIS_PASSWORD), which
Kubernetes expands from the env entry before it (see ds.redisEnv).
*/}}
{{- define "ds.redisUrl" -}}
{{- $url := .Values.externalRedis.url -}}
{{- if .Values.redis.enabled -}}
{{- $url = printf "redis://%s:6379" (include "ds.componentName" (list . "redis")) -}}
{{- end -}}
{{- $parts := splitList "://" $url -}}
{{- $scheme := first $parts -}}
{{- $rest := join "://" (rest $parts) -}}
{{- if include "ds.redisPasswordSecret" . -}}
{{- $user := "" -}}
{{- if contains "@" $rest -}}
{{- $user = first (splitList "@" $rest) -}}
{{- $rest = join "@" (rest (splitList "@" $rest)) -}}
{{- end -}}
{{- printf "%s://%s:$(REDIS_PASSWORD)@%s" $scheme $user $rest -}}
{{- else -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{/* env entries giving a container the swarm store: REDIS_PASSWORD (when there is one), then DS_REDIS. */}}
{{- define "ds.redisEnv" -}}
{{- $secret := include "ds.redisPasswordSecret" . -}}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "ds.redisPasswordKey" . }}
{{- end }}
- name: DS_REDIS
  value: {{ include "ds.redisUrl" . | quote }}
{{- end -}}

{{/* Flags for a private Redis CA (mounted by ds.redisCaVolume). */}}
{{- define "ds.redisCaArgs" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.caSecret }}
- --redis-ca
- /etc/distribustream/redis-ca/ca.crt
{{- end }}
{{- end -}}
{{- define "ds.redisCaVolumeMount" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.caSecret }}
- name: redis-ca
  mountPath: /etc/distribustream/redis-ca
  readOnly: true
{{- end }}
{{- end -}}
{{- define "ds.redisCaVolume" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.externalRedis.tls.caSecret }}
    items:
      - key: {{ .Values.externalRedis.tls.caKey }}
        path: ca.crt
{{- end }}
{{- end -}}

{{/* Addresses inside the cluster. */}}
{{- define "ds.checksumAddress" -}}
{{- printf "%s:6088" (include "ds.componentName" (list . "checksum")) -}}
{{- end -}}
{{- define "ds.trackerAddress" -}}
{{- printf "%s:%v" (include "ds.componentName" (list . "tracker")) .Values.tracker.service.port -}}
{{- end -}}

{{/*
A generated Secret's data, kept across upgrades: the live Secret's data when
lookup finds it with every key (helm upgrade), else $generated. Call with
(dict "ctx" $ "name" NAME "keys" (list KEY...) "generated" DICT).
*/}}
{{- define "ds.keptSecretData" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- $data := dict -}}
{{- $complete := and $existing (hasKey $existing "data") -}}
{{- if $complete -}}
{{- range .keys -}}
{{- if not (hasKey $existing.data .) -}}{{- $complete = false -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if $complete -}}
{{- range .keys -}}{{- $_ := set $data . (index $existing.data .) -}}{{- end -}}
{{- else -}}
{{- range $k, $v := .generated -}}{{- $_ := set $data $k ($v | b64enc) -}}{{- end -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/* metadata.annotations of a generated Secret. */}}
{{- define "ds.secretAnnotations" -}}
annotations:
  {{- if .Values.secrets.keep }}
  helm.sh/resource-policy: keep
  {{- end }}
  {{- with .Values.commonAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
Checks the values together, and fails once with every problem found: what
the schema cannot say on its own.
*/}}
{{- define "ds.validateValues" -}}
{{- $msgs := list -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.url) -}}
{{- $msgs = append $msgs "externalRedis.url: give the swarm store's URL (redis://, rediss://, redis+cluster://), or set redis.enabled=true to run the built-in Redis" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.externalRedis.url -}}
{{- $msgs = append $msgs "externalRedis.url is set while redis.enabled=true: choose one swarm store (set redis.enabled=false to use the external one)" -}}
{{- end -}}
{{- if and .Values.externalRedis.url (not (regexMatch "^rediss?(\\+cluster)?://[^/]+" .Values.externalRedis.url)) -}}
{{- $msgs = append $msgs (printf "externalRedis.url %q: expected redis://HOST:PORT, rediss://HOST:PORT, redis+cluster://H1:P1,H2:P2 or rediss+cluster://..." .Values.externalRedis.url) -}}
{{- end -}}
{{- if and .Values.externalRedis.url (regexMatch "^[a-z+]+://[^@/]*:[^@/]*@" .Values.externalRedis.url) -}}
{{- $msgs = append $msgs "externalRedis.url must not hold a password: put it in a Secret named by externalRedis.existingSecret" -}}
{{- end -}}
{{- if and .Values.tracker.autoscaling.enabled (gt (int .Values.tracker.autoscaling.minReplicas) (int .Values.tracker.autoscaling.maxReplicas)) -}}
{{- $msgs = append $msgs (printf "tracker.autoscaling.minReplicas (%v) is greater than maxReplicas (%v)" .Values.tracker.autoscaling.minReplicas .Values.tracker.autoscaling.maxReplicas) -}}
{{- end -}}
{{- $expose := .Values.seeder.expose -}}
{{- if and (eq $expose.type "NodePort") (not $expose.advertiseHost) (lt (len $expose.advertiseHosts) (int .Values.seeder.replicaCount)) -}}
{{- $msgs = append $msgs "seeder.expose.advertiseHost: with NodePort, give the host name or IP of a node that external peers reach (or one per seeder in advertiseHosts)" -}}
{{- end -}}
{{- if and (eq $expose.type "LoadBalancer") (lt (len $expose.advertiseHosts) (int .Values.seeder.replicaCount)) -}}
{{- $msgs = append $msgs (printf "seeder.expose.advertiseHosts: with LoadBalancer, give each of the %v seeders' load balancer host name or IP (index = pod ordinal)" .Values.seeder.replicaCount) -}}
{{- end -}}
{{- if and (eq $expose.type "NodePort") (gt (add (int $expose.nodePortBase) (int .Values.seeder.replicaCount)) 32768) -}}
{{- $msgs = append $msgs "seeder.expose.nodePortBase + seeder.replicaCount goes past 32767, the last node port" -}}
{{- end -}}
{{- if not .Values.secrets.generate -}}
{{- range $path, $v := dict "tracker.ticketKey.existingSecret" .Values.tracker.ticketKey.existingSecret "checksum.networkKey.existingSecret" .Values.checksum.networkKey.existingSecret "seeder.auth.existingSecret" .Values.seeder.auth.existingSecret -}}
{{- if not $v -}}{{- $msgs = append $msgs (printf "%s is required when secrets.generate=false" $path) -}}{{- end -}}
{{- end -}}
{{- if and .Values.dashboard.enabled (not .Values.dashboard.auth.existingSecret) -}}
{{- $msgs = append $msgs "dashboard.auth.existingSecret is required when secrets.generate=false" -}}
{{- end -}}
{{- if and .Values.redis.enabled (not .Values.redis.auth.existingSecret) -}}
{{- $msgs = append $msgs "redis.auth.existingSecret is required when secrets.generate=false" -}}
{{- end -}}
{{- end -}}
{{- if $msgs -}}
{{- fail (printf "\nVALUES VALIDATION:\n- %s" (join "\n- " $msgs)) -}}
{{- end -}}
{{- end -}}
