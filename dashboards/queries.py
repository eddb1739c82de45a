#!/usr/bin/env python3
"""Extract, lint and evaluate every PromQL expression shipped in dashboards/.

Interpreter: any python3 >= 3.8, standard library only. YAML files are read with PyYAML when it
can be imported (Debian: `apt-get install python3-yaml`, then use /usr/bin/python3); without
it a small line-based extractor reads the `expr:` fields of the rule files, which is enough for
listing and evaluating (tested to give the same output), but `--lint` then skips the YAML checks.

Sources
  - the Grafana dashboard JSON: panel targets[].expr (rows and nested panels included), the
    annotation queries, and query variables (`label_values(metric{...}, label)` becomes
    `metric{...}`; `label_values(label)` and `label_names()` are Grafana-only and skipped);
  - the Grafana alert provisioning file: data[].model.expr of every Prometheus query (math,
    reduce and threshold expressions are skipped);
  - the Prometheus rules file: the expr of every recording and alerting rule.
(--lint also checks the example Alertmanager config, alertmanager/alertmanager.yml, against the
rules: every alertname its routes and inhibit rules name must be an alert of the rules.)

Grafana variables are substituted: $target, $probe (and any other dashboard variable) with
`.*` (override with --var name=value), $__rate_interval and $__interval with 1m, $__range with
1h (--rate-interval, --interval, --range).

Usage (from the repository root)
  python3 dashboards/queries.py                     # one JSON object per line: source, kind, expr
  python3 dashboards/queries.py --lint              # structural checks, exit 1 on a problem
  python3 dashboards/queries.py --rules-out F.yml   # every expr as a recording rule, for `promtool check rules F.yml`
  python3 dashboards/queries.py --prom http://127.0.0.1:9090 [--min-data 0.9]

With --prom every expression is evaluated through /api/v1/query. Output: one JSON line per
query with its status (data, empty or error), then the summary `N queries, E errors, D with
data`. Exit 1 when any query errors, when the share of queries with data is below --min-data,
or when a vector selector of any expression (metric name plus label matchers, e.g.
`lastfm_condition{condition="service_offline"}`) matches no series in Prometheus
(--allow-missing-metrics turns that into a warning). Metrics the daemon exports only in some
configurations (OPTIONAL_METRICS: the TLS certificate gauge, the references, the write-path
canaries, the rate-limit budget of ListenBrainz targets) are the exception: when such a metric
is absent altogether its selectors only warn, and a query reading nothing else is reported as
"absent-optional" and left out of the data share (--require-optional makes them mandatory, for a
run with https targets, references, canaries and a ListenBrainz target). Alerting rules are
expected to be empty while nothing is wrong: they are evaluated and must not error, and their
selectors must match live series, but they are left out of the data share unless
--include-alerts is given.
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import yaml  # type: ignore
except ImportError:  # pragma: no cover - exercised by --no-yaml
    yaml = None

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DASHBOARDS = [os.path.join(HERE, "lastfm-monitor.json")]
DEFAULT_GRAFANA_ALERTS = [os.path.join(HERE, "provisioning", "alerting", "lastfm-monitor-alerts.yaml")]
DEFAULT_RULES = [os.path.join(HERE, "prometheus", "lastfm-monitor.rules.yml")]
DEFAULT_ALERTMANAGER = [os.path.join(HERE, "alertmanager", "alertmanager.yml")]

# Metrics the daemon exports only in some configurations. With --prom, a selector of one of them
# matches nothing only when the whole metric is absent is a warning (not an error), and a query
# that is empty because it reads nothing but absent optional metrics is reported as
# "absent-optional" and left out of the data share. --require-optional makes them mandatory (an
# end-to-end run whose configuration has https targets, references and canaries).
OPTIONAL_METRICS = {
    "lastfm_tls_certificate_not_after_timestamp_seconds": "https targets only, after a handshake",
    "lastfm_reference_up": "only with [[references]] configured",
    "lastfm_reference_failures_total": "only with [[references]] configured",
    "lastfm_reference_http_status_code": "only with [[references]] configured",
    "lastfm_reference_last_check_timestamp_seconds": "only with [[references]] configured",
    "lastfm_canary_runs_total": "only with [[targets.canaries]] configured",
    "lastfm_canary_ignored_total": "only with [[targets.canaries]] configured",
    "lastfm_canary_visible_seconds_bucket": "only with [[targets.canaries]] configured",
    "lastfm_canary_last_result": "only with [[targets.canaries]] configured",
    "lastfm_canary_last_run_timestamp_seconds": "only with [[targets.canaries]] configured",
    "lastfm_canary_last_visible_timestamp_seconds": "only with [[targets.canaries]] configured, after a first visible run",
    "lastfm_target_rate_limit_remaining": "only for a service that sends X-RateLimit-Remaining (ListenBrainz), after its first answer",
}

EXPR_DATASOURCE = "__expr__"


class Query:
    __slots__ = ("source", "kind", "expr", "raw")

    def __init__(self, source, kind, raw):
        self.source = source
        self.kind = kind  # panel | annotation | variable | grafana-alert | recording | alert
        self.raw = raw
        self.expr = raw

    def as_dict(self):
        return {"source": self.source, "kind": self.kind, "expr": self.expr}


# --------------------------------------------------------------------------------------------
# Grafana variables
# --------------------------------------------------------------------------------------------

# A variable's name starts with a letter or `_`: `$1` is a regular expression's group in
# label_replace(), not a variable.
VAR_RE = re.compile(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]|\$([A-Za-z_]\w*)")


def builtin_vars(args):
    def seconds(d):
        m = re.fullmatch(r"(\d+)([smhdw])", d)
        if not m:
            raise SystemExit(f"bad duration {d!r}")
        return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]

    return {
        "__rate_interval": args.rate_interval,
        "__rate_interval_ms": str(seconds(args.rate_interval) * 1000),
        "__interval": args.interval,
        "__interval_ms": str(seconds(args.interval) * 1000),
        "__range": args.range,
        "__range_s": str(seconds(args.range)),
        "__range_ms": str(seconds(args.range) * 1000),
    }


def substitute(expr, values, source):
    def sub(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise ValueError(f"{source}: unknown Grafana variable ${name}")
        return values[name]

    return VAR_RE.sub(sub, expr)


# --------------------------------------------------------------------------------------------
# Extraction: dashboard JSON
# --------------------------------------------------------------------------------------------


def is_prometheus_ds(ds, default=True):
    """A panel/target datasource reference: Prometheus, a variable, or unset (inherits)."""
    if ds is None:
        return default
    if isinstance(ds, str):
        return not ds.startswith("-- ") and ds != EXPR_DATASOURCE
    t = ds.get("type")
    uid = ds.get("uid", "")
    if t in ("prometheus",):
        return True
    if t is None:
        return uid.startswith("$") or default
    return False


def iter_panels(panels):
    for p in panels or []:
        yield p
        # collapsed rows keep their panels inside; library panels are not expanded
        yield from iter_panels(p.get("panels"))


LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$", re.S)
QUERY_RESULT_RE = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


def variable_expr(q):
    """PromQL for a Grafana Prometheus variable query, or None when it has no PromQL."""
    if isinstance(q, dict):
        q = q.get("query", "")
    q = (q or "").strip()
    if not q:
        return None
    m = LABEL_VALUES_RE.match(q)
    if m:
        return m.group(1).strip()
    m = QUERY_RESULT_RE.match(q)
    if m:
        return m.group(1).strip()
    if re.match(r"^\s*(label_values|label_names|metrics)\s*\(", q):
        return None  # label_values(label), label_names(), metrics(regex): Grafana-only
    return q


def dashboard_queries(path):
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    name = os.path.basename(path)
    out = []
    variables = {}
    for v in dash.get("templating", {}).get("list", []):
        vname = v.get("name")
        if v.get("type") in ("query", "custom", "interval", "constant", "textbox"):
            variables[vname] = v.get("allValue") or ".*"
        if v.get("type") == "query" and is_prometheus_ds(v.get("datasource")):
            expr = variable_expr(v.get("query"))
            if expr:
                out.append(Query(f"dashboard:{name}#variable={vname}", "variable", expr))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("builtIn") or not is_prometheus_ds(a.get("datasource"), default=False):
            continue
        expr = a.get("expr") or (a.get("target") or {}).get("expr")
        if expr:
            out.append(Query(f"dashboard:{name}#annotation={a.get('name')}", "annotation", expr))
    for p in iter_panels(dash.get("panels")):
        if p.get("type") == "row":
            continue
        panel_ds = p.get("datasource")
        for t in p.get("targets") or []:
            ds = t.get("datasource", panel_ds)
            if not is_prometheus_ds(ds) or not t.get("expr"):
                continue
            src = f"dashboard:{name}#panel={p.get('id')}:{p.get('title')!r}/{t.get('refId')}"
            out.append(Query(src, "panel", t["expr"]))
    return out, variables


# --------------------------------------------------------------------------------------------
# Extraction: YAML files (PyYAML, or a line-based fallback for the `expr:` fields)
# --------------------------------------------------------------------------------------------


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def grafana_alert_queries_yaml(path):
    doc = load_yaml(path) or {}
    name = os.path.basename(path)
    out = []
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            for d in r.get("data") or []:
                model = d.get("model") or {}
                if d.get("datasourceUid") == EXPR_DATASOURCE or model.get("type") in ("math", "reduce", "threshold", "resample", "classic_conditions"):
                    continue
                if model.get("expr"):
                    out.append(Query(f"grafana-alerts:{name}#{r.get('uid')}/{d.get('refId')}", "grafana-alert", model["expr"]))
    return out


def rules_queries_yaml(path):
    doc = load_yaml(path) or {}
    name = os.path.basename(path)
    out = []
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            if "alert" in r:
                out.append(Query(f"rules:{name}#{g.get('name')}/alert={r['alert']}", "alert", r["expr"]))
            else:
                out.append(Query(f"rules:{name}#{g.get('name')}/record={r['record']}", "recording", r["expr"]))
    return out


KEY_RE = re.compile(r"^(\s*)(?:-\s+)?([A-Za-z_][\w]*):\s*(.*?)\s*$")


def _scalar(lines, i, indent, rest):
    """Parse the value of a `key: rest` line at lines[i]; return (value, next_index)."""
    if rest[:1] in ("|", ">"):
        header = re.sub(r"\s+#.*$", "", rest)
        folded = header[0] == ">"
        chomp = "-" if "-" in header else ("+" if "+" in header else "")
        digits = re.sub(r"\D", "", header)
        body = []
        j = i + 1
        block_indent = indent + int(digits) if digits else None
        while j < len(lines):
            ln = lines[j]
            if ln.strip() == "":
                body.append("")
                j += 1
                continue
            ind = len(ln) - len(ln.lstrip(" "))
            if block_indent is None:
                if ind <= indent:
                    break
                block_indent = ind
            if ind < block_indent:
                break
            body.append(ln[block_indent:])
            j += 1
        while body and body[-1] == "":
            body.pop()
        text = (" " if folded else "\n").join(body)
        if chomp != "-":
            text += "\n"
        return text, j
    if rest.startswith('"'):
        s = rest
        j = i
        while not re.search(r'(?<!\\)"\s*(#.*)?$', s[1:]) or s == '"':
            j += 1
            s += " " + lines[j].strip()
        return json.loads(re.sub(r"\s*#[^\"]*$", "", s)), j + 1
    if rest.startswith("'"):
        s = rest
        j = i
        while not re.search(r"'\s*$", s[1:]):
            j += 1
            s += " " + lines[j].strip()
        return s.strip()[1:-1].replace("''", "'"), j + 1
    # plain scalar, possibly continued on more-indented lines
    parts = [re.sub(r"\s+#.*$", "", rest)]
    j = i + 1
    while j < len(lines):
        ln = lines[j]
        ind = len(ln) - len(ln.lstrip(" "))
        if ln.strip() == "" or ind <= indent or KEY_RE.match(ln) and ind <= indent + 2:
            break
        parts.append(ln.strip())
        j += 1
    return " ".join(p for p in parts if p), j


def _fallback_scan(path):
    """Yield (key, value, context) for the keys we need, with the enclosing rule's names."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    ctx = {}
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.lstrip().startswith("#"):
            i += 1
            continue
        m = KEY_RE.match(ln)
        if not m:
            i += 1
            continue
        indent = len(ln) - len(ln.lstrip(" -"))  # column of the key, past any "- "
        key, rest = m.group(2), m.group(3)
        if key in ("expr", "alert", "record", "uid", "refId", "name", "datasourceUid"):
            value, nxt = _scalar(lines, i, indent, rest)
            yield key, value, dict(ctx)
            if key == "uid" and ln.lstrip().startswith("-"):
                ctx["rule_uid"] = value  # `- uid:` starts a Grafana rule; model.datasource.uid does not
            elif key != "expr":
                ctx[key] = value
            i = nxt
            continue
        i += 1


def grafana_alert_queries_fallback(path):
    name = os.path.basename(path)
    out = []
    for key, value, ctx in _fallback_scan(path):
        # Server-side expressions (math/reduce/threshold) have `expression`, never `expr`.
        if key == "expr" and ctx.get("datasourceUid") != EXPR_DATASOURCE:
            out.append(Query(f"grafana-alerts:{name}#{ctx.get('rule_uid')}/{ctx.get('refId')}", "grafana-alert", value))
    return out


def rules_queries_fallback(path):
    name = os.path.basename(path)
    out = []
    last = None
    for key, value, ctx in _fallback_scan(path):
        if key in ("alert", "record"):
            last = (key, value)
        elif key == "expr" and last:
            kind, rname = last
            out.append(Query(f"rules:{name}#{ctx.get('name')}/{kind}={rname}", "alert" if kind == "alert" else "recording", value))
            last = None
    return out


# --------------------------------------------------------------------------------------------
# Metric names in an expression
# --------------------------------------------------------------------------------------------

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "atan2",
}


def metric_names(expr):
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"#.*", " ", s)
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def _ignored_spans(expr):
    """Mask of positions inside strings, {...}, [...] and by/on/... (...) label lists."""
    ignored = [False] * len(expr)
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|\{[^}]*\}|\[[^\]]*\]'
                         r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", expr):
        for k in range(m.start(), m.end()):
            ignored[k] = True
    return ignored


def selectors(expr):
    """The vector selectors of an expression, with their label matchers: `name{...}` or `{...}`."""
    masked = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', lambda m: '"' + "x" * (len(m.group()) - 2) + '"', expr)
    masked = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), masked)  # PromQL comments (same length)
    ignored = _ignored_spans(masked)
    out = []
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)?(\s*\{[^}]*\})?", masked):
        name, braces = m.group(1), m.group(2)
        if not (name or braces) or (name and ignored[m.start()]):
            continue  # (a bare `{...}` is always a selector: braces do not nest in PromQL)
        after = masked[m.end():m.end() + 50].lstrip()
        if name and not braces and (after.startswith("(") or re.match(r"(by|without)\s*\(", after)):
            continue  # a function call or an aggregation (`sum by (x) (...)`)
        if name and name.lower() in PROMQL_KEYWORDS:
            continue
        out.append((name or "") + (expr[m.start(2):m.end(2)].strip() if braces else ""))
    return out


# --------------------------------------------------------------------------------------------
# Lint
# --------------------------------------------------------------------------------------------


def lint_dashboard(path):
    problems = []
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    if not dash.get("uid"):
        problems.append("dashboard has no uid")
    if (dash.get("schemaVersion") or 0) < 36:
        problems.append(f"schemaVersion {dash.get('schemaVersion')} is older than Grafana 9")
    names = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if names.get("datasource", {}).get("type") != "datasource":
        problems.append("no `datasource` variable of type datasource")
    for v in ("target", "probe", "vantage"):
        if v not in names:
            problems.append(f"no `{v}` variable")
    v = names.get("vantage")
    if v and not (v.get("multi") and v.get("includeAll") and v.get("allValue") == ".*"):
        # ".*" also matches series without the label: one monitor without a vantage label
        problems.append("`vantage` variable must be multi-value with All = \".*\"")
    ids = set()
    for p in iter_panels(dash.get("panels")):
        pid = p.get("id")
        where = f"panel {pid} {p.get('title')!r}"
        if pid in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(pid)
        if "gridPos" not in p:
            problems.append(f"{where}: no gridPos")
        if p.get("type") == "row":
            continue
        desc = (p.get("description") or "").strip()
        if len(desc) < 40 or not re.search(r"\bwhen\b", desc, re.I):
            problems.append(f"{where}: description must say what to do when it turns red")
        for t in p.get("targets") or []:
            ds = t.get("datasource") or p.get("datasource") or {}
            if isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") != "${datasource}":
                problems.append(f"{where}/{t.get('refId')}: datasource must be the ${{datasource}} variable")
            expr = t.get("expr", "")
            for var, label in (("$target", "target"), ("$probe", "probe"), ("$vantage", "vantage")):
                if var in expr and not re.search(label + r'=~"\$' + label + '"', expr):
                    problems.append(f"{where}/{t.get('refId')}: use {label}=~\"{var}\" (multi-value variable)")
    return problems


def _annotations_ok(where, ann, labels, problems, need_runbook=True):
    for key in ("summary", "description") + (("runbook",) if need_runbook else ()):
        if not (ann or {}).get(key):
            problems.append(f"{where}: missing annotation {key}")
    if (labels or {}).get("severity") not in ("critical", "warning", "info"):
        problems.append(f"{where}: severity label must be critical, warning or info")


def lint_grafana_alerts(path):
    problems = []
    doc = load_yaml(path)
    if doc.get("apiVersion") != 1:
        problems.append("apiVersion must be 1")
    uids = set()
    for g in doc.get("groups") or []:
        for key in ("orgId", "name", "folder", "interval"):
            if key not in g:
                problems.append(f"group {g.get('name')}: missing {key}")
        for r in g.get("rules") or []:
            where = f"grafana rule {r.get('uid')}"
            uid = r.get("uid") or ""
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
                problems.append(f"{where}: uid must be 1-40 characters of [A-Za-z0-9_-]")
            if uid in uids:
                problems.append(f"{where}: duplicate uid")
            uids.add(uid)
            refs = {d.get("refId") for d in r.get("data") or []}
            if r.get("condition") not in refs:
                problems.append(f"{where}: condition {r.get('condition')} is not a refId of data")
            for d in r.get("data") or []:
                model = d.get("model") or {}
                if model.get("refId") != d.get("refId"):
                    problems.append(f"{where}/{d.get('refId')}: model.refId differs")
                if d.get("datasourceUid") != EXPR_DATASOURCE and "relativeTimeRange" not in d:
                    problems.append(f"{where}/{d.get('refId')}: query without relativeTimeRange")
                for ref in re.findall(r"\$(\w+)", model.get("expression", "")) + ([model["expression"]] if model.get("type") in ("reduce", "threshold") else []):
                    if ref not in refs:
                        problems.append(f"{where}/{d.get('refId')}: refers to unknown {ref}")
            for key in ("title", "for", "noDataState", "execErrState"):
                if key not in r:
                    problems.append(f"{where}: missing {key}")
            _annotations_ok(where, r.get("annotations"), r.get("labels"), problems)
    return problems


def lint_rules(path):
    problems = []
    doc = load_yaml(path)
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            if "alert" in r:
                _annotations_ok(f"alert {r['alert']}", r.get("annotations"), r.get("labels"), problems)
    return problems


def rule_alert_names(paths):
    names = set()
    for path in paths:
        for g in (load_yaml(path) or {}).get("groups") or []:
            names.update(r["alert"] for r in g.get("rules") or [] if "alert" in r)
    return names


MATCHER_RE = re.compile(r'^\s*alertname\s*(=~|=|!=|!~)\s*"?([^"]*)"?\s*$')


def lint_alertmanager(path, alert_names):
    """The example Alertmanager config: every alertname it routes or inhibits on is an alert of the
    rules (a rename would silently break an inhibition), group_by keeps `target`, and the keys the
    end-to-end test rewrites are where the config's comment says."""
    problems = []
    doc = load_yaml(path) or {}
    route = doc.get("route") or {}
    if "target" not in (route.get("group_by") or []):
        problems.append("route.group_by must include target (one group per target across monitors)")
    try:
        doc["receivers"][0]["webhook_configs"][0]["url"]
    except (KeyError, IndexError, TypeError):
        problems.append("receivers[0].webhook_configs[0].url is missing")
    for key in ("group_wait", "group_interval", "repeat_interval"):
        if key not in route:
            problems.append(f"route.{key} is missing")

    def matchers(where, ms):
        for m in ms or []:
            mm = MATCHER_RE.match(m)
            if not mm:
                continue
            op, value = mm.groups()
            wanted = value.split("|") if op in ("=~", "!~") else [value]
            for name in wanted:
                if name not in alert_names:
                    problems.append(f"{where}: alertname {name} is not an alert of the rules")

    def walk(r, where):
        matchers(where, r.get("matchers"))
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if where != "route" and key in r:
                problems.append(f"{where}: sets {key}; the timings belong to the root route only")
        for i, child in enumerate(r.get("routes") or []):
            walk(child, f"{where}.routes[{i}]")

    walk(route, "route")
    for i, rule in enumerate(doc.get("inhibit_rules") or []):
        matchers(f"inhibit_rules[{i}].source_matchers", rule.get("source_matchers"))
        matchers(f"inhibit_rules[{i}].target_matchers", rule.get("target_matchers"))
        if not rule.get("equal"):
            problems.append(f"inhibit_rules[{i}]: no `equal` labels (it would inhibit across monitors and targets)")
    return problems


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def prom_query(base, expr, timeout, at=None, window=None):
    """Evaluates `expr` at `at` (default now), or, with `window` seconds, over the range
    [at - window, at] every 2 s: "data" then means the expression had data at some moment."""
    params = {"query": expr}
    path = "/api/v1/query"
    if window:
        end = at if at is not None else time.time()
        params.update({"start": str(end - window), "end": str(end), "step": "2"})
        path = "/api/v1/query_range"
    elif at is not None:
        params["time"] = str(at)
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(base.rstrip("/") + path, data=data,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except Exception:  # noqa: BLE001 - any unreadable error body
            return "error", f"HTTP {e.code}", 0
    except (urllib.error.URLError, OSError, ValueError) as e:
        return "error", str(e), 0
    if body.get("status") != "success":
        return "error", f"{body.get('errorType')}: {body.get('error')}", 0
    result = body["data"]["result"]
    rtype = body["data"]["resultType"]
    n = len(result) if rtype in ("vector", "matrix") else 1
    return ("data" if n else "empty"), "", n


# --------------------------------------------------------------------------------------------


def collect(args):
    queries = []
    variables = {}
    for path in args.dashboard:
        qs, vs = dashboard_queries(path)
        queries += qs
        variables.update(vs)
    use_yaml = yaml is not None and not args.no_yaml
    for path in args.grafana_alerts:
        queries += grafana_alert_queries_yaml(path) if use_yaml else grafana_alert_queries_fallback(path)
    for path in args.rules:
        queries += rules_queries_yaml(path) if use_yaml else rules_queries_fallback(path)
    values = dict(variables)
    values.update(builtin_vars(args))
    for kv in args.var:
        k, _, v = kv.partition("=")
        values[k] = v
    for q in queries:
        q.expr = substitute(q.raw, values, q.source).strip()
    return queries


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dashboard", action="append", help="Grafana dashboard JSON (repeatable)")
    ap.add_argument("--grafana-alerts", action="append", help="Grafana alert provisioning YAML (repeatable)")
    ap.add_argument("--rules", action="append", help="Prometheus rules YAML (repeatable)")
    ap.add_argument("--alertmanager", action="append", help="Alertmanager config to lint against the rules (repeatable)")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="value of a dashboard variable (default .*)")
    ap.add_argument("--rate-interval", default="1m")
    ap.add_argument("--interval", default="1m")
    ap.add_argument("--range", default="1h")
    ap.add_argument("--prom", metavar="URL", help="evaluate every query against this Prometheus")
    ap.add_argument("--min-data", type=float, default=0.9, help="minimum share of queries with data (default 0.9)")
    ap.add_argument("--include-alerts", action="store_true", help="count alerting rules in the data share")
    ap.add_argument("--allow-missing-metrics", action="store_true", help="selectors matching no series only warn")
    ap.add_argument("--require-optional", action="store_true",
                    help="the optional metrics (TLS certificate, references, canaries) must exist too")
    ap.add_argument("--time", type=float, help="evaluation time (unix seconds; default now)")
    ap.add_argument("--window", type=float, help="evaluate over the last N seconds (range query): "
                    "a query has data if it had data at any moment of the window")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--lint", action="store_true", help="structural checks of the dashboard and alert files")
    ap.add_argument("--rules-out", metavar="FILE", help="write every expression as a recording rule (for promtool check rules)")
    ap.add_argument("--metrics", action="store_true", help="list the metric names the expressions use")
    ap.add_argument("--selectors", action="store_true", help="list the vector selectors the expressions use")
    ap.add_argument("--no-yaml", action="store_true", help="use the built-in expr extractor even if PyYAML is present")
    args = ap.parse_args(argv)
    args.dashboard = args.dashboard or DEFAULT_DASHBOARDS
    args.grafana_alerts = args.grafana_alerts or DEFAULT_GRAFANA_ALERTS
    args.rules = args.rules or DEFAULT_RULES
    args.alertmanager = args.alertmanager or DEFAULT_ALERTMANAGER

    if args.lint:
        problems = []
        for p in args.dashboard:
            problems += [f"{os.path.basename(p)}: {x}" for x in lint_dashboard(p)]
        if yaml is None:
            print("lint: PyYAML not available, YAML files not linted", file=sys.stderr)
        else:
            for p in args.grafana_alerts:
                problems += [f"{os.path.basename(p)}: {x}" for x in lint_grafana_alerts(p)]
            for p in args.rules:
                problems += [f"{os.path.basename(p)}: {x}" for x in lint_rules(p)]
            names = rule_alert_names(args.rules)
            for p in args.alertmanager:
                problems += [f"{os.path.basename(p)}: {x}" for x in lint_alertmanager(p, names)]
        for x in problems:
            print("lint:", x, file=sys.stderr)
        if problems:
            return 1
        print("lint: ok")
        return 0

    try:
        queries = collect(args)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1

    if args.rules_out:
        rules = [{"record": f"dashboards_check:q{i}", "expr": q.expr, "labels": {"source": q.source[:200]}}
                 for i, q in enumerate(queries, 1)]
        with open(args.rules_out, "w", encoding="utf-8") as f:
            json.dump({"groups": [{"name": "dashboards-check", "rules": rules}]}, f, indent=1)  # JSON is YAML
        print(f"wrote {len(rules)} expressions to {args.rules_out}")
        return 0

    if args.metrics:
        for name in sorted(set().union(*(metric_names(q.expr) for q in queries))):
            print(name)
        return 0

    if args.selectors:
        for sel in sorted(set().union(*(selectors(q.expr) for q in queries))):
            print(sel)
        return 0

    if not args.prom:
        for q in queries:
            print(json.dumps(q.as_dict(), ensure_ascii=False))
        return 0

    # Optional metrics (OPTIONAL_METRICS) that this Prometheus does not have at all.
    absent_optional = set()
    if not args.require_optional:
        for name in sorted(OPTIONAL_METRICS):
            status, err, n = prom_query(args.prom, f"count({name})", args.timeout, args.time, args.window)
            if status == "empty":
                absent_optional.add(name)

    errors = with_data = counted = counted_data = skipped = 0
    for q in queries:
        status, err, n = prom_query(args.prom, q.expr, args.timeout, args.time, args.window)
        used = metric_names(q.expr)
        if status == "empty" and used and used <= absent_optional:
            status = "absent-optional"  # e.g. a certificate panel when no target is https
        rec = q.as_dict()
        rec.update({"status": status, "series": n})
        if err:
            rec["error"] = err
        print(json.dumps(rec, ensure_ascii=False))
        errors += status == "error"
        with_data += status == "data"
        if status == "absent-optional":
            skipped += 1
        elif q.kind != "alert" or args.include_alerts:
            counted += 1
            counted_data += status == "data"

    # Every selector (metric name and label matchers) must match live series: an alert whose
    # selector has a typo would otherwise stay silent forever, and alerts are empty by design.
    # Selectors of optional metrics that are absent altogether only warn.
    missing = []
    optional_missing = []
    for sel in sorted(set().union(*(selectors(q.expr) for q in queries))):
        status, err, n = prom_query(args.prom, f"count({sel})", args.timeout, args.time)
        if status != "data":
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", sel)
            if name and name.group() in absent_optional:
                optional_missing.append(sel)
            else:
                missing.append(sel)
    share = counted_data / counted if counted else 0.0
    alerts = [q for q in queries if q.kind == "alert"]
    print(f"{len(queries)} queries, {errors} errors, {with_data} with data "
          f"({counted_data}/{counted} = {share:.1%} of the counted queries; "
          f"{len(alerts)} alerting rules {'counted' if args.include_alerts else 'not counted'}; "
          f"{skipped} left out: they read only optional metrics this Prometheus does not have)")
    if absent_optional:
        print("optional metrics absent (warning): " + ", ".join(
            f"{m} ({OPTIONAL_METRICS[m]})" for m in sorted(absent_optional)))
    if optional_missing:
        print(f"selectors of absent optional metrics (warning): {', '.join(optional_missing)}")
    if missing:
        print(f"selectors matching no series in Prometheus: {', '.join(missing)}")
    failed = errors > 0 or share < args.min_data or (missing and not args.allow_missing_metrics)
    if failed:
        print(f"FAIL (min data share {args.min_data:.0%})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
