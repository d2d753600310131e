"""`summary.html` in a real headless browser (Debian's chromium, networking off, as
tests/system/test_report_browser.py opens report.html): the table, a bar per finished sample and the links
to the samples' reports are visible, each link leads to a report that exists, nothing is logged to
the console; a screenshot is kept in `test-artifacts/`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_report_browser import ARTIFACTS, ERROR_HOOK, check_result, chromium, run_chromium, screenshot  # noqa: F401
from test_summary import results  # noqa: F401  (the fixture: two finished samples and a failed one)

from conftest import run_cli

pytestmark = pytest.mark.browser

# Once the page has loaded: what is drawn, measured, written into the DOM for --dump-dom.
CHECK = """<script>
window.addEventListener("load", () => {
  const box = (element) => { const r = element.getBoundingClientRect(); return { width: r.width, height: r.height }; };
  const visible = (element) => { const r = box(element); return r.width > 0 && r.height > 0
    && getComputedStyle(element).visibility !== "hidden"; };
  const table = document.querySelector("table.samples");
  const result = {
    errors: window.__errors,
    header: [...table.querySelectorAll("thead th")].map((th) => th.innerText),
    rows: [...table.querySelectorAll("tbody tr")].map((tr) => ({
      cells: [...tr.children].map((td) => td.innerText), visible: visible(tr),
      inside: [...tr.children].every((td) => td.getBoundingClientRect().right <= document.documentElement.clientWidth) })),
    bars: [...document.querySelectorAll(".bar")].map((bar) => ({ kind: bar.className, title: bar.title, ...box(bar) })),
    links: [...document.querySelectorAll("a")].map((a) => ({ text: a.innerText, href: a.href, visible: visible(a) })),
    failed: [...document.querySelectorAll(".failed-note")].map((note) => note.innerText),
  };
  const out = document.createElement("pre");
  out.id = "check-result";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def test_summary_page_in_headless_chromium(chromium, results, tmp_path):  # noqa: F811
    outdir = results / "summary-browser"
    done = run_cli(
        "summarize", results / "s1", results / "s 2", results / "s3", "--outdir", outdir, "--quiet"
    )
    assert done.returncode == 0, done.stderr
    page = outdir / "summary.html"
    # The checked copy sits beside the page, so that its relative links resolve as the page's do.
    checked = outdir / "checked.html"
    text = page.read_text(encoding="utf-8")
    checked.write_text(
        text.replace("<head>", "<head>" + ERROR_HOOK, 1).replace("</body>", CHECK + "</body>", 1)
    )
    dumped = run_chromium(
        chromium,
        tmp_path / "profile",
        "--window-size=1280,2400",
        "--virtual-time-budget=10000",
        "--dump-dom",
        checked.as_uri(),
    )
    checked.unlink()
    result = check_result(dumped)
    summary = (outdir / "summary.tsv").read_text().splitlines()
    # The table: summary.tsv's header and rows, every row drawn.
    assert result["header"] == summary[0].split("\t")
    assert [row["cells"] for row in result["rows"]] == [line.split("\t") for line in summary[1:]]
    assert all(row["visible"] and row["inside"] for row in result["rows"])  # no cell off the page
    # Bars: two per finished sample (viral sequences, sequences with regions), drawn with a width
    # that follows the count; the failed sample has a note instead.
    bars = result["bars"]
    assert sorted(bar["kind"] for bar in bars) == ["bar regions"] * 2 + ["bar viral"] * 2
    assert all(bar["height"] > 0 and bar["width"] > 0 for bar in bars)
    per_count = [bar["width"] / int(bar["title"].split()[0]) for bar in bars]
    assert max(per_count) == pytest.approx(min(per_count), rel=0.005)  # one scale for all bars
    assert result["failed"] == ["failed: no results"]
    # Links: each finished sample's name, in the bars and in the table, visible, to its report.
    links = result["links"]
    assert sorted(link["text"] for link in links) == ["s 2", "s 2", "s1", "s1"]
    assert all(link["visible"] for link in links)
    for link in links:
        target = Path(unquote(urlparse(link["href"]).path))
        assert target.resolve() == (results / link["text"] / "report.html").resolve() and target.is_file()
    screenshot(chromium, page, "summary.png", tmp_path)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "summary.html").write_text(text, encoding="utf-8")
