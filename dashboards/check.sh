#!/usr/bin/env bash
# Static checks of dashboards/: rules lint and unit tests, example configs (single Prometheus,
# multi-site agent and central, Alertmanager), PromQL syntax of every dashboard and Grafana-alert
# query, JSON validity, and structural lint.
#
#   bash dashboards/check.sh            # from the repository root (or from anywhere)
#
# Needs: promtool (Debian: apt-get install prometheus; tested with 2.42), amtool (Debian:
# apt-get install prometheus-alertmanager; tested with 0.25) and python3. PyYAML
# (Debian: python3-yaml) is used when present; without it the YAML lint step is skipped.
# Exits non-zero on the first failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

step() { printf '\n== %s\n' "$*"; }

command -v promtool >/dev/null 2>&1 || { echo "check.sh: promtool not found (apt-get install prometheus)" >&2; exit 2; }
command -v amtool >/dev/null 2>&1 || { echo "check.sh: amtool not found (apt-get install prometheus-alertmanager)" >&2; exit 2; }

# A python3 with PyYAML if there is one (Debian's /usr/bin/python3 with python3-yaml), else any.
py=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
    py=$candidate
    break
  fi
done
if [ -z "$py" ]; then
  py=$(command -v python3) || { echo "check.sh: python3 not found" >&2; exit 2; }
  echo "check.sh: PyYAML not found, using the built-in YAML extractor (apt-get install python3-yaml for the full lint)" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "promtool and amtool versions"
promtool --version | head -n 1
amtool --version 2>&1 | head -n 1

step "JSON files parse"
while IFS= read -r -d '' f; do
  "$py" -m json.tool "$f" >/dev/null
  echo "  ok  ${f#./}"
done < <(find . -path ./schema/node_modules -prune -o -path ./schema/build -prune -o -name '*.json' -type f -print0 | sort -z)

step "promtool check rules"
promtool check rules prometheus/lastfm-monitor.rules.yml

step "promtool test rules"
promtool test rules prometheus/lastfm-monitor.rules.test.yml

step "promtool check config (example prometheus.yml; multi-site central.yml and agent-vantage.yml)"
promtool check config prometheus/prometheus.yml
promtool check config prometheus/central.yml
promtool check config --agent prometheus/agent-vantage.yml

step "amtool check-config (example alertmanager.yml)"
amtool check-config alertmanager/alertmanager.yml
# error 11 from any vantage goes to the same receiver, grouped by target (one notification group)
for v in ams nyc sgp; do
  amtool config routes test --config.file=alertmanager/alertmanager.yml --verify.receivers=lastfm-monitor \
    alertname=LastfmServiceOffline severity=critical target=lastfm vantage=$v >/dev/null 2>&1 \
    || { echo "check.sh: LastfmServiceOffline (vantage $v) is not routed to lastfm-monitor" >&2; exit 1; }
done
echo "  routing: LastfmServiceOffline from every vantage -> lastfm-monitor"

step "every query of the dashboard, the Grafana alerts and the rules is valid PromQL"
"$py" queries.py --rules-out "$tmp/all-queries.rules.json" >/dev/null
promtool check rules "$tmp/all-queries.rules.json"

step "YAML extraction agrees with the built-in extractor"
"$py" queries.py >"$tmp/q1.jsonl"
"$py" queries.py --no-yaml >"$tmp/q2.jsonl"
diff -u "$tmp/q1.jsonl" "$tmp/q2.jsonl"
echo "  $(wc -l <"$tmp/q1.jsonl") queries"

step "structural lint (uids, variables, descriptions, annotations, severities, Alertmanager names)"
"$py" queries.py --lint

printf '\ndashboards/check.sh: all checks passed\n'
