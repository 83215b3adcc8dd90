"""The paired gallery of report.html (bench/report/gallery.py) and the page's layout, in a real browser where
one is installed (headless Chromium; skipped with the reason otherwise)."""
from __future__ import annotations

import base64
import io
import json
import re

import pandas as pd
import pytest
from PIL import Image

from bench.report import compute_tables, load_run, render_report
from bench.report.gallery import PAGE, THUMB_PX, gallery_data, script_json
from bench.report.screenshot import find_browser, layout_check, run_probe
from run_fixture import make_run_dir

LONG = "noise-reg[scale=0.5,temperature=2.0]@steps=32,guidance=4.5"
VARIANTS = {"vanilla": 0.0, "strong": 1.5, "weak": 0.05, "worse": -0.5, LONG: 0.3}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_run_dir(tmp_path_factory.mktemp("gallery") / "run", n_prompts=12, seeds=(0, 1), variants=VARIANTS)
    paths = render_report(run, n_boot=50)
    return run, paths


def _data(html: str) -> dict:
    found = re.search(r"<script type='application/json' id='gallery-data'>(.*?)</script>", html, re.S)
    assert found, "no gallery data in the page"
    return json.loads(found.group(1))


def _needs_browser():
    if find_browser() is None:
        pytest.skip("no Chromium on PATH: install Debian's `chromium` (apt-get install -y chromium) to run this test")


def test_gallery_is_in_the_default_report_with_the_reports_own_pairs(report):
    run, paths = report
    html = paths["html"].read_text(encoding="utf-8")
    data = _data(html)
    head = pd.read_csv(run / "tables" / "headline.csv")
    assert [v["name"] for v in data["variants"]] == [v for v in head["variant"] if v != "vanilla"]
    assert all(v["baseline"] == "vanilla" for v in data["variants"])
    assert data["shown"] == data["total"] == 24 and len(data["units"]) == 24
    paired = pd.read_csv(run / "tables" / "paired_differences.csv", dtype={"prompt_id": str})
    metrics = [m["name"] for m in data["metrics"]]
    names = {"HPS v2.1": "hpsv2"}
    for vi, v in enumerate(data["variants"]):
        for mi, m in enumerate(metrics):
            rows = data["pairs"][vi][mi]
            expected = paired[(paired["variant"] == v["name"]) & (paired["metric"] == names.get(m, m))]
            assert len(rows) == len(expected) == 24
            got = {(data["units"][r[0]][0], data["units"][r[0]][1]): r for r in rows}
            for e in expected.itertuples():
                r = got[(e.prompt_id, e.seed)]
                assert r[1] == pytest.approx(e.value, rel=1e-5) and r[2] == pytest.approx(e.baseline_value, rel=1e-5)
                assert r[3] == pytest.approx(e.diff, rel=1e-5, abs=1e-9) and r[4] == e.outcome
    # every image once, as a thumbnail of at most THUMB_PX, each variant's image for every unit
    assert len(data["thumbs"]) == 24 * len(VARIANTS)
    for uri in data["thumbs"][:5]:
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
            assert max(im.size) <= THUMB_PX
    assert all(p.startswith("images/") for p in data["paths"])
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "## Paired gallery" in md and "lives in report.html" in md


def test_gallery_keeps_to_its_size_limit_and_says_so(report, tmp_path):
    run, _ = report
    loaded = load_run(run, n_boot=50)
    t = compute_tables(loaded)
    full = gallery_data(loaded, t, max_bytes=10**9)
    one_unit = full["bytes"] / full["total"]
    limit = int(6.5 * one_unit)
    capped = gallery_data(loaded, t, max_bytes=limit)
    assert 0 < capped["shown"] < capped["total"] and capped["bytes"] <= limit
    assert len(capped["thumbs"]) == capped["shown"] * len(VARIANTS)
    # each variant's best and worst pair on the primary metric come first
    paired = t.paired[t.paired["metric"] == loaded.primary_metric]
    kept = {(u[0], u[1]) for u in capped["units"]}
    for v in [x["name"] for x in capped["variants"]][:3]:
        d = paired[paired["variant"] == v].sort_values(["advantage", "prompt_id", "seed"], ascending=[False, True, True])
        assert (d.iloc[0]["prompt_id"], d.iloc[0]["seed"]) in kept
        assert (d.iloc[-1]["prompt_id"], d.iloc[-1]["seed"]) in kept
    # the report states the limit and what it holds
    small = make_run_dir(tmp_path / "small", n_prompts=6, seeds=(0,), variants={"vanilla": 0.0, "a": 1.0})
    paths = render_report(small, n_boot=20, gallery_mib=1e-4)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert re.search(r"It holds \d of the run's 6 prompt–seed pairs: those that fit the limit of 0\.0001 MiB", md)


def test_gallery_json_cannot_close_its_script():
    text = script_json({"prompt": "</script><script>alert(1)</script> <!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"prompt": "</script><script>alert(1)</script> <!-- & \u2028"}


_STATE = """
function state(){var out=[];document.querySelectorAll('#g-cards .g-card').forEach(function(c){
  out.push({o:c.getAttribute('data-outcome'),u:+c.getAttribute('data-unit'),
    src:Array.prototype.map.call(c.querySelectorAll('img'),function(i){return i.src.length+':'+i.src.slice(-48);}),
    prompt:c.querySelector('.g-prompt').textContent});});
  return {cards:out,count:document.getElementById('g-count').textContent};}
function set(id,v){var e=document.getElementById(id);e.value=v;e.dispatchEvent(new Event('change'));}
var r={initial:state(),scripts:document.scripts.length};
set('g-outcome','0');r.worse=state();
set('g-outcome','all');set('g-variant','1');r.variant1=state();
set('g-order','worse');r.order=state();
var t=document.getElementById('g-text');t.value='number 3,';t.dispatchEvent(new Event('input'));r.text=state();
return r;
"""


def test_gallery_filters_and_sorts_in_a_browser(report):
    _needs_browser()
    run, paths = report
    res = run_probe(paths["html"], _STATE)
    assert not hasattr(res, "reason"), getattr(res, "reason", "")
    data = _data(paths["html"].read_text(encoding="utf-8"))
    paired = pd.read_csv(run / "tables" / "paired_differences.csv", dtype={"prompt_id": str})
    primary = "hpsv2"

    def advantages(cards, variant):
        d = paired[(paired["variant"] == variant) & (paired["metric"] == primary)].set_index(["prompt_id", "seed"])
        return [float(d.loc[(data["units"][c["u"]][0], data["units"][c["u"]][1]), "advantage"]) for c in cards]

    top, second = data["variants"][0]["name"], data["variants"][1]["name"]
    first = res["initial"]["cards"]
    assert len(first) == PAGE and all(len(c["src"]) == 2 for c in first)
    adv = advantages(first, top)
    assert adv == sorted(adv, reverse=True)  # "variant better first"
    losses = paired[(paired["variant"] == top) & (paired["metric"] == primary) & (paired["outcome"] == 0)]
    worse = res["worse"]["cards"]
    assert len(worse) == min(PAGE, len(losses)) > 0 and all(c["o"] == "0" for c in worse)
    assert f"of {len(losses)} pairs" in res["worse"]["count"]
    # the filter changed the images shown, and so did another variant
    assert {s for c in worse for s in c["src"]} != {s for c in first for s in c["src"]}
    assert [c["src"][1] for c in res["variant1"]["cards"]] != [c["src"][1] for c in first]
    assert sorted(advantages(res["variant1"]["cards"], second), reverse=True) == advantages(res["variant1"]["cards"], second)
    adv = advantages(res["order"]["cards"], second)
    assert adv == sorted(adv)  # "variant worse first"
    assert len(res["text"]["cards"]) == 2 and all("number 3," in c["prompt"] for c in res["text"]["cards"])
    assert res["scripts"] == 3  # the data block, the gallery's script and this probe: nothing else


# what broke before: the cost table ran past the edge at 1400 px, and at 800 px "W / T / L" wrapped a letter a line
_ONE_LINE = """
var bad=[];document.querySelectorAll('td.n,th.n').forEach(function(c){var r=document.createRange();
  r.selectNodeContents(c);var tops={},rects=r.getClientRects();
  for(var i=0;i<rects.length;i++){if(rects[i].width>0)tops[Math.round(rects[i].top)]=1;}
  if(Object.keys(tops).length>1)bad.push(c.textContent);});
var wtl=Array.prototype.filter.call(document.querySelectorAll('th'),function(h){return h.textContent==='W / T / L';});
return {bad:bad.slice(0,10),wtl:wtl.map(function(h){return h.className;})};
"""


@pytest.mark.parametrize("width", [800, 1400])
def test_report_has_no_sideways_overflow(report, width):
    _needs_browser()
    _, paths = report
    res = layout_check(paths["html"], width)
    assert not hasattr(res, "reason"), getattr(res, "reason", "")
    assert res["viewport"] == width
    assert res["scrollWidth"] <= width and res["overflowing"] == [], res
    lines = run_probe(paths["html"], _ONE_LINE, width=width)
    assert lines["bad"] == [] and lines["wtl"] == ["n"], lines
