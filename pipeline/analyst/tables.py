"""Sortable, filterable HTML tables for the report, and the one small inline script behind them.

Why a script at all, and why this one: an analyst sorts a list of alerts by owner or filters it
to one account without leaving the file. The script only reorders existing rows and hides rows;
it never builds markup from text (no ``innerHTML``), so the attacker-controlled strings in the
cells stay text. The page's Content-Security-Policy allows exactly this script by its SHA-256
hash (``csp_hash``) and nothing else: no other inline script, no remote load.

A cell sorts by its ``data-sort`` value when it has one (times, severities), else by its text;
a column marked numeric compares numbers.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from pipeline.analyst.charts import esc

SCRIPT = r"""
(function () {
  "use strict";
  function key(row, i) {
    var c = row.cells[i];
    if (!c) return "";
    var v = c.getAttribute("data-sort");
    return v === null ? c.textContent.trim().toLowerCase() : v;
  }
  function sortBy(table, th) {
    var i = th.cellIndex, num = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (r, n) {
      var k = key(r, i);
      if (num) { k = parseFloat(k); k = isNaN(k) ? -Infinity : k; }
      return {row: r, key: k, n: n};
    });
    rows.sort(function (a, b) { return (a.key < b.key ? -1 : a.key > b.key ? 1 : 0) * dir || a.n - b.n; });
    var moved = document.createDocumentFragment();  // one change to the page, not one per row
    rows.forEach(function (r) { moved.appendChild(r.row); });
    body.appendChild(moved);
  }
  function filter(input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean), shown = 0, rows = table.tBodies[0].rows;
    Array.prototype.forEach.call(rows, function (r) {
      var text = r.textContent.toLowerCase();
      var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
      r.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    var count = document.getElementById(input.getAttribute("data-count"));
    if (count) count.textContent = words.length ? shown + " of " + rows.length + " rows" : rows.length + " rows";
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent.trim();
      th.addEventListener("click", function () { sortBy(table, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); } });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input.filter"), function (input) {
    input.addEventListener("input", function () { filter(input); });
    filter(input);
  });
})();
"""


def csp_hash(script: str = SCRIPT) -> str:
    """The CSP source that allows exactly ``script`` inline: ``'sha256-…'``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


@dataclass(frozen=True)
class Col:
    label: str
    num: bool = False  # right-aligned, sorted as a number
    cls: str = ""


def cell(html: str, sort=None, cls: str = "", title: str | None = None) -> str:
    """A ``<td>``: ``html`` is already safe markup; ``sort`` and ``title`` are escaped here."""
    attrs = f' class="{esc(cls)}"' if cls else ""
    attrs += f' data-sort="{esc(sort)}"' if sort is not None else ""
    attrs += f' title="{esc(title)}"' if title else ""
    return f"<td{attrs}>{html}</td>"


def table(table_id: str, cols: list[Col], rows: list[list[str]], *, cls: str = "", filter_label: str | None = None) -> str:
    """A sortable table of ``rows`` (each a list of ``cell`` strings), with a filter box above it
    when ``filter_label`` is given."""
    head = "".join(f'<th class="{"num " if c.num else ""}{esc(c.cls)}"' + (' data-type="num"' if c.num else "")
                   + f">{esc(c.label)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    box = ""
    if filter_label is not None:
        box = (f'<div class="filterbar"><input type="search" class="filter" id="{esc(table_id)}-filter" '
               f'data-table="{esc(table_id)}" data-count="{esc(table_id)}-count" placeholder="{esc(filter_label)}" '
               f'aria-label="{esc(filter_label)}"><span class="count" id="{esc(table_id)}-count">{len(rows)} rows</span></div>')
    return (f'{box}<table id="{esc(table_id)}" class="sortable {esc(cls)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")
