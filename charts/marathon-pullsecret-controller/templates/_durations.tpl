{{/*
Generated from controller/config_schema.json by charts/generate_durations.py: do not edit.
Every duration key of the controller's config, as the chart value that sets it ("[]": each
item of the list), with the controller's floor in seconds. checkDurations (_helpers.tpl) reads it.
*/}}
{{- define "pullsecret-controller.durationKeys" -}}
[
  {"values": "marathon.timeoutSeconds", "config": "marathon.timeout_seconds", "floor": 0.1, "floorText": "100ms"},
  {"values": "registries[].maxAge", "config": "registries[].max_age", "floor": 60.0, "floorText": "1m"},
  {"values": "registries[].minValidity", "config": "registries[].min_validity", "floor": 60.0, "floorText": "1m"},
  {"values": "registries[].refusedLoginInterval", "config": "registries[].refused_login_interval", "floor": 5.0, "floorText": "5s"},
  {"values": "registries[].verifyTimeout", "config": "registries[].verify_timeout", "floor": 0.1, "floorText": "100ms"},
  {"values": "storage.s3.presignTtl", "config": "storage.s3.presign_ttl", "floor": 3600.0, "floorText": "1h"},
  {"values": "reconcile.resyncSeconds", "config": "reconcile.resync_seconds", "floor": 1.0, "floorText": "1s"},
  {"values": "reconcile.timeoutSeconds", "config": "reconcile.timeout_seconds", "floor": 0.1, "floorText": "100ms"},
  {"values": "reconcile.shutdownTimeoutSeconds", "config": "reconcile.shutdown_timeout_seconds", "floor": 1.0, "floorText": "1s"},
  {"values": "reconcile.fightWindow", "config": "reconcile.fight_window", "floor": 1.0, "floorText": "1s"},
  {"values": "leaderElection.sessionTimeoutSeconds", "config": "leader_election.session_timeout_seconds", "floor": 2.0, "floorText": "2s"}
]
{{- end }}
