"""`report.html` in a real headless browser (Debian's chromium, networking off): the summary is
there, every figure loads, nothing is logged to the console, and the viral regions and confidence
tiers of a sample with a prophage-like region are shown; screenshots are kept in `test-artifacts/`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DATA, REPO
from synthetic import prepared_example, random_classifier, scripted_sample, write_random_embeddings
from virnucpro.stages.predict import predict_files
from virnucpro.stages.report import report

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
# Scripts added to a copy of the page: the first records errors from the start, the second checks
# the page once it has loaded and writes the result into the DOM, which --dump-dom prints.
ERROR_HOOK = """<script>
window.__errors = [];
window.addEventListener("error", (e) => {
  window.__errors.push("error: " + (e.message || (e.target && e.target.src) || e.type));
}, true);
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => { window.__errors.push(level + ": " + args.join(" ")); original(...args); };
}
</script>"""
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map((img) => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight }));
  const sections = {};
  for (const section of document.querySelectorAll("section")) { sections[section.id] = section.innerText; }
  const result = { images, errors: window.__errors, summary: sections.summary || null, sections,
    title: document.title };
  const out = document.createElement("pre");
  out.id = "check-result";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""
# Headless, no network (every host resolves to nothing, no proxy reachable), no background services.
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--hide-scrollbars",
)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed here when missing (we run as root); skipped only if that fails."""
    if not CHROMIUM.exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            try:
                done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as err:
                pytest.skip(f"cannot install Debian's chromium ({' '.join(command)}: {err})")
            if done.returncode != 0:
                pytest.skip(
                    f"cannot install Debian's chromium ({' '.join(command)}: {done.stderr.strip()[-300:]})"
                )
    return CHROMIUM


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("browser")
    prepared = prepared_example(DATA / "example.fa", tmp_path / "prepared")
    embeddings = write_random_embeddings(prepared, tmp_path / "embeddings")
    random_classifier(tmp_path / "classifier")
    scores = predict_files(embeddings, tmp_path / "classifier", tmp_path / "scores", quiet=True)
    report(DATA / "example.fa", prepared, scores, tmp_path / "out", quiet=True)
    return tmp_path / "out"


def run_chromium(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [str(chromium), *BASE_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def check_result(dumped: subprocess.CompletedProcess) -> dict:
    """What a check script wrote into the dumped DOM (`<pre id="check-result">`), with no error
    logged to the page's console."""
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    match = re.search(r'<pre id="check-result">(.*?)</pre>', dumped.stdout, re.S)
    assert match, f"the check script did not run:\n{dumped.stdout[-2000:]}\n{dumped.stderr[-2000:]}"
    result = json.loads(
        match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )
    assert result["errors"] == []
    return result


def check_page(chromium: Path, page_path: Path, tmp_path: Path) -> dict:
    """The page with the check scripts added, as the browser saw it (see CHECK)."""
    page = page_path.read_text(encoding="utf-8")
    checked = page.replace("<head>", "<head>" + ERROR_HOOK, 1).replace("</body>", CHECK + "</body>", 1)
    assert checked.count("<script>") == 2
    checked_path = tmp_path / "checked.html"
    checked_path.write_text(checked, encoding="utf-8")
    dumped = run_chromium(
        chromium, tmp_path / "profile-1", "--virtual-time-budget=10000", "--dump-dom", checked_path.as_uri()
    )
    result = check_result(dumped)
    for image in result["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    return result


def screenshot(chromium: Path, page_path: Path, name: str, tmp_path: Path) -> None:
    """The page as published, screenshotted for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot_path = ARTIFACTS / name
    shot_path.unlink(missing_ok=True)
    shot = run_chromium(
        chromium,
        tmp_path / "profile-2",
        "--window-size=1280,2400",
        "--virtual-time-budget=10000",
        f"--screenshot={shot_path}",
        page_path.as_uri(),
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert shot_path.stat().st_size > 20_000


def test_report_page_in_headless_chromium(chromium, report_dir, tmp_path):
    result = check_page(chromium, report_dir / "report.html", tmp_path)
    assert result["title"] == "VirNucPro report: example.fa"
    assert "sequences\t12" in result["summary"] and "chunks\t53" in result["summary"]
    assert len(result["images"]) == 2
    screenshot(chromium, report_dir / "report.html", "report.png", tmp_path)
    shutil.copy(report_dir / "report.html", ARTIFACTS / "report.html")


def test_regions_and_tiers_in_headless_chromium(chromium, tmp_path):
    """A host contig with a prophage-like stretch (chunks 12-25 of 40), a phage and a read."""
    host = [0.05] * 11 + [0.97] * 14 + [0.05] * 15
    fasta, prepared, scores = scripted_sample(
        tmp_path / "sample", {"host_contig": host, "phage": [0.93] * 6, "read": [0.75]}, shard_size=50
    )
    report(fasta, prepared, scores, tmp_path / "out", quiet=True)
    result = check_page(chromium, tmp_path / "out" / "report.html", tmp_path)
    regions = result["sections"]["regions"]
    host_region = (tmp_path / "out" / "viral_regions.tsv").read_text().splitlines()[1].split("\t")
    start, end = host_region[2:4]
    assert "Viral regions (all 3, those of sequences not called virus first)" in regions
    # The prophage-like region is listed first, with its coordinates, confidence and kind.
    first_row = regions.splitlines()[2].split("\t")
    assert first_row[:4] == ["host_contig|region_1", start, end, str(int(end) - int(start) + 1)]
    assert first_row[-2:] == ["high", "region"]
    summary = result["summary"]
    assert "not called virus, with a viral region\t1" in summary and "viral regions\t3" in summary
    assert "chunks by confidence: high / medium / low\t46 / 1 / 0" in summary
    assert "published rule" in summary
    sequences = result["sections"]["sequences"]
    assert re.search(r"host_contig\t19963\t40\t40\t14\t0\.3500\tothers\tregion\t1\tmedium", sequences)
    assert re.search(r"phage\t2963\t6\t6\t6\t1\.0000\tvirus\tviral\t1\thigh", sequences)
    assert "red bars: viral regions" not in regions and len(result["images"]) == 2
    screenshot(chromium, tmp_path / "out" / "report.html", "report-regions.png", tmp_path)
