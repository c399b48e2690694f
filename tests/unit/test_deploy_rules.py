"""The operator kit in ``deploy/``: the example Prometheus config, the alert rules and the
Grafana dashboard.

Every query in them may name only the series Cortex exports (and ``up``), with the labels
those series carry and, where a label has a fixed set of values, only those values. A small
PromQL lexer finds the metric names, label matchers, functions and grouping labels; it is
itself tested on broken queries below. When ``promql-parser`` is installed, every query is
also parsed by a real PromQL parser (promql-parser, a dev dependency).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from cortex_core.messages import DEAD_LETTER_STATUSES, TERMINAL_STATUSES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
ALERTS = DEPLOY / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "cortex-dashboard.json"

# -- what Cortex exports ---------------------------------------------------------------------

SCRAPE_JOBS = frozenset(
    {"cortex-gateway", "cortex-scheduler", "cortex-safety-kernel", "cortex-worker"}
)
TARGET_LABELS = frozenset({"job", "instance"})
"""Prometheus adds these to every series it scrapes."""

COUNTERS_AND_GAUGES: dict[str, frozenset[str]] = {
    "cortex_jobs_received_total": frozenset({"topic"}),
    "cortex_jobs_dispatched_total": frozenset({"topic"}),
    "cortex_jobs_completed_total": frozenset({"topic", "status"}),
    "cortex_safety_denied_total": frozenset({"topic"}),
    "cortex_safety_decisions_total": frozenset({"rule_id", "decision"}),
    "cortex_worker_executions_total": frozenset({"pool", "status"}),
    "cortex_pool_workers": frozenset({"pool"}),
    "cortex_pool_slots": frozenset({"pool"}),
    "cortex_pool_busy_slots": frozenset({"pool"}),
    "cortex_pool_utilization": frozenset({"pool"}),
    "cortex_bus_events_total": frozenset({"event"}),
    "cortex_packets_dropped_total": frozenset({"reason"}),
    "cortex_http_requests_total": frozenset({"method", "route", "status"}),
    "target_info": frozenset(),
    "up": frozenset(),
}
HISTOGRAMS: dict[str, frozenset[str]] = {
    "cortex_job_queue_wait_seconds": frozenset({"topic"}),
    "cortex_job_run_seconds": frozenset({"topic"}),
    "cortex_job_end_to_end_seconds": frozenset({"topic", "status"}),
    "cortex_worker_execution_seconds": frozenset({"pool", "status"}),
    "cortex_http_request_duration_seconds": frozenset({"method", "route", "status"}),
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _series() -> dict[str, frozenset[str]]:
    """Every series name a query may select, with its labels (a histogram's base name is not
    a series: only its ``_bucket``, ``_sum`` and ``_count`` are)."""
    series = dict(COUNTERS_AND_GAUGES)
    for name, labels in HISTOGRAMS.items():
        series[f"{name}_bucket"] = labels | {"le"}
        series[f"{name}_sum"] = labels
        series[f"{name}_count"] = labels
    return series


SERIES = _series()

STATUSES = frozenset(str(s) for s in TERMINAL_STATUSES)
DEAD_LETTER = frozenset(str(s) for s in DEAD_LETTER_STATUSES)
LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("cortex_jobs_completed_total", "status"): STATUSES,
    ("cortex_job_end_to_end_seconds", "status"): STATUSES,
    ("cortex_worker_executions_total", "status"): STATUSES,
    ("cortex_worker_execution_seconds", "status"): STATUSES,
    ("cortex_safety_decisions_total", "decision"): frozenset({"ALLOW", "DENY", "REQUIRE_APPROVAL"}),
    ("cortex_bus_events_total", "event"): frozenset(
        {"disconnected", "reconnected", "error", "closed"}  # the connection
        | {"consumer_recreated", "fetch_error", "ack_failed"}  # JetStream consumers
    ),
    ("up", "job"): SCRAPE_JOBS,
}
"""Labels with a closed set of values, by series (a histogram under its base name)."""


def _base_name(series: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in HISTOGRAMS:
            return series.removesuffix(suffix)
    return series


# -- a small PromQL lexer --------------------------------------------------------------------

AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
FUNCTIONS: frozenset[str] = frozenset().union(
    # over a range
    {"rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets"},
    {"avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time"},
    {"quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time"},
    {"present_over_time", "absent_over_time", "mad_over_time", "predict_linear"},
    {"holt_winters", "double_exponential_smoothing"},
    # histograms
    {"histogram_quantile", "histogram_avg", "histogram_count", "histogram_sum"},
    {"histogram_fraction", "histogram_stddev", "histogram_stdvar"},
    # labels, types, time, sorting
    {"label_replace", "label_join", "absent", "scalar", "vector", "timestamp", "time"},
    {"sort", "sort_desc", "sort_by_label", "sort_by_label_desc"},
    {"minute", "hour", "day_of_week", "day_of_month", "day_of_year", "days_in_month"},
    {"month", "year"},
    # arithmetic
    {"abs", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn", "pi"},
    {"clamp", "clamp_min", "clamp_max", "deg", "rad", "sin", "cos", "tan", "asin", "acos"},
    {"atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh"},
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\[\]]*\])
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(),{}])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Query:
    """What a PromQL expression names."""

    selectors: list[Selector] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)
    grouping: set[str] = field(default_factory=set)
    introduced: set[str] = field(default_factory=set)  # label_replace/label_join targets
    errors: list[str] = field(default_factory=list)

    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def lex(expr: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos : pos + 20]!r} at {pos}")
        assert m.lastgroup is not None
        if m.lastgroup not in ("space", "comment"):
            tokens.append(Token(m.lastgroup, m.group()))
        pos = m.end()
    return tokens


def _unquote(text: str) -> str:
    return text[1:-1] if text.startswith("`") else str(ast.literal_eval(text))


def analyse(expr: str) -> Query:
    """Read a PromQL expression into the metrics it selects (with their matchers), the
    functions it calls, and the labels it groups by."""
    q = Query()
    try:
        tokens = lex(expr)
    except ValueError as exc:
        q.errors.append(str(exc))
        return q
    closing = {"(": ")", "{": "}"}
    open_brackets: list[str] = []
    for t in (t for t in tokens if t.kind == "op"):
        if t.text in closing:
            open_brackets.append(closing[t.text])
        elif t.text in (")", "}") and (not open_brackets or open_brackets.pop() != t.text):
            q.errors.append(f"unbalanced brackets at {t.text!r}")
            return q
    if open_brackets:
        q.errors.append("unbalanced brackets")
        return q

    def at(i: int) -> Token:
        return tokens[i] if i < len(tokens) else Token("end", "")

    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "op" and t.text == "{":
            q.errors.append("a selector without a metric name ({...})")
            return q
        if t.kind != "ident":
            i += 1
            continue
        if t.text in GROUPING:
            i += 1
            if at(i).text == "(":  # a label list (optional only after group_left/_right)
                i += 1
                while at(i).kind != "end" and at(i).text != ")":
                    if at(i).kind == "ident":
                        q.grouping.add(at(i).text)
                    elif at(i).text != ",":
                        q.errors.append(f"{at(i).text!r} in the label list of {t.text}")
                    i += 1
                i += 1
            continue
        if t.text in KEYWORDS:
            i += 1
            continue
        if t.text in AGGREGATIONS or at(i + 1).text == "(":
            q.functions.add(t.text)
            if t.text in ("label_replace", "label_join"):
                target = _first_argument_after_comma(tokens, i + 1)
                if target is not None:
                    q.introduced.add(target)
            i += 1
            continue
        selector = Selector(t.text)
        i += 1
        if at(i).text == "{":
            i += 1
            while at(i).text != "}":
                label, op, value = at(i), at(i + 1), at(i + 2)
                if label.kind != "ident" or op.text not in MATCH_OPS or value.kind != "string":
                    q.errors.append(f"a malformed matcher in {t.text}{{...}}")
                    return q
                selector.matchers.append((label.text, op.text, _unquote(value.text)))
                i += 3
                if at(i).text == ",":
                    i += 1
            i += 1
        q.selectors.append(selector)
    return q


def _first_argument_after_comma(tokens: list[Token], open_paren: int) -> str | None:
    """The string that is a call's second argument (label_replace's destination label)."""
    depth = 0
    for j in range(open_paren, len(tokens)):
        text = tokens[j].text
        if text in ("(", "{"):
            depth += 1
        elif text in (")", "}"):
            depth -= 1
            if depth == 0:
                return None
        elif text == "," and depth == 1:
            nxt = tokens[j + 1] if j + 1 < len(tokens) else None
            return _unquote(nxt.text) if nxt is not None and nxt.kind == "string" else None
    return None


_ALTERNATION = re.compile(r"[\w.-]+(?:\|[\w.-]+)*")


def problems(expr: str) -> list[str]:
    """What is wrong with a query, measured against the series Cortex exports."""
    q = analyse(expr)
    found = list(q.errors)
    if found:
        return found
    if not q.selectors:
        found.append("selects no series")
    labels_in_play = set(TARGET_LABELS) | q.introduced
    for s in q.selectors:
        if s.metric not in SERIES:
            found.append(f"unknown series {s.metric}")
            continue
        labels = SERIES[s.metric] | TARGET_LABELS
        labels_in_play |= labels
        for label, op, value in s.matchers:
            if label not in labels:
                found.append(f"{s.metric} has no label {label!r}")
                continue
            allowed = LABEL_VALUES.get((_base_name(s.metric), label))
            if allowed is not None and _ALTERNATION.fullmatch(value):
                for v in value.split("|"):
                    if v not in allowed:
                        found.append(f"{s.metric}{{{label}{op}...}}: {v!r} is never exported")
    for fn in sorted(q.functions - FUNCTIONS - AGGREGATIONS):
        found.append(f"unknown function {fn}()")
    for label in sorted(q.grouping - labels_in_play):
        found.append(f"groups by {label!r}, which no selected series has")
    return found


# -- the files -------------------------------------------------------------------------------


@cache
def _alert_file() -> dict[str, Any]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in _alert_file()["groups"] for r in g["rules"]}


@cache
def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, including the ones inside (collapsed) rows."""
    for panel in _dashboard()["panels"] if panels is None else panels:
        yield panel
        yield from _panels(panel.get("panels", []))


GRAFANA_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def _dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (f"panel {p['id']} {p.get('title', '')!r} target {t.get('refId')}", t.get("expr", ""))
        for p in _panels()
        for t in p.get("targets", [])
    ]


def _alert_exprs() -> list[tuple[str, str]]:
    return [(f"alert {name}", rule["expr"]) for name, rule in _alerts().items()]


def _without_grafana_variables(expr: str) -> str:
    """The query as Prometheus receives it, for a sample choice of the variables."""
    return GRAFANA_VARIABLE.sub(
        lambda m: GRAFANA_BUILTINS.get(m.group(1) or m.group(2), ".*"), expr
    )


# -- the lexer and the checks, on broken queries ---------------------------------------------


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("rate(cortex_jobs_recieved_total[5m])", "unknown series cortex_jobs_recieved_total"),
        ("rate(cortex_job_run_seconds[5m])", "unknown series cortex_job_run_seconds"),
        ('cortex_jobs_received_total{topc="job.echo"}', "has no label 'topc'"),
        ('cortex_jobs_completed_total{status=~"FAILED|TIMEOUTS"}', "'TIMEOUTS' is never"),
        ('cortex_safety_decisions_total{decision="DENIED"}', "'DENIED' is never"),
        ('up{job="cortex-kernel"} == 0', "'cortex-kernel' is never"),
        ("sum by (pool) (rate(cortex_jobs_received_total[5m]))", "groups by 'pool'"),
        ("histogram_quantil(0.99, cortex_job_run_seconds_bucket)", "unknown function"),
        ('{__name__="cortex_pool_workers"}', "without a metric name"),
        ("sum(rate(cortex_jobs_received_total[5m])", "unbalanced"),
        ("sum by (topic} (cortex_jobs_received_total)", "unbalanced"),
        ("rate(cortex_jobs_received_total[5m]) > $threshold", "cannot read"),
        ("vector(1)", "selects no series"),
    ],
)
def test_the_checks_catch_a_broken_query(expr: str, complaint: str) -> None:
    found = problems(expr)
    assert any(complaint in p for p in found), found


def test_the_lexer_reads_what_a_query_names() -> None:
    q = analyse(
        'label_replace(sum by (job, instance) (increase(cortex_safety_decisions_total{rule_id="x",'
        ' decision!~"ALLOW"}[5m] offset 1m)) > 0, "signal", "fail", "", "")'
        " or on (pool) group_left max without (le) (cortex_pool_workers)"
    )
    assert q.errors == []
    assert [(s.metric, s.matchers) for s in q.selectors] == [
        ("cortex_safety_decisions_total", [("rule_id", "=", "x"), ("decision", "!~", "ALLOW")]),
        ("cortex_pool_workers", []),
    ]
    assert q.functions == {"label_replace", "sum", "increase", "max"}
    assert q.grouping == {"job", "instance", "pool", "le"}
    assert q.introduced == {"signal"}


# -- prometheus.yml --------------------------------------------------------------------------


def test_the_scrape_config_names_the_four_jobs_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert set(jobs) == SCRAPE_JOBS
    assert len(jobs) == len(config["scrape_configs"])
    every_series_label = set().union(*SERIES.values())
    for name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == "/metrics", name
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets, name
        assert all(re.fullmatch(r"[\w.-]+:\d+", t) for t in targets), targets
        for sc in job["static_configs"]:
            # a target label a series also has would be renamed exported_<label>
            assert not set(sc.get("labels", {})) & every_series_label, name
    rule_files = config["rule_files"]
    assert "alerts.yml" in rule_files
    for path in rule_files:
        assert (PROMETHEUS_CONFIG.parent / path).is_file(), path


# -- alerts.yml ------------------------------------------------------------------------------

DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "interval", "limit", "query_offset", "labels", "rules"}


def test_the_alert_file_has_the_prometheus_rule_file_structure() -> None:
    data = _alert_file()
    assert set(data) == {"groups"}
    groups = data["groups"]
    assert isinstance(groups, list)
    assert groups
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), "group names must be unique"
    alerts: list[str] = []
    for group in groups:
        assert set(group) <= GROUP_KEYS, group["name"]
        assert isinstance(group["rules"], list)
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            where = rule.get("alert", rule)
            assert set(rule) <= RULE_KEYS, where
            assert re.fullmatch(r"Cortex[A-Z][A-Za-z0-9]+", rule["alert"]), where
            alerts.append(rule["alert"])
            assert isinstance(rule["expr"], str), where
            assert rule["expr"].strip(), where
            assert isinstance(rule["for"], str), where
            assert DURATION.fullmatch(rule["for"]), where
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, where
            for key in ("summary", "description"):
                assert isinstance(rule["annotations"][key], str), (where, key)
                assert rule["annotations"][key].strip(), (where, key)
            for value in [*rule["labels"].values(), *rule["annotations"].values()]:
                assert isinstance(value, str), (where, value)
    assert len(alerts) == len(set(alerts)), "alert names must be unique"


def test_the_required_alerts_exist_and_watch_what_they_are_named_for() -> None:
    alerts = _alerts()
    required = {
        "CortexPoolHasNoWorkers",
        "CortexSafetyKernelDown",
        "CortexDeadLetterQueueGrowing",
        "CortexHighP99Latency",
    }
    assert required <= set(alerts)

    no_workers = analyse(alerts["CortexPoolHasNoWorkers"]["expr"])
    assert no_workers.metrics() == {"cortex_pool_workers"}
    assert "pool" in no_workers.grouping

    kernel = analyse(alerts["CortexSafetyKernelDown"]["expr"])
    kernel_matchers = {(s.metric, m) for s in kernel.selectors for m in s.matchers}
    assert ("up", ("job", "=", "cortex-safety-kernel")) in kernel_matchers
    assert "absent" in kernel.functions
    assert (
        "cortex_safety_decisions_total",
        ("rule_id", "=", "kernel-unavailable"),
    ) in kernel_matchers

    # The dead-letter alert counts exactly the endings that GET /v1/dlq lists.
    dlq = analyse(alerts["CortexDeadLetterQueueGrowing"]["expr"])
    [selector] = dlq.selectors
    assert selector.metric == "cortex_jobs_completed_total"
    [(label, op, value)] = selector.matchers
    assert (label, op) == ("status", "=~")
    assert set(value.split("|")) == DEAD_LETTER

    p99 = alerts["CortexHighP99Latency"]["expr"]
    assert re.search(r"histogram_quantile\(\s*0\.99\s*,", p99)
    assert "cortex_job_end_to_end_seconds_bucket" in analyse(p99).metrics()


def test_every_scrape_job_has_an_alert_for_its_target_going_down() -> None:
    watched = {
        value
        for _, expr in _alert_exprs()
        for s in analyse(expr).selectors
        if s.metric == "up"
        for label, op, value in s.matchers
        if (label, op) == ("job", "=")
    }
    assert watched == SCRAPE_JOBS


def test_alert_annotations_use_only_labels_the_alert_has() -> None:
    bad: list[str] = []
    for name, rule in _alerts().items():
        q = analyse(rule["expr"])
        possible = set(TARGET_LABELS) | q.introduced | q.grouping
        for s in q.selectors:
            possible |= SERIES.get(s.metric, frozenset())
        for key, text in rule["annotations"].items():
            used = set(re.findall(r"\$labels\.(\w+)", text))
            bad += [f"{name}.{key}: $labels.{label}" for label in sorted(used - possible)]
            actions = re.findall(r"\{\{-?\s*(.*?)\s*-?\}\}", text, re.DOTALL)
            if text.count("{{") != len(actions) or text.count("}}") != len(actions):
                bad.append(f"{name}.{key}: unbalanced {{{{ }}}}")
            opened = sum(1 for a in actions if re.match(r"(if|range|with)\b", a))
            if opened != sum(1 for a in actions if a == "end"):
                bad.append(f"{name}.{key}: an if/range/with without its end")
    assert bad == []


# -- the Grafana dashboard -------------------------------------------------------------------


def test_the_dashboard_is_importable_with_its_variables() -> None:
    d = _dashboard()
    assert d["title"]
    assert re.fullmatch(r"[\w-]{1,40}", d["uid"])
    assert d.get("id") is None  # Grafana assigns the id on import
    assert 36 <= d["schemaVersion"] <= 41
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for name, label in (("topic", "topic"), ("pool", "pool")):
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] == "${datasource}"
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert m, query
        assert m.group(2) == label
        assert m.group(1) in SERIES
        assert label in SERIES[m.group(1)]


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = list(_panels())
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        pos = p["gridPos"]
        x, y, w, h = (pos[k] for k in ("x", "y", "w", "h"))
        assert all(isinstance(v, int) for v in (x, y, w, h)), p["id"]
        assert w > 0, p["id"]
        assert h > 0, p["id"]
        assert x >= 0, p["id"]
        assert x + w <= 24, p["id"]
        assert y >= 0, p["id"]
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                other = cells.setdefault((cx, cy), p["id"])
                assert other == p["id"], f"panels {other} and {p['id']} overlap at {cx},{cy}"


def test_every_dashboard_panel_queries_prometheus_through_the_variable() -> None:
    for p in _panels():
        if p["type"] == "row":
            assert not p.get("targets"), p["id"]
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["id"]
        targets = p["targets"]
        assert targets, p["id"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), p["id"]
        for t in targets:
            assert isinstance(t.get("expr"), str), (p["id"], t)
            assert t["expr"].strip(), (p["id"], t)
            assert t.get("datasource", p["datasource"]) == p["datasource"], p["id"]


def test_dashboard_queries_use_only_defined_variables() -> None:
    defined = {v["name"] for v in _dashboard()["templating"]["list"]} | set(GRAFANA_BUILTINS)
    used = {
        m.group(1) or m.group(2)
        for _, expr in _dashboard_exprs()
        for m in GRAFANA_VARIABLE.finditer(expr)
    }
    assert used <= defined


def test_the_dashboard_shows_every_series_cortex_exports() -> None:
    shown = {_base_name(m) for _, expr in _dashboard_exprs() for m in analyse(expr).metrics()}
    exported = (set(COUNTERS_AND_GAUGES) - {"target_info", "up"}) | set(HISTOGRAMS)
    assert exported - shown == set()


# -- every query, against the series ---------------------------------------------------------


def test_every_query_names_only_exported_series_labels_and_values() -> None:
    exprs = _alert_exprs() + _dashboard_exprs()
    assert len(exprs) > 20
    bad = [f"{where}: {p}" for where, expr in exprs for p in problems(expr)]
    assert bad == []


def test_every_query_parses_with_a_real_promql_parser() -> None:
    bad: list[str] = []
    for where, expr in _alert_exprs() + _dashboard_exprs():
        try:
            tree = promql_parser.parse(_without_grafana_variables(expr))
        except ValueError as exc:
            bad.append(f"{where}: {exc}")
            continue
        names: set[str] = set()

        def visit(node: Any, names: set[str] = names) -> None:
            if isinstance(node, promql_parser.VectorSelector) and node.name is not None:
                names.add(node.name)

        promql_parser.walk(tree, pre_visit=visit)
        if names != analyse(expr).metrics():  # the lexer above reads the same names
            bad.append(f"{where}: the parser selects {sorted(names)}")
    assert bad == []


# -- and the series, against the exporter ----------------------------------------------------


def test_the_series_listed_here_are_the_ones_the_exporter_exposes() -> None:
    """The list at the top of this file is what the rules and the dashboard are checked
    against; here it is checked against what ``OtelMetrics`` renders on ``/metrics`` once
    each kind of fact has been recorded."""
    from cortex_adapters.telemetry.metrics import OtelMetrics
    from cortex_core.scoring import PoolLoad

    m = OtelMetrics()
    try:
        m.inc_jobs_received("job.echo")
        m.inc_jobs_dispatched("job.echo")
        m.inc_jobs_completed("job.echo", "COMPLETED")
        m.inc_safety_denied("job.echo")
        m.inc_safety_decision("deny-sys-destroy", "DENY")
        m.inc_bus_event("reconnected")
        m.inc_packets_dropped("unexpected_payload")
        m.observe_queue_wait("job.echo", 0.1)
        m.observe_run_time("job.echo", 0.1)
        m.observe_end_to_end("job.echo", "COMPLETED", 0.2)
        m.observe_execution("echo", "COMPLETED", 0.1)
        m.observe_request("GET", "/v1/jobs/{job_id}", 200, 0.01)
        m.set_pool_loads([PoolLoad(pool="echo", workers=1, slots=4, busy=1)])
        text = m.exposition().decode()
    finally:
        m.shutdown()
    exposed: dict[str, set[str]] = {}
    for line in text.splitlines():
        sample = re.match(r"(cortex_\w+)(?:\{(.*)\})?\s", line)
        if sample is not None:
            labels = set(re.findall(r'(\w+)="', sample.group(2) or ""))
            exposed.setdefault(sample.group(1), set()).update(labels)
    expected = {name: set(labels) for name, labels in SERIES.items() if name.startswith("cortex_")}
    assert exposed == expected
