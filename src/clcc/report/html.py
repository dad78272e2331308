"""The HTML report: one static page plus its PNG assets; nothing is loaded from the network.

Safety: every string that can come from users' data (case names, method entries) is either
HTML-escaped in the static parts or inserted with `textContent` by the script; the embedded JSON
escapes `<`, so a crafted file name cannot close the script element or inject markup.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from clcc.entries import Variant
from clcc.report.compare import interval_text, per_class_text, verdict

CSP = (
    "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'"
)
"""Nothing from the network: only the page's own images, inline style and script."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right;font-size:.9em}
th{background:#f2f2f2} td.name,th.name{text-align:left}
code.entry{font-size:.8em;color:#555;overflow-wrap:anywhere}
.controls{margin:.5em 0} figure{margin:0} .note{color:#555;font-size:.9em}
figure img{max-width:100%;height:auto}
#gallery{table-layout:fixed;width:100%}
#gallery th{overflow-wrap:break-word;font-weight:600;vertical-align:bottom}
#gallery td{text-align:center;vertical-align:top;padding:.2em}
#gallery td.case{text-align:left;overflow-wrap:anywhere;font-size:.75em}
#gallery img.thumb{display:block;width:100%;height:auto;image-rendering:pixelated}
#gallery .dice{font-size:.8em}
"""

SCRIPT = """
const data = JSON.parse(document.getElementById('data').textContent);
const body = document.getElementById('gallery-body');
const sortKey = document.getElementById('sort-key');
const gapA = document.getElementById('gap-a'), gapB = document.getElementById('gap-b');
const order = document.getElementById('sort-order');
function gap(c){ return c.dice[gapA.value] - c.dice[gapB.value]; }
function keyOf(c){ return sortKey.value === '__gap__' ? gap(c) : c.dice[sortKey.value]; }
function cell(row, text, cls){ const td = document.createElement('td');
  td.textContent = text; if (cls) td.className = cls; row.appendChild(td); return td; }
function image(row, src, alt, dice){ const td = document.createElement('td');
  const img = document.createElement('img'); img.className = 'thumb';
  img.setAttribute('src', src); img.setAttribute('alt', alt); td.appendChild(img);
  if (dice !== undefined){ const d = document.createElement('div'); d.className = 'dice';
    d.textContent = dice.toFixed(2); td.appendChild(d); }
  row.appendChild(td); }
function render(){
  const sign = order.value === 'asc' ? 1 : -1;
  const cases = data.gallery.slice().sort((x, y) => sign * (keyOf(x) - keyOf(y)));
  body.replaceChildren();
  for (const c of cases){
    const row = document.createElement('tr');
    cell(row, c.case, 'name case');
    image(row, c.image, 'image'); image(row, c.truth, 'ground truth');
    for (const m of data.methods){ image(row, c.overlays[m], data.labels[m], c.dice[m]); }
    cell(row, gap(c).toFixed(2), 'gap');
    body.appendChild(row);
  }
}
for (const el of [sortKey, gapA, gapB, order]) el.addEventListener('change', render);
render();
"""


def _options(values: list[str], selected: str, labels: dict[str, str]) -> str:
    return "".join(
        f'<option value="{escape(v)}"{" selected" if v == selected else ""}>'
        f"{escape(labels.get(v, v))}</option>"
        for v in values
    )


def _summary_table(rows: list[dict[str, Any]]) -> str:
    classes = any(r.get("dice_per_class") for r in rows)
    columns = rows[0].get("columns") or [["mae", "MAE"], ["dice", "Dice"], ["iou", "mIoU"]]
    head = ("<tr><th class=name>method</th>"
            + "".join(f"<th>{escape(heading)}</th>" for _, heading in columns)
            + ("<th>Dice per class</th>" if classes else "")
            + "<th>Dice per selection</th><th class=name>entry</th></tr>")
    body = "".join(
        f"<tr><td class=name>{escape(r.get('label') or Variant(r['method']).label)}</td>"
        + "".join(f"<td{' class=dice-mean' if m == 'dice' else ''}>{r[m]['mean']:.2f} ± "
                  f"{r[m]['std']:.2f}</td>" for m, _ in columns)
        + (f"<td>{escape(per_class_text(r))}</td>" if classes else "")
        + f"<td>{' / '.join(f'{v:.2f}' for v in r['dice']['per_selection'])}</td>"
        f"<td class=name><code class=entry>{escape(r['method'])}</code></td></tr>"
        for r in rows
    )
    return f'<table id="summary">{head}{body}</table>'


def _legend(classes: tuple[str, ...]) -> str:
    """A swatch of each class's overlay colour (`clcc.engine.predict.CLASS_COLOURS`)."""
    from clcc.engine.predict import CLASS_COLOURS

    swatches = []
    for i, name in enumerate(classes):
        r, g, b = (int(v) for v in CLASS_COLOURS[i % len(CLASS_COLOURS)])
        swatches.append(f'<span style="color: rgb({r}, {g}, {b})">&#9632;</span> {escape(name)}')
    return "overlays, predicted or true: " + " &nbsp; ".join(swatches)


def _comparison_table(comparisons: list[dict[str, Any]]) -> str:
    if not comparisons:
        return "<p class=note>One method only: nothing to compare.</p>"
    body = "".join(
        f"<tr><td class=name>{escape(c['a_label'])} − {escape(c['b_label'])}</td>"
        f"<td>{' / '.join(f'{d:+.2f}' for d in c['per_selection'])}</td>"
        f"<td>{c['over_selections']['mean_diff']:+.2f}</td>"
        f"<td>{interval_text(c['over_selections'])}</td><td>{interval_text(c['hierarchical'])}</td>"
        f"<td>{interval_text(c['images'])}, p = {c['images']['p_mean']:.2g} (sign-flip)</td>"
        f"<td>{escape(verdict(c))}</td></tr>"
        for c in comparisons
    )
    return ("<table id=comparisons><tr><th class=name>pair</th><th>ΔDice per selection</th>"
            "<th>mean</th><th>95 % over selections (t)</th><th>hierarchical bootstrap</th>"
            "<th>test-image sampling only</th><th>verdict</th></tr>"
            f"{body}</table>")


def render_report(
    title: str,
    rows: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
    gallery: list[dict[str, Any]],
    methods: list[str],
    labels: dict[str, str],
    selection: int,
    reference: str,
    classes: tuple[str, ...] = ("foreground",),
) -> str:
    """The page; the gallery's gap A − B starts as the first other method − `reference`.
    `methods` are entries (the data's keys), shown by their `labels`; `classes` are the
    foreground classes, whose overlay colours the gallery's legend shows."""
    payload = json.dumps({"methods": methods, "labels": labels, "gallery": gallery})
    payload = payload.replace("<", "\\u003c")
    method_heads = "".join(f'<th title="{escape(m)}">{escape(labels[m])}<br>(Dice)</th>'
                           for m in methods)
    sort_options = (_options(methods, methods[0], labels)
                    + '<option value="__gap__">gap A − B</option>')
    second = next((m for m in methods if m != reference), reference)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{escape(title)}</title><style>{STYLE}</style></head><body>
<h1>{escape(title)}</h1>
<h2>Test metrics (×100; mean ± std over labelled selections)</h2>
{_summary_table(rows)}
<h2>Paired comparison with the reference (test Dice ×100)</h2>
<p class=note>Claims rest on the interval over selections: the labelled subset is a random draw.
The last interval counts only the sampling of test images.</p>
{_comparison_table(comparisons)}
<h2>Training curves</h2><figure><img src="curves.png" alt="training curves" width="900"></figure>
<h2>Qualitative results (selection {selection})</h2>
<p class=note>Rows: the test images where the methods disagree most, then images drawn with
seed 0.</p>
<figure><img src="qualitative.png" alt="qualitative results"></figure>
<h2>Gallery (selection {selection})</h2>
<p class=legend>{_legend(classes)}</p>
<div class=controls>sort by <select id="sort-key">{sort_options}</select>
gap A <select id="gap-a">{_options(methods, second, labels)}</select>
− B <select id="gap-b">{_options(methods, reference, labels)}</select>
<select id="sort-order"><option value="asc">ascending</option>
<option value="desc">descending</option></select></div>
<table id="gallery"><thead><tr><th class=name>case</th><th>image</th><th>truth</th>
{method_heads}<th>gap A − B</th></tr></thead><tbody id="gallery-body"></tbody></table>
<script type="application/json" id="data">{payload}</script>
<script>{SCRIPT}</script>
</body></html>
"""
