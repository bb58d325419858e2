#!/bin/sh
# One entry point for every role of the hwnas image.
#   serve [hwnas serve options]        the API and the web page (add --no-controller when controllers run apart)
#   controller [options]               takes queued jobs from the database (PostgreSQL) and runs them
#   worker --address HEAD:6379 [...]   joins the Ray cluster; --device NAME advertises a device profile
#   ray-head [ray start options]       the Ray head (coordinates; runs no trials: --num-cpus 0 by default)
#   hwnas ARGS / any other command     run as given (for example `hwnas token create --scope admin`)
set -eu
role="${1:-serve}"
[ "$#" -gt 0 ] && shift
case "$role" in
  serve|controller|worker)
    exec hwnas "$role" "$@" ;;
  ray-head)
    # --block keeps the head in the foreground, so that the container lives as long as the head does.
    exec ray start --head --port "${RAY_PORT:-6379}" --num-cpus "${RAY_HEAD_CPUS:-0}" \
      --dashboard-host 0.0.0.0 --disable-usage-stats --block "$@" ;;
  *)
    exec "$role" "$@" ;;
esac
