#!/usr/bin/env python3
"""Writes kibana/flowline.ndjson: the Flowline data views, visualizations,
saved searches and dashboard, as Kibana 8's saved-objects import takes them.
Edit this file, run it, commit both."""
import json, os

CORE = "8.8.0"
objs = []

def data_view(id_, title, name):
    objs.append({"type": "index-pattern", "id": id_, "coreMigrationVersion": CORE,
                 "attributes": {"title": title, "name": name, "timeFieldName": "window_start"},
                 "references": []})

def source(query=""):
    return {"kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({
        "query": {"query": query, "language": "kuery"}, "filter": [],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"})}}

def ref(dv):
    return [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": dv}]

def vis(id_, title, dv, vis_state, query=""):
    attrs = {"title": title, "description": "", "uiStateJSON": "{}", "version": 1,
             "visState": json.dumps(dict(vis_state, title=title))}
    attrs.update(source(query))
    objs.append({"type": "visualization", "id": id_, "coreMigrationVersion": CORE,
                 "attributes": attrs, "references": ref(dv)})

def search(id_, title, dv, columns, sort):
    attrs = {"title": title, "description": "", "columns": columns, "sort": [sort]}
    attrs.update(source())
    objs.append({"type": "search", "id": id_, "coreMigrationVersion": CORE,
                 "attributes": attrs, "references": ref(dv)})

def date_hist(id_="2"):
    return {"id": id_, "enabled": True, "type": "date_histogram", "schema": "segment",
            "params": {"field": "window_start", "interval": "auto", "min_doc_count": 1, "extended_bounds": {}}}

def terms(field, schema, size=20, id_="3"):
    return {"id": id_, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": "desc", "orderBy": "1"}}

def metric(kind, field, id_="1"):
    return {"id": id_, "enabled": True, "type": kind, "schema": "metric", "params": {"field": field}}

def line(aggs):
    return {"type": "line", "aggs": aggs, "params": {"type": "line", "addTooltip": True, "addLegend": True,
            "legendPosition": "right", "times": [], "addTimeMarker": False}}

data_view("flowline-metrics", "flowline-metrics-*", "Flowline windows")
data_view("flowline-anomalies", "flowline-anomalies-*", "Flowline anomalies")
data_view("flowline-current", "flowline-current", "Flowline current status")

# One panel per metric and statistic: the five metrics have different units,
# so averaging them together means nothing. Each shows the 10 hosts with the
# highest value (terms ordered by the metric), and says so.
METRICS = [("cpu_util", "%"), ("mem_used_pct", "%"), ("disk_io_ops", "ops/s"),
           ("net_rx_bytes", "bytes/s"), ("http_latency_ms", "ms")]
TOP = 10
per_metric = []
for name, unit in METRICS:
    for stat, label in [("avg", "average"), ("p95", "p95")]:
        id_ = f"flowline-{stat}-{name.replace('_', '-')}"
        vis(id_, f"{name} ({unit}): {label} per window, top {TOP} hosts by value", "flowline-metrics",
            line([metric("avg", stat), date_hist(), terms("host", "group", TOP)]),
            query=f'metric : "{name}"')
        per_metric.append(id_)
vis("flowline-cpu-heatmap", "cpu_util (%) heatmap: average, host × time (50 hosts)", "flowline-metrics",
    {"type": "heatmap", "aggs": [metric("avg", "avg"), date_hist(), terms("host", "group", 50)],
     "params": {"type": "heatmap", "addTooltip": True, "addLegend": True, "enableHover": False,
                "legendPosition": "right", "colorsNumber": 6, "colorSchema": "Reds", "setColorRange": False,
                "percentageMode": False, "invertColors": False}},
    query='metric : "cpu_util"')
vis("flowline-events-per-window", "Events per window", "flowline-metrics",
    line([metric("sum", "count"), date_hist()]))
search("flowline-anomalies-table", "Anomalies, with their explanation", "flowline-anomalies",
       ["host", "metric", "episode_start", "z_score", "direction", "consecutive_windows", "explanation"],
       ["window_start", "desc"])
search("flowline-current-status", "Current status per host", "flowline-current",
       ["host", "metric", "status", "avg", "p95", "z_score", "anomalous_windows"],
       ["host", "asc"])

panels, refs = [], []
layout = [(id_, "visualization", 24 * (i % 2), 15 * (i // 2), 24, 15) for i, id_ in enumerate(per_metric)]
y = 15 * (len(per_metric) // 2)
layout += [("flowline-cpu-heatmap", "visualization", 0, y, 24, 15),
           ("flowline-events-per-window", "visualization", 24, y, 24, 15),
           ("flowline-anomalies-table", "search", 0, y + 15, 48, 15),
           ("flowline-current-status", "search", 0, y + 30, 48, 15)]
for i, (id_, type_, x, y, w, h) in enumerate(layout):
    panels.append({"version": CORE, "type": type_, "panelIndex": str(i + 1),
                   "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(i + 1)},
                   "embeddableConfig": {}, "panelRefName": f"panel_{i}"})
    refs.append({"name": f"panel_{i}", "type": type_, "id": id_})
objs.append({"type": "dashboard", "id": "flowline-metrics-dashboard", "coreMigrationVersion": CORE,
             "attributes": {"title": "Flowline metrics", "description":
                            "Windows, anomalies and current status written by the Flowline metrics job",
                            "panelsJSON": json.dumps(panels), "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
                            "timeRestore": True, "timeFrom": "now-30m", "timeTo": "now", "refreshInterval": {"pause": False, "value": 10000},
                            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})}},
             "references": refs})

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flowline.ndjson")
with open(out, "w") as f:
    for o in objs:
        f.write(json.dumps(o, sort_keys=True) + "\n")
print(f"wrote {len(objs)} saved objects to {out}")
