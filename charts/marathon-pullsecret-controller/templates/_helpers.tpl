{{/*
Names and labels.
*/}}
{{- define "pullsecret-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (the DNS label limit of some name fields).
*/}}
{{- define "pullsecret-controller.fullname" -}}
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

{{- define "pullsecret-controller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pullsecret-controller.labels" -}}
helm.sh/chart: {{ include "pullsecret-controller.chart" . }}
{{ include "pullsecret-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pullsecret-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullsecret-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pullsecret-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pullsecret-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pullsecret-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
"true" when the controller runs with leader election, "" otherwise. More than one replica
without it would mean several writers, so that fails the render.
*/}}
{{- define "pullsecret-controller.leaderElection" -}}
{{- $le := .Values.leaderElection }}
{{- $on := and $le.enabled $le.zookeeper }}
{{- if and (gt (int .Values.replicaCount) 1) (not $on) }}
{{- fail (printf "replicaCount is %d: more than one replica needs leader election. Set leaderElection.zookeeper (e.g. \"zk-1:2181,zk-2:2181/pullsecret\") with leaderElection.enabled: true, or set replicaCount: 1" (int .Values.replicaCount)) }}
{{- end }}
{{- if $on }}true{{ end }}
{{- end }}

{{/*
Seconds (a float) in a duration as the controller and Prometheus write them: a number of seconds,
or 90s, 30m, 6h, 1d, 1h30m (Prometheus adds w and y). The schema has checked the form.
*/}}
{{- define "pullsecret-controller.seconds" -}}
{{- if kindIs "string" . }}
{{- $units := dict "ms" 0.001 "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 "y" 31536000 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9.]+(ms|s|m|h|d|w|y)" . -1 }}
{{- $number := regexFind "^[0-9.]+" . }}
{{- $total = addf $total (mulf (float64 $number) (get $units (trimPrefix $number .))) }}
{{- end }}
{{- $total }}
{{- else }}
{{- float64 . }}
{{- end }}
{{- end }}

{{/*
Every Secret the config names, as a YAML list of {volume, secret, key, file}. The Deployment
mounts each at "/run/secrets/pullsecret-controller/<volume>/<file>" and the config points there,
so both read this one list.
*/}}
{{- define "pullsecret-controller.secretRefs" -}}
{{- $refs := list }}
{{- $auth := .Values.marathon.auth | default dict }}
{{- with dig "passwordSecret" "name" "" $auth }}
{{- $refs = append $refs (dict "volume" "marathon-auth" "secret" . "key" (dig "passwordSecret" "key" "password" $auth) "file" "password") }}
{{- end }}
{{- with dig "tokenSecret" "name" "" $auth }}
{{- $refs = append $refs (dict "volume" "marathon-token" "secret" . "key" (dig "tokenSecret" "key" "token" $auth) "file" "token") }}
{{- end }}
{{- $ca := .Values.marathon.caSecret | default dict }}
{{- with dig "name" "" $ca }}
{{- $refs = append $refs (dict "volume" "marathon-ca" "secret" . "key" (dig "key" "ca.crt" $ca) "file" "ca.crt") }}
{{- end }}
{{- range $i, $registry := .Values.registries }}
{{- $creds := $registry.credentials | default dict }}
{{- with dig "passwordSecret" "name" "" $creds }}
{{- $refs = append $refs (dict "volume" (printf "registry-%d" $i) "secret" . "key" (dig "passwordSecret" "key" "password" $creds) "file" "password") }}
{{- end }}
{{- with dig "dockerConfigSecret" "name" "" $creds }}
{{- $refs = append $refs (dict "volume" (printf "registry-%d" $i) "secret" . "key" (dig "dockerConfigSecret" "key" ".dockerconfigjson" $creds) "file" "config.json") }}
{{- end }}
{{- with dig "caSecret" "name" "" $registry }}
{{- $refs = append $refs (dict "volume" (printf "registry-%d-ca" $i) "secret" . "key" (dig "caSecret" "key" "ca.crt" $registry) "file" "ca.crt") }}
{{- end }}
{{- end }}
{{- toYaml $refs }}
{{- end }}

{{- define "pullsecret-controller.secretPath" -}}
{{- printf "/run/secrets/pullsecret-controller/%s/%s" .volume .file }}
{{- end }}

{{/*
The path of the mounted Secret file for one volume (see secretRefs).
Call with (list $ "<volume>").
*/}}
{{- define "pullsecret-controller.secretFile" -}}
{{- $root := index . 0 }}
{{- $volume := index . 1 }}
{{- range (include "pullsecret-controller.secretRefs" $root | fromYamlArray) }}
{{- if eq .volume $volume }}{{ include "pullsecret-controller.secretPath" . }}{{ end }}
{{- end }}
{{- end }}

{{/*
"s3" or "filesystem"; fails unless exactly one backend is set.
*/}}
{{- define "pullsecret-controller.storageBackend" -}}
{{- $fs := .Values.storage.filesystem | default dict }}
{{- $s3 := .Values.storage.s3 | default dict }}
{{- $hasFs := not (empty (dig "path" "" $fs)) }}
{{- $hasS3 := not (empty (dig "bucket" "" $s3)) }}
{{- if and $hasFs $hasS3 }}
{{- fail "storage: set only one backend, storage.filesystem.path or storage.s3.bucket, not both" }}
{{- else if $hasS3 }}s3
{{- else if $hasFs }}
{{- if empty (dig "volume" dict $fs) }}
{{- fail "storage.filesystem.volume: the bundle directory must be a volume the Mesos agents can read too (e.g. {nfs: {server: nfs-1, path: /exports/pullsecrets}} or {persistentVolumeClaim: {claimName: pullsecrets}})" }}
{{- end }}filesystem
{{- else }}
{{- fail "storage: set one backend: storage.s3.bucket, or storage.filesystem.path with storage.filesystem.volume" }}
{{- end }}
{{- end }}

{{/*
One registry's credentials section of the controller config. Call with (list $ $index $registry).
*/}}
{{- define "pullsecret-controller.registryCredentials" -}}
{{- $root := index . 0 }}
{{- $i := index . 1 }}
{{- $registry := index . 2 }}
{{- $creds := $registry.credentials | default dict }}
{{- $volume := printf "registry-%d" $i }}
{{- $password := dig "passwordSecret" "name" "" $creds }}
{{- $dockerConfig := dig "dockerConfigSecret" "name" "" $creds }}
{{- $helper := dig "helper" "" $creds }}
{{- $ecr := dig "ecr" dict $creds }}
{{- $count := 0 }}
{{- range (list $password $dockerConfig $helper $ecr) }}{{ if not (empty .) }}{{ $count = add1 $count }}{{ end }}{{ end }}
{{- if ne $count 1 }}
{{- fail (printf "registries[%d] (%s): set exactly one of credentials.passwordSecret (with credentials.username), credentials.dockerConfigSecret, credentials.helper or credentials.ecr" $i $registry.host) }}
{{- end }}
{{- $out := dict }}
{{- if $password }}
{{- $username := required (printf "registries[%d].credentials.username is required with credentials.passwordSecret" $i) (dig "username" "" $creds) }}
{{- $out = dict "username" $username "password_file" (include "pullsecret-controller.secretFile" (list $root $volume)) }}
{{- else if $dockerConfig }}
{{- $out = dict "docker_config" (include "pullsecret-controller.secretFile" (list $root $volume)) }}
{{- else if $helper }}
{{- $out = dict "helper" $helper }}
{{- else }}
{{- $e := dict "region" (required (printf "registries[%d].credentials.ecr.region is required" $i) $ecr.region) }}
{{- with $ecr.registryId }}{{ $_ := set $e "registry_id" (toString .) }}{{ end }}
{{- with $ecr.roleArn }}{{ $_ := set $e "role_arn" . }}{{ end }}
{{- with $ecr.endpointUrl }}{{ $_ := set $e "endpoint_url" . }}{{ end }}
{{- $out = dict "ecr" $e }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The controller's config file (snake_case keys, as config/controller.example.yaml documents).
*/}}
{{- define "pullsecret-controller.config" -}}
{{- $v := .Values }}
{{- $config := dict }}
{{- with $v.controllerName }}{{ $_ := set $config "controller" (dict "name" .) }}{{ end }}

{{- /* marathon */}}
{{- $marathon := dict "urls" (required "marathon.urls: at least one Marathon URL is required" $v.marathon.urls) "timeout_seconds" $v.marathon.timeoutSeconds "update_method" $v.marathon.updateMethod }}
{{- $auth := $v.marathon.auth | default dict }}
{{- $authPassword := dig "passwordSecret" "name" "" $auth }}
{{- $authToken := dig "tokenSecret" "name" "" $auth }}
{{- if and $authPassword $authToken }}
{{- fail "marathon.auth: set passwordSecret (basic auth) or tokenSecret (DC/OS token), not both" }}
{{- else if $authPassword }}
{{- $username := required "marathon.auth.username is required with marathon.auth.passwordSecret" (dig "username" "" $auth) }}
{{- $_ := set $marathon "auth" (dict "username" $username "password_file" (include "pullsecret-controller.secretFile" (list . "marathon-auth"))) }}
{{- else if $authToken }}
{{- $_ := set $marathon "auth" (dict "token_file" (include "pullsecret-controller.secretFile" (list . "marathon-token"))) }}
{{- end }}
{{- if dig "name" "" ($v.marathon.caSecret | default dict) }}
{{- $_ := set $marathon "ca_file" (include "pullsecret-controller.secretFile" (list . "marathon-ca")) }}
{{- end }}
{{- $_ := set $config "marathon" $marathon }}

{{- $_ := set $config "selector" (dict "label" $v.selector.label) }}

{{- /* registries */}}
{{- if empty $v.registries }}
{{- fail "registries: configure at least one registry (host plus one credential source); see values.yaml" }}
{{- end }}
{{- $registries := list }}
{{- range $i, $registry := $v.registries }}
{{- $host := required (printf "registries[%d].host is required" $i) $registry.host }}
{{- $item := dict "host" $host "credentials" (include "pullsecret-controller.registryCredentials" (list $ $i $registry) | fromYaml) }}
{{- with $registry.format }}{{ $_ := set $item "format" . }}{{ end }}
{{- with $registry.apps }}{{ $_ := set $item "apps" . }}{{ end }}
{{- with $registry.maxAge }}{{ $_ := set $item "max_age" . }}{{ end }}
{{- with $registry.minValidity }}{{ $_ := set $item "min_validity" . }}{{ end }}
{{- with $registry.verify }}{{ $_ := set $item "verify" . }}{{ end }}
{{- if kindIs "bool" $registry.checkImages }}{{ $_ := set $item "check_images" $registry.checkImages }}{{ end }}
{{- with $registry.verifyRepository }}{{ $_ := set $item "verify_repository" . }}{{ end }}
{{- with $registry.verifyTimeout }}{{ $_ := set $item "verify_timeout" . }}{{ end }}
{{- with $registry.refusedLoginInterval }}{{ $_ := set $item "refused_login_interval" . }}{{ end }}
{{- if dig "caSecret" "name" "" $registry }}{{ $_ := set $item "ca_file" (include "pullsecret-controller.secretFile" (list $ (printf "registry-%d-ca" $i))) }}{{ end }}
{{- if $registry.insecure }}{{ $_ := set $item "insecure" true }}{{ end }}
{{- $registries = append $registries $item }}
{{- end }}
{{- $_ := set $config "registries" $registries }}

{{- /* storage */}}
{{- $backend := include "pullsecret-controller.storageBackend" . }}
{{- if eq $backend "s3" }}
{{- $s3 := $v.storage.s3 }}
{{- if and (eq $s3.uriStyle "https") $s3.kmsKeyId }}
{{- fail "storage.s3: uriStyle https fetches anonymously, which S3 refuses for SSE-KMS objects; use uriStyle s3a or presigned, or drop kmsKeyId (SSE-S3)" }}
{{- end }}
{{- if gt (include "pullsecret-controller.seconds" ($s3.presignTtl | default "12h") | float64) 604800.0 }}
{{- fail (printf "storage.s3.presignTtl (%v) must be at most 7d: S3 presigned URLs last at most 7 days" $s3.presignTtl) }}
{{- end }}
{{- $out := dict "bucket" $s3.bucket }}
{{- with $s3.prefix }}{{ $_ := set $out "prefix" . }}{{ end }}
{{- with $s3.region }}{{ $_ := set $out "region" . }}{{ end }}
{{- with $s3.endpointUrl }}{{ $_ := set $out "endpoint_url" . }}{{ end }}
{{- with $s3.kmsKeyId }}{{ $_ := set $out "kms_key_id" . }}{{ end }}
{{- with $s3.uriStyle }}{{ $_ := set $out "uri_style" . }}{{ end }}
{{- with $s3.presignTtl }}{{ $_ := set $out "presign_ttl" . }}{{ end }}
{{- $_ := set $config "storage" (dict "s3" $out) }}
{{- else }}
{{- $fs := $v.storage.filesystem }}
{{- $out := dict "path" $fs.path }}
{{- with $fs.uriPrefix }}{{ $_ := set $out "uri_prefix" . }}{{ end }}
{{- with include "pullsecret-controller.bundleGroup" . }}{{ $_ := set $out "group" (int64 .) }}{{ end }}
{{- $_ := set $out "require_mount" (default false $fs.requireMount) }}
{{- $_ := set $config "storage" (dict "filesystem" $out) }}
{{- end }}
{{- with $v.storage.previousLocations }}{{ $_ := set $config.storage "previous_locations" . }}{{ end }}

{{- /* reconcile, server, leader election, logging */}}
{{- $r := $v.reconcile }}
{{- $_ := set $config "reconcile" (dict "resync_seconds" $r.resyncSeconds "workers" $r.workers "max_writes_per_second" $r.maxWritesPerSecond "write_burst" $r.writeBurst "max_concurrent_deployments" $r.maxConcurrentDeployments "dry_run" $r.dryRun "timeout_seconds" $r.timeoutSeconds "shutdown_timeout_seconds" $r.shutdownTimeoutSeconds "fight_limit" $r.fightLimit "fight_window" $r.fightWindow) }}
{{- $_ := set $config "remediation" (dict "reset_launch_delay" $v.remediation.resetLaunchDelay "rescue_stuck_deployments" $v.remediation.rescueStuckDeployments) }}
{{- $_ := set $config "server" (dict "listen" (printf "0.0.0.0:%d" (int $v.containerPort))) }}
{{- if include "pullsecret-controller.leaderElection" . }}
{{- $_ := set $config "leader_election" (dict "zookeeper" $v.leaderElection.zookeeper "session_timeout_seconds" $v.leaderElection.sessionTimeoutSeconds) }}
{{- end }}
{{- $_ := set $config "logging" (dict "level" $v.logging.level "format" $v.logging.format) }}
{{- include "pullsecret-controller.checkDurations" . }}
{{- toYaml $config }}
{{- end }}

{{/*
Where the credential helper binaries come from: "image" (an init container copies them), "volume",
or "" (none: the image's PATH has what it has). Fails on half-set or conflicting values.
*/}}
{{- define "pullsecret-controller.credentialHelpers" -}}
{{- $h := .Values.credentialHelpers | default dict }}
{{- $image := dig "image" "repository" "" $h }}
{{- $files := $h.files | default list }}
{{- $volume := $h.volume | default dict }}
{{- if and $image $volume }}
{{- fail "credentialHelpers: set image (with files) or volume, not both" }}
{{- else if and $image (not $files) }}
{{- fail "credentialHelpers.files: name the helper binaries to copy out of credentialHelpers.image, e.g. [/usr/local/bin/docker-credential-ecr-login]" }}
{{- else if and $image (not (dig "image" "tag" "" $h)) }}
{{- fail "credentialHelpers.image.tag: pin the tag of the image that holds the helpers" }}
{{- else if and $files (not $image) }}
{{- fail "credentialHelpers.image.repository: set the image that holds credentialHelpers.files" }}
{{- else if $image }}image
{{- else if $volume }}volume
{{- end }}
{{- end }}

{{/*
The gid that may read the bundles (storage.filesystem.group) as text, "" when none: the
controller's config and the pod's supplementalGroups both take it from here.
*/}}
{{- define "pullsecret-controller.bundleGroup" -}}
{{- $group := dig "filesystem" "group" nil (.Values.storage | default dict) }}
{{- if and (eq (include "pullsecret-controller.storageBackend" .) "filesystem") (not (kindIs "invalid" $group)) }}
{{- int64 $group }}
{{- end }}
{{- end }}

{{/*
What the controller checks of durations that the schema cannot: the schema bounds each part of
a duration (400d is refused there) and refuses a one-part duration below the key's floor (500ms
for a 1s floor); the sum of several parts (300d100d, 0.5s0.4s) is checked here against both, as
are the rules between keys. The keys and floors are _durations.tpl's, generated from the
controller's config schema. The messages name the value to change.
*/}}
{{- define "pullsecret-controller.checkDurations" -}}
{{- $v := .Values }}
{{- $given := list }}
{{- range $key := include "pullsecret-controller.durationKeys" . | fromJsonArray }}
{{- $parts := splitList "[]." $key.values }}
{{- $node := $v }}
{{- range splitList "." (first $parts) }}{{ $node = index (default dict $node) . }}{{ end }}
{{- if eq (len $parts) 1 }}
{{- if not (kindIs "invalid" $node) }}{{ $given = append $given (list $key.values $node $key) }}{{ end }}
{{- else }}
{{- range $i, $item := $node | default list }}
{{- if hasKey $item (last $parts) }}{{ $given = append $given (list (printf "%s[%d].%s" (first $parts) $i (last $parts)) (get $item (last $parts)) $key) }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $given }}
{{- $seconds := include "pullsecret-controller.seconds" (index . 1) | float64 }}
{{- $key := index . 2 }}
{{- if gt $seconds 31536000.0 }}
{{- fail (printf "%s (%v) must be at most 365d: the controller refuses longer durations" (index . 0) (index . 1)) }}
{{- end }}
{{- if and (not (kindIs "invalid" $key.floor)) (lt $seconds (float64 $key.floor)) }}
{{- fail (printf "%s (%v) must be at least %s, the controller's floor for %s" (index . 0) (index . 1) $key.floorText $key.config) }}
{{- end }}
{{- end }}
{{- $reconcile := include "pullsecret-controller.seconds" $v.reconcile.timeoutSeconds | float64 }}
{{- range $i, $registry := $v.registries }}
{{- if and (hasKey $registry "verifyTimeout") (ne ($registry.verify | default "best_effort") "off") }}
{{- if ge (include "pullsecret-controller.seconds" $registry.verifyTimeout | float64) $reconcile }}
{{- fail (printf "registries[%d].verifyTimeout (%v) must be less than reconcile.timeoutSeconds (%v), which bounds the whole refresh" $i $registry.verifyTimeout $v.reconcile.timeoutSeconds) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The series selector of every alert rule.
*/}}
{{- define "pullsecret-controller.alertSelector" -}}
{{- .Values.prometheusRule.selector | default (printf "job=%q,namespace=%q" (include "pullsecret-controller.fullname" .) .Release.Namespace) }}
{{- end }}
