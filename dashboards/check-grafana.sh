#!/usr/bin/env bash
# Validates the Grafana files of dashboards/ against Grafana's own published schema:
#  1. lastfm-monitor.json, type-checked by tsc against @grafana/schema (dashboard model, per-panel
#     Options/FieldConfig) and the Prometheus query model of @grafana/grafana-foundation-sdk, with
#     negative copies (bogus keys at every depth, an unknown panel type) that must fail;
#  2. provisioning/alerting/*.yaml against Grafana's alerting file-provisioning format
#     (pkg/services/provisioning/alerting), query models type-checked against the published
#     expression and Prometheus types, data source uids against provisioning/datasources/*.yaml,
#     with negative self-tests.
# See schema/README.md.
#
#   bash dashboards/check-grafana.sh            # from anywhere
#   bash dashboards/check-grafana.sh --ci       # always `npm ci` (what CI does on a fresh clone)
#
# Needs node >= 18 with npm (Debian: apt-get install nodejs npm), python3 with PyYAML (Debian:
# python3-yaml), and the npm registry for `npm ci` unless dashboards/schema/node_modules already
# matches package-lock.json. Every step is bounded by `timeout`; exits non-zero on any problem.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
schema="$here/schema"
force_ci=0
[ "${1:-}" = "--ci" ] && force_ci=1
started=$SECONDS
step() { printf '\n== %s (t=%ss)\n' "$*" "$((SECONDS - started))"; }

command -v node >/dev/null 2>&1 || { echo "check-grafana.sh: node not found (apt-get install nodejs npm)" >&2; exit 2; }
command -v npm >/dev/null 2>&1 || { echo "check-grafana.sh: npm not found (apt-get install npm)" >&2; exit 2; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
  { echo "check-grafana.sh: node >= 18 needed, found $(node --version)" >&2; exit 2; }
py=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
    py=$candidate
    break
  fi
done
[ -n "$py" ] || { echo "check-grafana.sh: python3 with PyYAML not found (apt-get install python3-yaml)" >&2; exit 2; }

step "npm ci (@grafana/schema, @grafana/grafana-foundation-sdk, typescript, pinned in schema/package-lock.json)"
stamp="$schema/node_modules/.check-grafana-lock"
if [ "$force_ci" = 1 ] || ! cmp -s "$schema/package-lock.json" "$stamp" 2>/dev/null; then
  (cd "$schema" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
  cp "$schema/package-lock.json" "$stamp"
else
  echo "  node_modules matches package-lock.json, not reinstalled (--ci to force)"
fi
(cd "$schema" && node -e '
  for (const p of ["@grafana/schema", "@grafana/grafana-foundation-sdk", "typescript"])
    console.log(`  ${p} ${require(`./node_modules/${p}/package.json`).version}`);')

step "dashboard: lastfm-monitor.json against @grafana/schema (tsc --noEmit --strict, with negative copies)"
(cd "$schema" && timeout 240 node check-dashboard.mjs "$here/lastfm-monitor.json")

step "alerting provisioning: Grafana's file format, query models (tsc), data source uids, negative self-tests"
(cd "$schema" && timeout 240 "$py" check_alerting.py --provisioning "$here/provisioning")

printf '\ndashboards/check-grafana.sh: all Grafana checks passed in %ss\n' "$((SECONDS - started))"
