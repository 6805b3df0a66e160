#!/bin/sh
# The image's entrypoint. Dagster's Helm chart runs each user-code deployment as the args
# `dagster api grpc -h 0.0.0.0 -p PORT <dagsterApiGrpcArgs>` with no command of its own; a
# plain `dagster api grpc` ignores a reload and keeps serving what it built at start, so a
# new spec would never appear. Those args are served by the in-place code server instead
# (quantos_assets/apps/code_server: the same options, a registry change rebuilt in the same
# process, a code change answered by exiting for the kubelet to restart the container).
# Every other command (run and step pods, the gateway, the CMD below) runs as given.
if [ "$1" = dagster ] && [ "$2" = api ] && [ "$3" = grpc ]; then
  shift 3
  exec python -m quantos_assets.apps.code_server "$@"
fi
exec "$@"
