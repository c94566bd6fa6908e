"""Headless Chromium over the rendered book, for the tests: serve the HTML folder on
127.0.0.1, drive Debian's ``chromium`` with its ``chromedriver`` (Selenium Manager is never
asked for anything: both paths are given), with the network off, and list what is wrong with
a page as a reader would see it on a first visit (:func:`check_page`).

The checks, on each page:

1. console: no ``SEVERE`` entry in the browser log (a script error, a resource that failed to
   load: with the network off, anything fetched from the internet fails here), but for the
   browser's own request of ``/favicon.ico``, which no page asks for;
2. images: every ``<img>`` is loaded and decoded (``complete`` and ``naturalWidth > 0``);
3. maths: MathJax has started and finished typesetting, every maths element of Sphinx
   (``.math``) holds an ``mjx-container``, and the visible text of the article outside code
   shows no raw TeX (``\\(``, ``\\[``, ``$$``, or ``$...$`` around a ``\\command``);
4. overflow, inside the content column (``article.bd-article`` of the pydata/book theme): a
   ``table``, ``pre``, ``div.cell_output`` or ``img`` whose right edge lies more than
   ``TOLERANCE_PX`` right of the column's, or that is (or sits in) a box scrolled sideways
   that hides more than ``TOLERANCE_PX`` of it. The theme wraps Markdown tables in
   ``div.pst-scrollable-table-container`` and notebook outputs in ``div.output`` (both
   ``overflow-x: auto``) and lets every ``pre`` scroll: a table or output too wide never
   sticks out of the column, it hides its right part behind a scroll bar, so a scrolled box
   counts as an overflow. Except for code: a code block outside cell outputs (a cell's
   source, a Markdown code block) keeps its lines, unwrapped, and may scroll; only its box
   must stay inside the column;
5. links: every relative ``a[href]`` names a file of the build (a folder: its
   ``index.html``), and its ``#fragment`` an ``id`` there (on this page, in the live DOM).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)
TOLERANCE_PX = 1
MATHJAX_TIMEOUT_S = 20
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
         # the network off: every host name but the local server's fails to resolve
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\n]{0,200}?\\[A-Za-z]+[^$\n]{0,200}?\$")


def unavailable() -> str | None:
    """Why the browser tests cannot run here (``None`` when they can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            return (f"{path} is absent: install Debian's chromium and chromium-driver "
                    "(.ci/run does, as root)")
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) from a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def chromium(profile: Path) -> Iterator:
    """A headless Chromium WebDriver with a fresh profile in ``profile``, the network off,
    its console log kept; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(MATHJAX_TIMEOUT_S + 10)
        yield driver
    finally:
        driver.quit()


_WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const deadline = Date.now() + arguments[0] * 1000;
function poll() {
  const mj = window.MathJax;
  if (!mj) { done("absent"); return; }
  if (mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done("typeset"), (e) => done("failed: " + e));
  } else if (Date.now() > deadline) {
    done("MathJax is configured but never started (its script did not load)");
  } else { setTimeout(poll, 50); }
}
poll();
"""

_INSPECT = r"""
const tolerance = arguments[0];
const column = document.querySelector("article.bd-article") ||
               document.querySelector("#main-content") || document.querySelector("main");
const out = {column: null, images: [], maths: 0, typeset: 0, text: "", overflow: [],
             links: [], ids: []};
const tag = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
                  (e.classList.length ? "." + [...e.classList].slice(0, 2).join(".") : "");
const describe = (e) => {  // e.g. table.table (cell output) in section "Table 1"
  let name = tag(e);
  const where = e.closest(".cell_output") ? "cell output" : e.closest(".cell_input") ?
                "cell source" : "";
  if (where && !e.matches("div.cell_output")) name += ` (${where})`;
  if (e.matches("pre, table")) {
    name += ` "${e.textContent.replace(/\s+/g, " ").trim().slice(0, 40)}…"`;
  }
  const section = e.closest("section");
  const heading = section && section.querySelector("h1, h2, h3, h4");
  if (heading) name += ` in section "${heading.textContent.replace(/[#\\s]+$/, "").trim()}"`;
  return name;
};
for (const img of document.images) {
  out.images.push({src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0});
}
for (const a of document.querySelectorAll("a[href]")) {
  out.links.push({href: a.getAttribute("href"), url: a.href});
}
out.ids = [...document.querySelectorAll("[id], a[name]")].map((e) => e.id || e.name);
if (column) {
  const right = column.getBoundingClientRect().right;
  out.column = {right: right, width: column.clientWidth};
  out.maths = column.querySelectorAll(".math").length;
  out.typeset = [...column.querySelectorAll(".math")]
    .filter((e) => e.querySelector("mjx-container")).length;
  // the visible text outside code and typeset maths
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight";
  const walker = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
  const parts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    if (parent.checkVisibility && !parent.checkVisibility()) continue;
    parts.push(node.textContent);
  }
  out.text = parts.join(" ");
  for (const e of column.querySelectorAll("table, pre, div.cell_output, img")) {
    if (e.checkVisibility && !e.checkVisibility()) continue;
    const box = e.getBoundingClientRect();
    if (box.right > right + tolerance) {
      out.overflow.push(`${describe(e)}: its right edge is ${Math.round(box.right - right)} px ` +
                        `right of the content column's (${Math.round(box.width)} px wide in ` +
                        `a ${column.clientWidth} px column)`);
      continue;
    }
    if (e.matches("pre") && !e.closest(".cell_output")) continue;  // code may scroll
    for (let box = e; box && box !== column; box = box.parentElement) {
      const style = getComputedStyle(box);
      if (!/auto|scroll|hidden|clip/.test(style.overflowX)) continue;
      if (box.scrollWidth > box.clientWidth + tolerance) {
        out.overflow.push(`${describe(e)}: ${box === e ? "it" : "its box " + tag(box)} scrolls ` +
                          `sideways, hiding ${box.scrollWidth - box.clientWidth} px ` +
                          `(${box.scrollWidth} px of content in ${box.clientWidth} px)`);
        break;
      }
    }
  }
}
return out;
"""


def check_page(driver, url: str, root: Path, base: str) -> list[str]:
    """Load ``url`` (a page of the book in ``root``, served at ``base``) as a first visit
    and return what is wrong with it, one line per problem (empty: the page passes). See
    the module's doc."""
    driver.get_log("browser")  # drop what an earlier page left
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {
        "origin": base.rstrip("/"), "storageTypes": "local_storage,session_storage"})
    driver.get(url)
    problems = _follow_redirect(driver, url, root, base)
    mathjax = driver.execute_async_script(_WAIT_FOR_MATHJAX, MATHJAX_TIMEOUT_S)
    if mathjax not in ("absent", "typeset"):
        problems.append(f"maths: MathJax {mathjax}")
    page = driver.execute_script(_INSPECT, TOLERANCE_PX)
    for entry in driver.get_log("browser"):
        message = entry.get("message", "")
        # the browser's own request for /favicon.ico (the book declares no icon) is no page's
        if entry.get("level") == "SEVERE" and not message.startswith(f"{base}favicon.ico "):
            problems.append(f"console error: {message}")
    for image in page["images"]:
        if not image["ok"]:
            problems.append(f"image not decoded: {image['src']}")
    if page["column"] is None:
        problems.append("no content column (article.bd-article) on the page")
        return problems
    if page["maths"] and mathjax == "absent":
        problems.append(f"maths: {page['maths']} maths element(s) but no MathJax on the page")
    if page["typeset"] < page["maths"]:
        problems.append(f"maths: {page['maths'] - page['typeset']} of {page['maths']} maths "
                        "element(s) not typeset (no mjx-container)")
    for raw in sorted(set(m.group(0) for m in RAW_TEX.finditer(page["text"])))[:10]:
        problems.append(f"maths: raw TeX in the text: {raw!r}")
    problems += [f"overflow: {line}" for line in page["overflow"]]
    problems += _broken_links(page["links"], set(page["ids"]), driver.current_url, root, base)
    return problems


def _follow_redirect(driver, url: str, root: Path, base: str) -> list[str]:
    """Where the page is a ``<meta http-equiv="refresh">`` redirect (the book's
    ``index.html``), wait for the browser to land on its target; the problem if it cannot."""
    from selenium.webdriver.support.ui import WebDriverWait

    source = _file(root, base, url).read_text(errors="replace")
    found = re.search(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', source,
                      re.IGNORECASE)
    if not found:
        return []
    target = urljoin(url, found.group(1))
    if not _file(root, base, target).is_file():
        return [f"redirect to {found.group(1)!r}: no such file"]
    WebDriverWait(driver, 10).until(lambda d: d.current_url == target and d.execute_script(
        "return document.readyState") == "complete")
    return []


def _file(root: Path, base: str, url: str) -> Path:
    """The file of ``root`` that ``url`` (under ``base``) serves (a folder: its index.html)."""
    path = root / unquote(urlsplit(url).path[len(urlsplit(base).path):])
    return path / "index.html" if path.is_dir() else path


def _broken_links(links: list[dict], ids: set[str], url: str, root: Path,
                  base: str) -> list[str]:
    problems = []
    here = urlsplit(url)
    for link in links:
        href, target = link["href"], urlsplit(link["url"])
        if urlsplit(href).scheme or href.startswith("//"):
            continue  # absolute: not the book's to resolve (the network is off anyway)
        if not link["url"].startswith(base):
            problems.append(f"link {href!r} leaves the book")
            continue
        path = _file(root, base, link["url"])
        if not path.is_file():
            problems.append(f"link {href!r}: no file {path.relative_to(root).as_posix()}")
            continue
        fragment = unquote(target.fragment)
        if not fragment:
            continue
        if target.path == here.path:
            if fragment not in ids:
                problems.append(f"link {href!r}: no id {fragment!r} on this page")
        elif path.suffix == ".html" and not re.search(
                rf'\b(id|name)="{re.escape(fragment)}"', path.read_text(errors="replace")):
            problems.append(f"link {href!r}: no id {fragment!r} in "
                            f"{path.relative_to(root).as_posix()}")
    return problems


def screenshot(driver, path: Path) -> Path:
    """Save a PNG of the whole page (beyond the window, through the DevTools protocol)."""
    import base64

    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": max(size["width"], WINDOW[0]),
                 "height": size["height"], "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def check_and_record(driver, url: str, root: Path, base: str, artifacts: Path,
                     name: str) -> tuple[list[str], Path | None]:
    """:func:`check_page`; on a failing page also save ``<name>.png`` (the whole page) and
    ``<name>.txt`` (its problems) into ``artifacts``. Returns the problems and the
    screenshot's path (``None`` when the page passes)."""
    problems = check_page(driver, url, root, base)
    if not problems:
        return problems, None
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / f"{name}.txt").write_text(f"{url}\n" + "\n".join(problems) + "\n")
    return problems, screenshot(driver, artifacts / f"{name}.png")

