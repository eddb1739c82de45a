#!/usr/bin/env python3
"""Checks Grafana alerting file provisioning against Grafana's own format, see README.md.

    python3 check_alerting.py [--provisioning DIR] [--no-tsc] [--no-negative]

DIR defaults to ../provisioning. Reads alerting/*.y*ml (and *.json) and datasources/*.y*ml.
Exits 1 on any problem, printing each as `file: where: problem`.

Where each rule comes from (Grafana source, pkg/services/provisioning/alerting/, and the docs page
"Use configuration files to provision alerting resources",
https://grafana.com/docs/grafana/latest/alerting/set-up/provision-alerting-resources/file-provisioning/):
  [F]  file_v1.go        AlertingFileV1: apiVersion, groups, deleteRules, contactPoints,
                         deleteContactPoints, policies, resetPolicies, muteTimes, deleteMuteTimes,
                         templates, deleteTemplates
  [G]  rules_types.go    AlertRuleGroupV1: orgId, name (non-blank), folder (non-blank), interval
                         (Prometheus duration), rules
  [R]  rules_types.go    AlertRuleV1: uid (set), title (set), condition (set unless record), data
                         (non-empty), dashboardUid/dasboardUid, panelId, noDataState, execErrState,
                         for, keepFiringFor (durations), missing_series_evals_to_resolve (>= 0),
                         annotations, labels (string maps), isPaused, notification_settings, record
  [Q]  rules_types.go    QueryV1: refId, queryType, relativeTimeRange {from, to}, datasourceUid, model
  [N]  rules_types.go    NotificationSettingsV1: receiver (non-empty), group_by, group_wait,
                         group_interval, repeat_interval (durations), mute_time_intervals,
                         active_time_intervals
  [S]  ngalert/models/alert_rule.go  NoDataStateFromString: Alerting, NoData, OK, KeepLast;
                         ErrStateFromString: Alerting, Error, OK, KeepLast (KeepLast: Grafana 11+)
  [U]  pkg/util/shortid_generator.go  MaxUIDLength = 40, ^[a-zA-Z0-9\\-\\_]*$
  [T]  ngalert/models/alert_query.go  relativeTimeRange in seconds; a data source query needs
                         from > to; "__expr__" is the expression data source uid
  [I]  ngalert rule store validation: the group interval is a positive multiple of the scheduler's
                         base interval (10s by default, [unified_alerting] base_interval)
  [E]  expression models (pkg/expr; as published in @grafana/grafana-foundation-sdk expr types):
                         type in math/reduce/resample/classic_conditions/threshold/sql with their
                         required fields; `expression` (and classic_conditions' query.params) name
                         other refIds of the rule, math as $A / ${A}. Models are also type-checked
                         with tsc against those published types (strict.ts, AlertQueryModel).
  [P]  contact_point_types.go ContactPointV1 {orgId, name, receivers[{uid, type, settings,
                         disableResolveMessage}]}; notification_policy_types.go: a policy is an
                         Alertmanager route (receiver, group_by, matchers, object_matchers, routes, ...)
  [D]  provisioning/datasources: apiVersion, datasources[{name, type, uid, ...}], deleteDatasources
  [V]  provisioning/values/values.go: every string of the file (StringValue, StringMapValue:
                         uid, title, folder, name, interval, for, condition, labels, ...) goes through
                         os.ExpandEnv ($VAR, ${VAR}; `$$` is a literal $) and Grafana's $__env/$__file
                         expanders; annotations only expand ${VAR} (ValueWithBracedVars); models are
                         taken raw. A stray `$` there is replaced (usually by nothing) at load time.
  [L]  ngalert/store: AlertRuleMaxTitleLength = AlertRuleMaxRuleGroupNameLength = 190
  [uniq] alert rule uids are unique per org; titles unique per folder (Grafana's alert_rule
                         table constraints: UQE_alert_rule_org_id_uid, UQE_alert_rule_org_id_namespace_uid_title)
Unknown keys are errors: Grafana's YAML decoding ignores them silently, so a misspelt key
(`noDataSate`) would quietly fall back to its default.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check_alerting.py: PyYAML is needed (Debian: apt-get install python3-yaml)")

HERE = os.path.dirname(os.path.abspath(__file__))

FILE_KEYS = {"apiVersion", "groups", "deleteRules", "contactPoints", "deleteContactPoints", "policies",
             "resetPolicies", "muteTimes", "deleteMuteTimes", "templates", "deleteTemplates"}  # [F]
GROUP_KEYS = {"orgId", "name", "folder", "interval", "rules"}  # [G]
RULE_KEYS = {"uid", "title", "condition", "data", "dasboardUid", "dashboardUid", "panelId", "noDataState",
             "execErrState", "for", "keepFiringFor", "missing_series_evals_to_resolve", "annotations",
             "labels", "isPaused", "notification_settings", "record"}  # [R]
QUERY_KEYS = {"refId", "queryType", "relativeTimeRange", "datasourceUid", "model"}  # [Q]
NOTIF_KEYS = {"receiver", "group_by", "group_wait", "group_interval", "repeat_interval",
              "mute_time_intervals", "active_time_intervals"}  # [N]
RECORD_KEYS = {"metric", "from", "targetDatasourceUid"}  # [R] RecordV1
DELETE_RULE_KEYS = {"orgId", "uid"}
CONTACT_POINT_KEYS = {"orgId", "name", "receivers"}  # [P]
RECEIVER_KEYS = {"uid", "type", "settings", "disableResolveMessage"}  # [P]
ROUTE_KEYS = {"receiver", "group_by", "matchers", "object_matchers", "match", "match_re", "continue", "routes",
              "group_wait", "group_interval", "repeat_interval", "mute_time_intervals",
              "active_time_intervals", "provenance"}  # [P] Alertmanager route
NO_DATA_STATES = {"Alerting", "NoData", "OK", "KeepLast"}  # [S]
EXEC_ERR_STATES = {"Alerting", "Error", "OK", "KeepLast"}  # [S]
EXPR_UID = "__expr__"  # [T]
BASE_INTERVAL_S = 10  # [I]
UID_RE = re.compile(r"^[a-zA-Z0-9\-_]*$")  # [U]
# Prometheus model.ParseDuration (github.com/prometheus/common/model), used for interval, for, ...
PROM_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
ENV_VAR_RE = re.compile(r"\$(?!\$)(?:\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*|__\w+\{)")  # [V]
BRACED_VAR_RE = re.compile(r"\$\{[^}]*\}")  # [V] annotations
MAX_TITLE = 190  # [L]
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# [E] required fields per expression type (foundation-sdk expr TypeMath ... TypeSql), enums.
EXPR_REQUIRED = {
    "math": {"expression"},
    "reduce": {"expression", "reducer"},
    "resample": {"expression", "window", "downsampler", "upsampler"},
    "classic_conditions": {"conditions"},
    "threshold": {"expression", "conditions"},
    "sql": {"expression"},
}
REDUCERS = {"sum", "mean", "min", "max", "count", "last", "median"}
REDUCE_MODES = {"dropNN", "replaceNN", ""}
THRESHOLD_EVALUATORS = {"gt", "lt", "eq", "ne", "gte", "lte", "within_range", "outside_range",
                        "within_range_included", "outside_range_included"}


def prom_seconds(value):
    """Seconds of a Prometheus duration string, or None when it is not one."""
    if not isinstance(value, str) or value == "":
        return None
    if value == "0":
        return 0.0
    m = PROM_DURATION_RE.match(value)
    if not m or not any(m.groups()):
        return None
    y, w, d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return ((((y * 365 + w * 7 + d) * 24 + h) * 60 + mi) * 60 + s) + ms / 1000


class Checker:
    def __init__(self):
        self.problems: list[str] = []

    def err(self, file, where, msg):
        self.problems.append(f"{file}: {where}: {msg}")

    def keys(self, file, where, obj, allowed, src):
        if not isinstance(obj, dict):
            self.err(file, where, f"must be a mapping, got {type(obj).__name__}")
            return False
        for k in obj:
            if k not in allowed:
                self.err(file, where, f"unknown key {k!r} (Grafana ignores it silently; known: {', '.join(sorted(allowed))}) {src}")
        return True

    def no_env(self, file, where, value, braced_only=False):
        """[V] Grafana expands environment variables in provisioned strings."""
        if not isinstance(value, str):
            return
        text = value.replace("$$", "")
        m = (BRACED_VAR_RE if braced_only else ENV_VAR_RE).search(text)
        if m:
            self.err(file, where, f"{m.group(0)!r} is expanded from the environment when Grafana loads the file "
                                  f"(write $$ for a literal $) [V]")

    def string_map(self, file, where, obj, what, label_names=False):
        if obj is None:
            return
        if not isinstance(obj, dict):
            self.err(file, where, f"{what} must be a map of strings [R]")
            return
        for k, v in obj.items():
            if not isinstance(k, str) or not isinstance(v, str):
                self.err(file, f"{where}.{k}", f"{what} keys and values must be strings, got {type(v).__name__} [R]")
            if label_names and isinstance(k, str) and not LABEL_NAME_RE.match(k):
                self.err(file, f"{where}.{k}", f"{what} name is not a valid label name")
            self.no_env(file, f"{where}.{k}", v, braced_only=not label_names)
            if isinstance(v, str) and v.count("{{") != v.count("}}"):
                self.err(file, f"{where}.{k}", f"unbalanced {{{{ }}}} in the template")

    def duration(self, file, where, value, required=False, src="[R]"):
        if value is None or value == "":
            if required:
                self.err(file, where, f"missing (a Prometheus duration such as 1m) {src}")
            return None
        secs = prom_seconds(value)
        if secs is None:
            self.err(file, where, f"{value!r} is not a Prometheus duration (e.g. 30s, 5m, 1h) {src}")
        return secs


def load(path):
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            return json.load(f)
        return yaml.safe_load(f)


def files_in(d):
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith((".yaml", ".yml", ".json")))


def check_datasources(c, paths):
    """[D] Returns {uid: type} of the provisioned data sources."""
    uids = {}
    for path in paths:
        rel = os.path.relpath(path)
        doc = load(path) or {}
        if doc.get("apiVersion") != 1:
            c.err(rel, "apiVersion", f"must be 1, got {doc.get('apiVersion')!r} [D]")
        defaults = {}
        for i, ds in enumerate(doc.get("datasources") or []):
            where = f"datasources[{i}]"
            for k in ("name", "type"):
                if not ds.get(k):
                    c.err(rel, where, f"{k} is required [D]")
            uid = ds.get("uid")
            if uid is None:
                c.err(rel, where, "no uid: alert rules cannot name it by datasourceUid (set uid) [D]")
                continue
            uid = str(uid)
            if len(uid) > 40 or not UID_RE.match(uid):
                c.err(rel, f"{where}.uid", f"{uid!r}: at most 40 of [a-zA-Z0-9-_] [U]")
            if uid in uids:
                c.err(rel, f"{where}.uid", f"duplicate data source uid {uid!r}")
            uids[uid] = ds.get("type")
            if ds.get("isDefault"):
                org = ds.get("orgId", 1)
                if org in defaults:
                    c.err(rel, where, f"second isDefault data source in org {org} (first: {defaults[org]})")
                defaults[org] = ds.get("name")
    return uids


def expr_refs(model):
    """refIds an expression model reads."""
    t = model.get("type")
    refs = set()
    if t == "math":
        refs |= set(re.findall(r"\$\{?([A-Za-z0-9_]+)\}?", str(model.get("expression", ""))))
    elif t in ("reduce", "resample", "threshold"):
        e = str(model.get("expression", "")).strip()
        refs.add(e[1:] if e.startswith("$") else e)
    elif t == "classic_conditions":
        for cond in model.get("conditions") or []:
            for p in ((cond or {}).get("query") or {}).get("params") or []:
                refs.add(str(p))
    return {r for r in refs if r}


def check_expr(c, rel, where, model, refids, own):
    """[E]"""
    t = model.get("type")
    if t not in EXPR_REQUIRED:
        c.err(rel, f"{where}.type", f"{t!r} is not an expression type ({', '.join(sorted(EXPR_REQUIRED))}) [E]")
        return
    for k in sorted(EXPR_REQUIRED[t]):
        if model.get(k) in (None, "", []):
            c.err(rel, where, f"{t} expression needs {k!r} [E]")
    if t == "reduce":
        if model.get("reducer") not in REDUCERS:
            c.err(rel, f"{where}.reducer", f"{model.get('reducer')!r} not one of {sorted(REDUCERS)} [E]")
        mode = (model.get("settings") or {}).get("mode", "")
        if mode not in REDUCE_MODES:
            c.err(rel, f"{where}.settings.mode", f"{mode!r} not one of dropNN, replaceNN [E]")
        if mode == "replaceNN" and not isinstance((model.get("settings") or {}).get("replaceWithValue"), (int, float)):
            c.err(rel, f"{where}.settings", "replaceNN needs a numeric replaceWithValue [E]")
    if t == "threshold":
        for j, cond in enumerate(model.get("conditions") or []):
            ev = (cond or {}).get("evaluator") or {}
            if ev.get("type") not in THRESHOLD_EVALUATORS:
                c.err(rel, f"{where}.conditions[{j}].evaluator.type", f"{ev.get('type')!r} not one of {sorted(THRESHOLD_EVALUATORS)} [E]")
            params = ev.get("params")
            need = 2 if "range" in str(ev.get("type")) else 1
            if not isinstance(params, list) or len(params) < need or not all(isinstance(p, (int, float)) for p in params):
                c.err(rel, f"{where}.conditions[{j}].evaluator.params", f"needs {need} number(s), got {params!r} [E]")
    for r in sorted(expr_refs(model)):
        if r == own:
            c.err(rel, f"{where}.expression", f"expression refers to itself ({r!r}) [E]")
        elif r not in refids:
            c.err(rel, f"{where}.expression", f"refers to refId {r!r}, which the rule does not have ({', '.join(sorted(refids))}) [E]")


def check_cycles(c, rel, where, models):
    """[E] Expressions must form a DAG."""
    graph = {ref: (expr_refs(m) if m.get("_is_expr") else set()) for ref, m in models.items()}
    state = {}

    def visit(n, stack):
        if state.get(n) == 1:
            c.err(rel, where, f"expression cycle: {' -> '.join(stack + [n])} [E]")
            return
        if state.get(n) == 2:
            return
        state[n] = 1
        for m in graph.get(n, ()):
            if m in graph:
                visit(m, stack + [n])
        state[n] = 2

    for n in graph:
        visit(n, [])


def check_alerting(c, paths, ds_uids, models_out):
    seen_uid = {}
    seen_title = {}
    receivers = set()
    policy_receivers = []
    notif_receivers = []
    for path in paths:
        rel = os.path.relpath(path)
        doc = load(path)
        if doc is None:
            continue
        if not c.keys(rel, "(top level)", doc, FILE_KEYS, "[F]"):
            continue
        if doc.get("apiVersion") != 1:
            c.err(rel, "apiVersion", f"must be 1, got {doc.get('apiVersion')!r} [F]")
        for i, cp in enumerate(doc.get("contactPoints") or []):
            where = f"contactPoints[{i}]"
            if not c.keys(rel, where, cp, CONTACT_POINT_KEYS, "[P]"):
                continue
            if not str(cp.get("name") or "").strip():
                c.err(rel, where, "no name is set [P]")
            receivers.add(cp.get("name"))
            for j, r in enumerate(cp.get("receivers") or []):
                w = f"{where}.receivers[{j}]"
                if c.keys(rel, w, r, RECEIVER_KEYS, "[P]"):
                    for k in ("uid", "type", "settings"):
                        if not r.get(k):
                            c.err(rel, w, f"no {k} is set [P]")
        for i, pol in enumerate(doc.get("policies") or []):
            where = f"policies[{i}]"

            def walk_route(route, w, root):
                if not c.keys(rel, w, route, ROUTE_KEYS | ({"orgId"} if root else set()), "[P]"):
                    return
                if root and not route.get("receiver"):
                    c.err(rel, w, "the root policy needs a receiver [P]")
                if route.get("receiver"):
                    policy_receivers.append((w, route["receiver"]))
                for k in ("group_wait", "group_interval", "repeat_interval"):
                    c.duration(rel, f"{w}.{k}", route.get(k), src="[P]")
                for j, sub in enumerate(route.get("routes") or []):
                    walk_route(sub, f"{w}.routes[{j}]", False)

            walk_route(pol, where, True)
        for i, dr in enumerate(doc.get("deleteRules") or []):
            c.keys(rel, f"deleteRules[{i}]", dr, DELETE_RULE_KEYS, "[F]")

        for gi, g in enumerate(doc.get("groups") or []):
            gw = f"groups[{gi}]"
            if not c.keys(rel, gw, g, GROUP_KEYS, "[G]"):
                continue
            gname = g.get("name")
            gw = f"groups[{gi}] ({gname})"
            org = g.get("orgId", 1) or 1
            if not str(gname or "").strip():
                c.err(rel, gw, "rule group has no name set [G]")
            folder = g.get("folder")
            if not str(folder or "").strip():
                c.err(rel, gw, "rule group has no folder set [G]")
            if len(str(gname or "")) > MAX_TITLE:
                c.err(rel, f"{gw}.name", f"rule group name longer than {MAX_TITLE} characters [L]")
            for k in ("name", "folder", "interval"):
                c.no_env(rel, f"{gw}.{k}", g.get(k))
            iv = c.duration(rel, f"{gw}.interval", g.get("interval"), required=True, src="[G]")
            if iv is not None and (iv <= 0 or iv % BASE_INTERVAL_S):
                c.err(rel, f"{gw}.interval", f"{g.get('interval')!r} must be a positive multiple of {BASE_INTERVAL_S}s [I]")
            rules = g.get("rules") or []
            if not rules:
                c.err(rel, gw, "a rule group needs at least one rule [G]")
            for ri, r in enumerate(rules):
                rw = f"{gw}.rules[{ri}]"
                if not c.keys(rel, rw, r, RULE_KEYS, "[R]"):
                    continue
                title = r.get("title")
                rw = f"{gw}.rules[{ri}] ({r.get('uid')})"
                if not title:
                    c.err(rel, rw, "rule has no title set [R]")
                elif len(str(title)) > MAX_TITLE:
                    c.err(rel, f"{rw}.title", f"title longer than {MAX_TITLE} characters [L]")
                for k in ("uid", "title", "condition", "for", "keepFiringFor", "noDataState", "execErrState", "dashboardUid"):
                    c.no_env(rel, f"{rw}.{k}", r.get(k))
                uid = r.get("uid")
                if uid is None or str(uid) == "":
                    c.err(rel, rw, "no UID set [R]")
                else:
                    uid = str(uid)
                    if len(uid) > 40:
                        c.err(rel, f"{rw}.uid", f"{uid!r} is {len(uid)} characters, at most 40 [U]")
                    if not UID_RE.match(uid):
                        c.err(rel, f"{rw}.uid", f"{uid!r}: only letters, numbers, '-' and '_' [U]")
                    if (org, uid) in seen_uid:
                        c.err(rel, f"{rw}.uid", f"duplicate rule uid in org {org} (also {seen_uid[(org, uid)]}) [uniq]")
                    seen_uid[(org, uid)] = f"{rel} {rw}"
                if title:
                    key = (org, folder, title)
                    if key in seen_title:
                        c.err(rel, f"{rw}.title", f"duplicate title {title!r} in folder {folder!r} (also {seen_title[key]}) [uniq]")
                    seen_title[key] = f"{rel} {rw}"
                record = r.get("record")
                if record is not None:
                    if c.keys(rel, f"{rw}.record", record, RECORD_KEYS, "[R]"):
                        for k in ("metric", "from"):
                            if not record.get(k):
                                c.err(rel, f"{rw}.record", f"{k} is required for a recording rule [R]")
                elif not r.get("condition"):
                    c.err(rel, rw, "no condition set [R]")
                nd = r.get("noDataState")
                if nd not in (None, "") and nd not in NO_DATA_STATES:
                    c.err(rel, f"{rw}.noDataState", f"{nd!r} not one of {sorted(NO_DATA_STATES)} [S]")
                ee = r.get("execErrState")
                if ee not in (None, "") and ee not in EXEC_ERR_STATES:
                    c.err(rel, f"{rw}.execErrState", f"{ee!r} not one of {sorted(EXEC_ERR_STATES)} [S]")
                c.duration(rel, f"{rw}.for", r.get("for"))
                c.duration(rel, f"{rw}.keepFiringFor", r.get("keepFiringFor"))
                ms = r.get("missing_series_evals_to_resolve")
                if ms is not None and (not isinstance(ms, int) or ms < 0):
                    c.err(rel, f"{rw}.missing_series_evals_to_resolve", "must be an integer >= 0 [R]")
                if "isPaused" in r and not isinstance(r["isPaused"], bool):
                    c.err(rel, f"{rw}.isPaused", "must be true or false [R]")
                if "panelId" in r and not isinstance(r["panelId"], int):
                    c.err(rel, f"{rw}.panelId", "must be an integer [R]")
                c.string_map(rel, f"{rw}.annotations", r.get("annotations"), "annotation")
                c.string_map(rel, f"{rw}.labels", r.get("labels"), "label", label_names=True)
                ns = r.get("notification_settings")
                if ns is not None and c.keys(rel, f"{rw}.notification_settings", ns, NOTIF_KEYS, "[N]"):
                    if not ns.get("receiver"):
                        c.err(rel, f"{rw}.notification_settings", "receiver must not be empty [N]")
                    else:
                        notif_receivers.append((rel, f"{rw}.notification_settings.receiver", ns["receiver"]))
                    for k in ("group_wait", "group_interval", "repeat_interval"):
                        c.duration(rel, f"{rw}.notification_settings.{k}", ns.get(k), src="[N]")
                    for k in ("group_by", "mute_time_intervals", "active_time_intervals"):
                        if k in ns and not (isinstance(ns[k], list) and all(isinstance(x, str) for x in ns[k])):
                            c.err(rel, f"{rw}.notification_settings.{k}", "must be a list of strings [N]")

                data = r.get("data") or []
                if not data:
                    c.err(rel, rw, "no data set [R]")
                refids = {}
                for qi, q in enumerate(data):
                    qw = f"{rw}.data[{qi}]"
                    if not c.keys(rel, qw, q, QUERY_KEYS, "[Q]"):
                        continue
                    ref = q.get("refId")
                    if not ref:
                        c.err(rel, qw, "refId is required [Q]")
                        continue
                    qw = f"{rw}.data[{qi}] ({ref})"
                    if ref in refids:
                        c.err(rel, f"{qw}.refId", f"duplicate refId {ref!r} [Q]")
                    model = q.get("model")
                    if not isinstance(model, dict):
                        c.err(rel, f"{qw}.model", "model is required (the query or expression) [Q]")
                        model = {}
                    dsu = q.get("datasourceUid")
                    is_expr = dsu == EXPR_UID
                    refids[ref] = dict(model, _is_expr=is_expr)
                    if not dsu:
                        c.err(rel, qw, "datasourceUid is required [Q]")
                    elif not is_expr and ds_uids is not None and dsu not in ds_uids:
                        c.err(rel, f"{qw}.datasourceUid", f"{dsu!r} is not a provisioned data source uid ({', '.join(sorted(ds_uids)) or 'none'}) [D]")
                    if model.get("refId") not in (None, ref):
                        c.err(rel, f"{qw}.model.refId", f"{model.get('refId')!r} differs from the query's refId {ref!r} [Q]")
                    mds = model.get("datasource")
                    if isinstance(mds, dict):
                        if mds.get("uid") not in (None, dsu):
                            c.err(rel, f"{qw}.model.datasource.uid", f"{mds.get('uid')!r} differs from datasourceUid {dsu!r} [Q]")
                        want_type = EXPR_UID if is_expr else (ds_uids or {}).get(dsu)
                        if want_type and mds.get("type") not in (None, want_type):
                            c.err(rel, f"{qw}.model.datasource.type", f"{mds.get('type')!r}, but data source {dsu!r} is of type {want_type!r} [D]")
                    rtr = q.get("relativeTimeRange")
                    if is_expr:
                        check_expr(c, rel, f"{qw}.model", model, set(refids) | {d.get('refId') for d in data if isinstance(d, dict)}, ref)
                    else:
                        if not isinstance(rtr, dict):
                            c.err(rel, qw, "a data source query needs relativeTimeRange {from, to} in seconds [T]")
                        else:
                            bad = [k for k in rtr if k not in ("from", "to")]
                            if bad:
                                c.err(rel, f"{qw}.relativeTimeRange", f"unknown key(s) {bad} [T]")
                            f, t = rtr.get("from"), rtr.get("to", 0)
                            if not isinstance(f, int) or not isinstance(t, int) or f < 0 or t < 0:
                                c.err(rel, f"{qw}.relativeTimeRange", f"from/to must be non-negative integers (seconds), got {rtr!r} [T]")
                            elif f <= t:
                                c.err(rel, f"{qw}.relativeTimeRange", f"from ({f}) must be greater than to ({t}) [T]")
                        if (ds_uids or {}).get(dsu) == "prometheus" and not model.get("expr"):
                            c.err(rel, f"{qw}.model", "a Prometheus query needs expr")
                    kind = "expr" if is_expr else ("prometheus" if (ds_uids or {}).get(dsu, "prometheus") == "prometheus" else None)
                    if kind:
                        models_out.append((f"{rel}: {qw}.model", kind, model))
                cond = r.get("condition")
                if cond and data and cond not in refids:
                    c.err(rel, f"{rw}.condition", f"{cond!r} is not a refId of the rule ({', '.join(refids)}) [R]")
                check_cycles(c, rel, rw, refids)
    for rel, where, recv in notif_receivers:
        if receivers and recv not in receivers:
            c.err(rel, where, f"receiver {recv!r} is not a provisioned contact point ({', '.join(sorted(receivers))}) [N]")
    for where, recv in policy_receivers:
        if receivers and recv not in receivers:
            c.err("policies", where, f"receiver {recv!r} is not a provisioned contact point [P]")


def tsc_models(models, negative):
    """[E] Type-checks every query model against the published types (strict.ts AlertQueryModel).

    Returns a list of problems. With `negative`, also proves that a bogus key in a model copy is an
    error (one per kind), so that the check cannot pass by checking nothing."""
    build = os.path.join(HERE, "build")
    os.makedirs(build, exist_ok=True)
    lines = ["// GENERATED by check_alerting.py: do not edit.", "import type { AlertQueryModel } from '../strict';", ""]
    where_of = {}
    cases = list(models)
    if negative:
        for kind in ("prometheus", "expr"):
            first = next((m for m in models if m[1] == kind), None)
            if first:
                bad = copy.deepcopy(first[2])
                bad["zzBogusKey"] = 1
                cases.append((f"NEGATIVE ({kind} model with a bogus key)", kind, bad))
    for i, (where, kind, model) in enumerate(cases):
        clean = {k: v for k, v in model.items() if k != "_is_expr"}
        lines.append(f"export const m{i} = {json.dumps(clean)} satisfies AlertQueryModel<{json.dumps(kind)}>;")
        where_of[len(lines)] = where
    path = os.path.join(build, "alert-models.gen.ts")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    tsc = os.path.join(HERE, "node_modules", "typescript", "bin", "tsc")
    if not os.path.exists(tsc):
        return [f"{tsc} missing: run `npm ci --no-audit --no-fund` in {os.path.relpath(HERE)} (or pass --no-tsc)"]
    out = subprocess.run(["node", tsc, "--noEmit", "--strict", "-p", os.path.join(HERE, "tsconfig.alerting.json")],
                         cwd=HERE, capture_output=True, text=True, timeout=240)
    errs = {}
    for line in (out.stdout + out.stderr).splitlines():
        m = re.match(r"^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$", line)
        if m and os.path.basename(m.group(1)) == "alert-models.gen.ts":
            errs.setdefault(int(m.group(2)), []).append(f"{m.group(4)} {m.group(5)}")
        elif m or (line.strip() and not line.startswith(" ")):
            errs.setdefault(0, []).append(line)
    problems = []
    for ln, es in sorted(errs.items()):
        where = where_of.get(ln, f"(line {ln})")
        if not where.startswith("NEGATIVE"):
            problems += [f"{where}: not a valid model per @grafana/grafana-foundation-sdk: {e[:400]}" for e in es]
    for ln, where in where_of.items():
        if where.startswith("NEGATIVE"):
            if ln in errs:
                print(f"  ok  negative: {where} -> {errs[ln][0][:120]}")
            else:
                problems.append(f"{where}: tsc did not reject it: the model type check checks nothing")
    return problems


def negative_selftest(provisioning, ds_uids):
    """Each mutation of the shipped alerting file must produce a problem mentioning its marker."""
    paths = files_in(os.path.join(provisioning, "alerting"))
    if not paths:
        return []
    base = load(paths[0])
    rule0 = lambda d: d["groups"][0]["rules"][0]  # noqa: E731
    muts = [
        ("unknown rule key", lambda d: rule0(d).__setitem__("noDataSate", "OK"), "noDataSate"),
        ("unknown group key", lambda d: d["groups"][0].__setitem__("intervall", "1m"), "intervall"),
        ("uid over 40 characters", lambda d: rule0(d).__setitem__("uid", "x" * 41), "at most 40"),
        ("uid with a dot", lambda d: rule0(d).__setitem__("uid", "a.b"), "only letters"),
        ("condition not a refId", lambda d: rule0(d).__setitem__("condition", "Z"), "'Z' is not a refId"),
        ("expression to a missing refId", lambda d: [q["model"].__setitem__("expression", "Q") for q in rule0(d)["data"] if q.get("datasourceUid") == EXPR_UID][:1], "refers to refId 'Q'"),
        ("unknown noDataState", lambda d: rule0(d).__setitem__("noDataState", "Ok"), "'Ok' not one of"),
        ("unknown execErrState", lambda d: rule0(d).__setitem__("execErrState", "Err"), "'Err' not one of"),
        ("bad for", lambda d: rule0(d).__setitem__("for", "5 min"), "not a Prometheus duration"),
        ("unknown datasourceUid", lambda d: rule0(d)["data"][0].__setitem__("datasourceUid", "nope"), "'nope' is not a provisioned"),
        ("duplicate uid", lambda d: d["groups"][0]["rules"].append(copy.deepcopy(rule0(d)) | {"title": "other"}), "duplicate rule uid"),
        ("duplicate title in folder", lambda d: d["groups"][0]["rules"].append(copy.deepcopy(rule0(d)) | {"uid": "other-uid"}), "duplicate title"),
        ("non-string annotation", lambda d: rule0(d).setdefault("annotations", {}).__setitem__("n", 1), "must be strings"),
        ("reduce without reducer", lambda d: [q["model"].pop("reducer", None) for q in rule0(d)["data"] if q.get("model", {}).get("type") == "reduce"][:1], "needs 'reducer'"),
        ("unknown expression type", lambda d: [q["model"].__setitem__("type", "magic") for q in rule0(d)["data"] if q.get("datasourceUid") == EXPR_UID][:1], "'magic' is not an expression type"),
        ("relativeTimeRange from <= to", lambda d: rule0(d)["data"][0].__setitem__("relativeTimeRange", {"from": 0, "to": 0}), "must be greater"),
        ("notification_settings without receiver", lambda d: rule0(d).__setitem__("notification_settings", {"group_by": ["x"]}), "receiver must not be empty"),
        ("group interval not a multiple of 10s", lambda d: d["groups"][0].__setitem__("interval", "15s"), "multiple of 10s"),
        ("apiVersion 2", lambda d: d.__setitem__("apiVersion", 2), "must be 1"),
        ("$ in a title", lambda d: rule0(d).__setitem__("title", "costs $HOME"), "expanded from the environment"),
        ("${} in an annotation", lambda d: rule0(d).setdefault("annotations", {}).__setitem__("runbook", "run ${CMD}"), "expanded from the environment"),
        ("$ in a label", lambda d: rule0(d).setdefault("labels", {}).__setitem__("team", "$team"), "expanded from the environment"),
        ("title over 190 characters", lambda d: rule0(d).__setitem__("title", "t" * 191), "longer than 190"),
        ("unbalanced template", lambda d: rule0(d).setdefault("annotations", {}).__setitem__("summary", "{{ $labels.x }"), "unbalanced"),
    ]
    tmp = os.path.join(HERE, "build", "negative-alerting")
    os.makedirs(os.path.join(tmp, "alerting"), exist_ok=True)
    failures = []
    for label, mutate, marker in muts:
        doc = copy.deepcopy(base)
        try:
            mutate(doc)
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            failures.append(f"NEGATIVE TEST FAILED: {label}: could not apply it to {os.path.relpath(paths[0])} ({e!r})")
            continue
        p = os.path.join(tmp, "alerting", "rules.yaml")
        with open(p, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        c = Checker()
        check_alerting(c, [p], ds_uids, [])
        hit = [x for x in c.problems if marker in x]
        if hit:
            print(f"  ok  negative: {label} -> {hit[0].split(': ', 1)[1][:110]}")
        else:
            failures.append(f"NEGATIVE TEST FAILED: {label}: no problem reported containing {marker!r} (got {c.problems[:3]})")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--provisioning", default=os.path.join(HERE, "..", "provisioning"))
    ap.add_argument("--no-tsc", action="store_true", help="skip the tsc check of query models")
    ap.add_argument("--no-negative", action="store_true", help="skip the negative self-tests")
    a = ap.parse_args()
    c = Checker()
    ds_paths = files_in(os.path.join(a.provisioning, "datasources"))
    ds_uids = check_datasources(c, ds_paths) if ds_paths else None
    al_paths = files_in(os.path.join(a.provisioning, "alerting"))
    models = []
    check_alerting(c, al_paths, ds_uids, models)
    if not a.no_tsc and models:
        c.problems += tsc_models(models, not a.no_negative)
    nrules = sum(len(g.get("rules") or []) for p in al_paths for g in (load(p) or {}).get("groups") or [])
    if c.problems:
        for p in c.problems:
            print(p, file=sys.stderr)
        print(f"check_alerting.py: {len(c.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"  ok  {len(al_paths)} alerting file(s), {nrules} rules, {len(models)} query models; "
          f"{len(ds_uids or {})} provisioned data source uid(s): {', '.join(sorted(ds_uids or {}))}")
    if not a.no_negative:
        fails = negative_selftest(a.provisioning, ds_uids)
        for f in fails:
            print(f, file=sys.stderr)
        if fails:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
