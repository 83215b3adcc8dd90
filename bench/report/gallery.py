"""The paired gallery of report.html: for any variant, its image beside its baseline's for the same prompt and
seed, with the prompt and both scores, sorted and filtered by the paired difference on any per-image metric.

A win rate says how often a variant scores better; only the images say *why*. Sorting one variant's
pairs by the difference on one metric and reading the scores of another is how a "best win" turns
out to be an image that dropped the shape entirely. The numbers on every card are the report's own
pairing (`metrics.stats.paired_differences`, ``tables/paired_differences.csv``): Δ = variant −
baseline in the metric's units; "better", "tie" and "worse" are the pair's outcome within the
metric's tie tolerance.

The page stays self-contained and bounded in size: each image is embedded once, as a thumbnail of at
most `THUMB_PX` pixels on its long side (the smaller of PNG and JPEG), and the thumbnails of all
embedded pairs together stay within ``[report] gallery_mib`` MiB (default 8; base64 adds a third to
the page). When a run has more, the gallery holds the prompt–seed units that fit, each variant's most
extreme pairs on the primary metric first (round-robin over variants: best, worst, second best, …),
and says how many of how many it shows. Every card links to the full-size image in ``images/``.

The script reads its data from an inert ``application/json`` block whose ``<``, ``>`` and ``&`` are
escaped, and puts user text into the page only through ``textContent``: a prompt or variant name
cannot become markup (the same guarantee as the rest of the page, which is escaped by `html.escape`).
"""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pandas as pd
from PIL import Image

from .document import Section
from .pairing import baseline_of, compared_variants
from .rundir import Run
from .tables import ReportTables

#: long side of a thumbnail in pixels (also its display size); smaller images are embedded as they are.
THUMB_PX = 128
#: JPEG quality of photographic thumbnails; flat synthetic images come out smaller as PNG and keep it.
JPEG_QUALITY = 85
#: cards per page; "show more" adds as many again.
PAGE = 24


def thumbnail(path: Path) -> tuple[bytes, str, tuple[int, int]] | None:
    """(encoded bytes, MIME type, original size) of an image's thumbnail; None if it cannot be read."""
    try:
        with Image.open(path) as im:
            size = im.size
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
            png, jpeg = io.BytesIO(), io.BytesIO()
            im.save(png, format="PNG")
            im.save(jpeg, format="JPEG", quality=JPEG_QUALITY)
    except (OSError, ValueError):
        return None
    best = min((png.getvalue(), "image/png"), (jpeg.getvalue(), "image/jpeg"), key=lambda c: len(c[0]))
    return best[0], best[1], size


def _relative_href(image_path: str) -> str:
    """The image's path as a relative link from report.html, or "" if it is not a plain path inside the run."""
    p = str(image_path or "")
    if not p or "\\" in p or ":" in p or p.startswith("/") or any(c < " " for c in p):
        return ""
    parts = PurePosixPath(p).parts
    if ".." in parts:
        return ""
    return quote(p, safe="/")


def _number(x) -> float | None:
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _unit_priority(paired: pd.DataFrame, variants: list[str], primary: str | None) -> list[tuple[str, int]]:
    """Every (prompt_id, seed) with a pair, most informative first: round-robin over the variants of each
    one's best and worst pairs on the primary metric (ties broken by prompt and seed)."""
    everything = list(dict.fromkeys(zip(paired["prompt_id"], paired["seed"])))
    ranked = []
    for v in variants:
        d = paired[(paired["variant"] == v) & (paired["metric"] == primary)]
        d = d.sort_values(["advantage", "prompt_id", "seed"], ascending=[False, True, True], kind="mergesort")
        keys = list(zip(d["prompt_id"], d["seed"]))
        ranked.append([k for pair in zip(keys, keys[::-1]) for k in pair])
    order = []
    for group in zip(*ranked) if ranked else []:
        order += group
    for keys in ranked:  # unequal lengths (missing pairs): the rest of each list
        order += keys
    return list(dict.fromkeys(order + everything))


def gallery_data(run: Run, t: ReportTables, max_bytes: int) -> dict | None:
    """What the gallery's script shows (see the module docstring), or None when nothing is compared."""
    paired = t.paired
    compared = set(compared_variants(run))
    order = [v for v in t.headline["variant"] if v in compared] if len(t.headline) else []
    variants = [v for v in order if v in set(paired["variant"])] if paired is not None and len(paired) else []
    if not variants:
        return None
    base = baseline_of(run)
    metrics = [m for m in run.per_image_metrics if m in set(paired["metric"])]
    primary = run.primary_metric if run.primary_metric in metrics else metrics[0]
    paired = paired[paired["variant"].isin(variants) & paired["metric"].isin(metrics)]
    shown_variants = list(dict.fromkeys([base[v] for v in variants] + variants))

    samples = run.samples.drop_duplicates(["variant", "prompt_id", "seed"]).set_index(["variant", "prompt_id", "seed"])
    prompt_rank = {p: i for i, p in enumerate(dict.fromkeys(run.samples["prompt_id"]))}
    thumbs: list[str] = []
    paths: list[str] = []
    cache: dict[tuple, int] = {}
    used = 0
    chosen: list[tuple[str, int]] = []
    images: dict[tuple, int] = {}
    small = False
    all_units = _unit_priority(paired, variants, primary)
    for unit in all_units:
        encoded = {}
        for v in shown_variants:
            key = (v, *unit)
            if key in cache or key not in samples.index:
                continue
            rel = str(samples.loc[key, "image_path"])
            thumb = thumbnail(run.path / rel)
            if thumb is not None:
                encoded[key] = (thumb, rel)
        cost = sum(len(th[0]) for th, _ in encoded.values())
        if used + cost > max_bytes:
            break  # the first units in priority order, nothing skipped over: the note can say which
        used += cost
        chosen.append(unit)
        for key, ((data, mime, size), rel) in encoded.items():
            cache[key] = len(thumbs)
            thumbs.append(f"data:{mime};base64," + base64.b64encode(data).decode("ascii"))
            paths.append(_relative_href(rel))
            small = small or max(size) < THUMB_PX
        for v in shown_variants:
            images[(v, *unit)] = cache.get((v, *unit), -1)

    chosen.sort(key=lambda u: (prompt_rank.get(u[0], len(prompt_rank)), u[1]))
    index = {u: i for i, u in enumerate(chosen)}
    texts = run.samples.drop_duplicates(["prompt_id", "seed"]).set_index(["prompt_id", "seed"])
    units = [[str(p), int(s), str(texts.loc[(p, s), "prompt"]), str(texts.loc[(p, s), "category"] or "")]
             for p, s in chosen]
    pairs = []
    for v in variants:
        per_metric = []
        for m in metrics:
            d = paired[(paired["variant"] == v) & (paired["metric"] == m)]
            rows = [[index[(p, s)], _number(val), _number(bval), _number(diff), float(out)]
                    for p, s, val, bval, diff, out in zip(d["prompt_id"], d["seed"], d["value"], d["baseline_value"],
                                                          d["diff"], d["outcome"]) if (p, s) in index]
            per_metric.append(sorted(rows))
        pairs.append(per_metric)
    return {
        "variants": [{"name": v, "baseline": base[v]} for v in variants],
        "metrics": [{"name": run.display_name(m), "unit": run.unit(m), "hib": run.higher_is_better(m)} for m in metrics],
        "primary": metrics.index(primary),
        "units": units,
        "thumbs": thumbs,
        "paths": paths,
        "img": {v: [images.get((v, *u), -1) for u in chosen] for v in shown_variants},
        "pairs": pairs,
        "page": PAGE,
        "pixelated": small,
        "shown": len(chosen),
        "total": len(all_units),
        "bytes": used,
    }


def script_json(data: dict) -> str:
    """JSON that can sit inside <script type="application/json">: no "<", ">" or "&" that could end it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


CSS = """<style>
.gallery .g-controls{display:flex;flex-wrap:wrap;gap:.35em 1.1em;align-items:center;background:#f6f7f9;
border:1px solid #e1e4e8;padding:.5em .8em;position:sticky;top:0;z-index:3}
.gallery label{font-size:.9em;white-space:nowrap}.gallery select,.gallery input{font-size:.95em;max-width:24em}
.gallery input[type=number]{width:6em}.gallery input[type=search]{width:12em}
.g-count{color:#444;font-size:.9em;margin:.5em 0}
.g-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:.7em;margin:.5em 0}
.g-card{margin:0;border:1px solid #d8d8d8;border-radius:4px;padding:.45em;background:#fff;font-size:.86em}
.g-imgs{display:flex;gap:.4em;justify-content:center}.g-img{text-align:center;min-width:0}
.g-img img{width:128px;height:128px;object-fit:contain;margin:0 auto;background:#eee;display:block}
.g-pix .g-img img{image-rendering:pixelated}
.g-name{font-size:.85em;color:#555;overflow-wrap:anywhere;max-width:128px}
.g-missing{display:flex;width:128px;height:128px;align-items:center;justify-content:center;background:#fbeaea;color:#a00}
.g-score{margin-top:.3em;font-variant-numeric:tabular-nums}.g-score b{font-weight:600}
.g-o1{color:#0a6b2d}.g-o0{color:#b3261e}.g-o05{color:#555}
.g-all{width:100%;border-collapse:collapse;margin-top:.25em;font-size:.92em}
.g-all td{border:0;border-top:1px solid #eee;padding:1px 3px;background:none!important;white-space:nowrap}
.g-prompt{margin-top:.25em;overflow-wrap:anywhere}.g-meta{color:#666;font-size:.9em}
.g-more{margin:.3em 0 1em;font-size:.95em}
</style>"""

SCRIPT = r"""<script>
(function(){
var D=JSON.parse(document.getElementById('gallery-data').textContent);
function $(id){return document.getElementById(id);}
var vSel=$('g-variant'),mSel=$('g-metric'),oSel=$('g-order'),fSel=$('g-outcome'),cSel=$('g-category'),
    minIn=$('g-min'),txt=$('g-text'),allCb=$('g-all'),cards=$('g-cards'),count=$('g-count'),more=$('g-more');
function opt(sel,value,label){var o=document.createElement('option');o.value=value;o.textContent=label;sel.appendChild(o);}
D.variants.forEach(function(v,i){opt(vSel,i,v.name+'  vs  '+v.baseline);});
D.metrics.forEach(function(m,i){opt(mSel,i,m.name+(m.unit?' ('+m.unit+')':'')+(m.hib?' ↑':' ↓'));});
mSel.value=String(D.primary);
var cats=[];D.units.forEach(function(u){if(u[3]&&cats.indexOf(u[3])<0)cats.push(u[3]);});cats.sort();
opt(cSel,'','all');cats.forEach(function(c){opt(cSel,c,c);});
if(!cats.length)cSel.parentNode.style.display='none';
if(D.pixelated)cards.className+=' g-pix';
var WORD={'1':'better','0.5':'tie','0':'worse'},shown=D.page,lookup={};
function fmt(x){if(x===null||x===undefined)return '—';var a=Math.abs(x);
  return (a!==0&&(a>=1e5||a<1e-3))?x.toExponential(2):String(+x.toPrecision(4));}
function signed(x){return (x>0?'+':'')+fmt(x);}
function row(v,m,u){var k=v+'/'+m;if(!lookup[k]){lookup[k]={};D.pairs[v][m].forEach(function(r){lookup[k][r[0]]=r;});}
  return lookup[k][u];}
function rows(){
  var v=+vSel.value,m=+mSel.value,hib=D.metrics[m].hib?1:-1,o=oSel.value,f=fSel.value,c=cSel.value,
      mn=parseFloat(minIn.value),q=txt.value.toLowerCase();
  var list=D.pairs[v][m].filter(function(r){var u=D.units[r[0]];
    if(f!=='all'&&String(r[4])!==f)return false;
    if(c&&u[3]!==c)return false;
    if(!isNaN(mn)&&!(Math.abs(r[3])>=mn))return false;
    if(q&&u[2].toLowerCase().indexOf(q)<0&&u[0].toLowerCase().indexOf(q)<0)return false;
    return true;});
  list.sort(function(a,b){var d=0;
    if(o==='better')d=hib*(b[3]-a[3]);else if(o==='worse')d=hib*(a[3]-b[3]);
    else if(o==='abs')d=Math.abs(b[3])-Math.abs(a[3]);
    return d||a[0]-b[0];});
  return list;}
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;
  if(text!==undefined)e.textContent=text;return e;}
function picture(name,u){var box=el('div','g-img'),i=D.img[name]?D.img[name][u]:-1;
  if(i<0){box.appendChild(el('span','g-missing','image missing'));}
  else{var im=el('img');im.src=D.thumbs[i];im.alt=name;im.loading='lazy';
    if(D.paths[i]){var a=el('a');a.href=D.paths[i];a.target='_blank';a.rel='noopener';a.title='full-size image';
      a.appendChild(im);box.appendChild(a);}else box.appendChild(im);}
  box.appendChild(el('div','g-name',name));return box;}
function card(r,v,m){var V=D.variants[v],met=D.metrics[m],u=D.units[r[0]],oc=String(r[4]);
  var c=el('figure','g-card');c.setAttribute('data-outcome',oc);c.setAttribute('data-unit',String(r[0]));
  var imgs=el('div','g-imgs');imgs.appendChild(picture(V.baseline,r[0]));imgs.appendChild(picture(V.name,r[0]));
  c.appendChild(imgs);
  var cap=el('figcaption');
  var s=el('div','g-score g-o'+oc.replace('.',''));s.appendChild(el('b',null,met.name));
  s.appendChild(document.createTextNode(': '+fmt(r[2])+' → '+fmt(r[1])+(met.unit?' '+met.unit:'')+
    ' · Δ '+signed(r[3])+' · '+WORD[oc]));cap.appendChild(s);
  if(allCb.checked){var t=el('table','g-all');D.metrics.forEach(function(mm,k){if(k===m)return;var x=row(v,k,r[0]);
      if(!x)return;var tr=el('tr','g-o'+String(x[4]).replace('.',''));tr.appendChild(el('td',null,mm.name));
      tr.appendChild(el('td',null,fmt(x[2])+' → '+fmt(x[1])));tr.appendChild(el('td',null,'Δ '+signed(x[3])));
      tr.appendChild(el('td',null,WORD[String(x[4])]));t.appendChild(tr);});cap.appendChild(t);}
  cap.appendChild(el('div','g-prompt',u[2]));
  cap.appendChild(el('div','g-meta','prompt '+u[0]+' · seed '+u[1]+(u[3]?' · '+u[3]:'')));
  c.appendChild(cap);return c;}
function render(reset){if(reset)shown=D.page;var list=rows(),v=+vSel.value,m=+mSel.value,n={'1':0,'0.5':0,'0':0};
  list.forEach(function(r){n[String(r[4])]++;});
  cards.textContent='';var frag=document.createDocumentFragment();
  list.slice(0,shown).forEach(function(r){frag.appendChild(card(r,v,m));});cards.appendChild(frag);
  count.textContent='Showing '+Math.min(shown,list.length)+' of '+list.length+' pairs ('+n['1']+' better, '+
    n['0.5']+' tied, '+n['0']+' worse on '+D.metrics[m].name+').';
  more.style.display=list.length>shown?'':'none';}
[vSel,mSel,oSel,fSel,cSel].forEach(function(e){e.addEventListener('change',function(){render(true);});});
[minIn,txt].forEach(function(e){e.addEventListener('input',function(){render(true);});});
allCb.addEventListener('change',function(){render(false);});
more.addEventListener('click',function(){shown+=D.page;render(false);});
render(true);
})();
</script>"""

CONTROLS = """<div class='gallery' id='gallery'>
<div class='g-controls'>
<label>variant <select id='g-variant'></select></label>
<label>metric <select id='g-metric'></select></label>
<label>order <select id='g-order'><option value='better'>variant better first</option>
<option value='worse'>variant worse first</option><option value='abs'>largest |Δ| first</option>
<option value='prompt'>prompt order</option></select></label>
<label>pairs <select id='g-outcome'><option value='all'>all</option><option value='1'>variant better</option>
<option value='0.5'>tied</option><option value='0'>variant worse</option></select></label>
<label>category <select id='g-category'></select></label>
<label>|Δ| ≥ <input id='g-min' type='number' step='any' min='0'></label>
<label>prompt contains <input id='g-text' type='search'></label>
<label><input id='g-all' type='checkbox'> all metrics</label>
</div>
<p class='g-count' id='g-count'></p>
<div class='g-cards' id='g-cards'></div>
<button type='button' class='g-more' id='g-more'>show more</button>
<noscript><p>The gallery needs JavaScript; every pair's numbers are in tables/paired_differences.csv.</p></noscript>
</div>"""


def gallery_section(run: Run, t: ReportTables) -> Section | None:
    """The "Paired gallery" section (HTML only: Markdown gets its paragraphs), or None without comparisons."""
    limit = float(run.settings.gallery_mib)
    data = gallery_data(run, t, max_bytes=int(limit * 2**20))
    if data is None:
        return None
    shown, total = data["shown"], data["total"]
    size = f"{data['bytes'] / 2**20:.1f} MiB of thumbnails"
    if shown < total:
        coverage = (f"It holds {shown} of the run's {total} prompt–seed pairs: those that fit the limit of "
                    f"{limit:g} MiB of thumbnails (`[report] gallery_mib`), each variant's best and worst pairs on "
                    f"{run.display_name(run.primary_metric)} first ({size}).")
    else:
        coverage = f"It holds all {total} prompt–seed pairs ({size}; limit {limit:g} MiB, `[report] gallery_mib`)."
    paragraphs = [
        "For any variant: its image (right) beside its baseline's (left) for the same prompt and seed, with both "
        "scores on the chosen metric, Δ = variant − baseline in the metric's units and the pair's outcome "
        "within the metric's tie tolerance. Sort by the difference, filter by outcome, category, |Δ| or prompt "
        "text; 'all metrics' adds the other metrics' scores to every card. A thumbnail opens the full image "
        f"(long side {THUMB_PX} px here). {coverage} The gallery is interactive and lives in report.html; every "
        "pair's numbers are in `tables/paired_differences.csv`."]
    block = "\n".join([CSS, CONTROLS,
                       f"<script type='application/json' id='gallery-data'>{script_json(data)}</script>", SCRIPT])
    return Section("Paired gallery", paragraphs, html=block, csv=["paired_differences.csv"])

