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

vis("flowline-avg-per-host", "Average per host over time", "flowline-metrics",
    line([metric("avg", "avg"), date_hist(), terms("host", "group", 10)]))
vis("flowline-p95-per-host", "p95 per host over time", "flowline-metrics",
    line([metric("avg", "p95"), date_hist(), terms("host", "group", 10)]))
vis("flowline-cpu-heatmap", "cpu_util heatmap: host × time", "flowline-metrics",
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
layout = [("flowline-avg-per-host", "visualization", 0, 0, 24, 15),
          ("flowline-p95-per-host", "visualization", 24, 0, 24, 15),
          ("flowline-cpu-heatmap", "visualization", 0, 15, 24, 15),
          ("flowline-events-per-window", "visualization", 24, 15, 24, 15),
          ("flowline-anomalies-table", "search", 0, 30, 48, 15),
          ("flowline-current-status", "search", 0, 45, 48, 15)]
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
