"""Every lesson in a real JupyterLab + Chromium: Restart Kernel and Run All Cells, no errors,
the unfinished exercises say "not done yet", one slider of each lesson redraws, and one
exercise of lesson 00 filled in through the editor passes.

Screenshots of each lesson after Run All go to test-artifacts/browser/.
Run alone:  .venv/bin/python -m pytest tests/browser -p no:cacheprovider
Under xdist: add `--dist loadgroup` (all browser tests run on one worker).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
from pathlib import Path

import pytest

import ran_in_browser

REPO = Path(__file__).resolve().parents[2]
LESSONS, SOLUTIONS = REPO / "lessons", REPO / "solutions"

LESSON_NAMES = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))
# Every lesson has at least one interactive widget with a slider (lesson 00 included).
LESSONS_WITH_SLIDERS = set(LESSON_NAMES)

RUN_ALL_TIMEOUT = 900            # s, one lesson's Run All (nbval runs them in < 60 s unloaded)
REDRAW_TIMEOUT = 120_000         # ms, one slider redraw
VIEWPORT = {"width": 1400, "height": 1000}
SHOT_HEIGHT = 3000               # px per screenshot piece

IDLE = '.jp-Notebook-ExecutionIndicator[data-status="idle"]'
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
VERDICT = ".jp-OutputArea-output"   # a check's verdict is one output of its cell
NOT_DONE = "not done yet"

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# Without Chromium: one skip line for the whole module (with CI set, the chromium_path
# fixture in conftest.py fails every test instead).
_CHROMIUM = Path(os.environ.get("PPO_CHROMIUM", "/usr/bin/chromium"))
if not _CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"browser tests need Chromium at {_CHROMIUM}: enable them with "
                "`apt-get install chromium`", allow_module_level=True)

if not LESSON_NAMES:
    pytest.skip("no lessons in lessons/ yet", allow_module_level=True)


def _order(n):
    def mark(fn):
        fn.browser_order = n
        return fn
    return mark


# --------------------------------------------------------------------------- the runs
class LessonRun:
    """One lesson opened in the browser after Restart Kernel and Run All Cells."""

    def __init__(self, name: str, page, session_id: str, saved: dict, dom_tracebacks: list,
                 stderr_texts: list, seconds: float):
        self.name, self.page, self.session_id = name, page, session_id
        self.saved, self.dom_tracebacks, self.stderr_texts = saved, dom_tracebacks, stderr_texts
        self.seconds = seconds


class Runner:
    """Opens one lesson at a time; the previous lesson's tab and kernel are closed first."""

    def __init__(self, lab, browser, artifacts: Path):
        self.lab, self.artifacts = lab, artifacts
        self.context = browser.new_context(viewport=VIEWPORT)
        self.current: LessonRun | None = None
        self.failed: dict[str, str] = {}

    def get(self, name: str) -> LessonRun:
        if self.current is not None and self.current.name == name:
            return self.current
        if name in self.failed:
            pytest.fail(f"{name}: Run All failed earlier: {self.failed[name]}", pytrace=False)
        self.close_current()
        try:
            self.current = self._run(name)
        except Exception as exc:
            self.failed[name] = f"{type(exc).__name__}: {exc}"
            raise
        return self.current

    def close_current(self) -> None:
        run, self.current = self.current, None
        if run is None:
            return
        try:
            run.page.close()
        finally:
            try:
                self.lab.api("DELETE", f"/api/sessions/{run.session_id}")
            except urllib.error.URLError:
                pass

    def close(self) -> None:
        try:
            self.close_current()
        finally:
            self.context.close()

    # ----------------------------------------------------------------------------------
    def _run(self, name: str) -> LessonRun:
        path = f"{name}.ipynb"
        session = self.lab.api("POST", "/api/sessions", {
            "path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}})
        page = self.context.new_page()
        try:
            return self._run_on_page(name, path, page, session["id"])
        except BaseException:
            try:
                self._screenshot(page, f"{name}_FAILED")
            except Exception:  # noqa: BLE001 - best effort
                pass
            page.close()
            self.lab.api("DELETE", f"/api/sessions/{session['id']}")
            raise

    def _run_on_page(self, name, path, page, session_id) -> LessonRun:
        page.goto(self.lab.url(f"/lab/tree/{path}"))
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        page.wait_for_selector(IDLE, state="attached", timeout=60_000)

        start = time.monotonic()
        _menu(page, "Kernel", "Restart Kernel and Run All Cells")
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=15_000)
        dialog.locator("button.jp-mod-accept").click()
        dialog.wait_for(state="detached", timeout=15_000)
        _wait_run_all(page, RUN_ALL_TIMEOUT)
        seconds = time.monotonic() - start

        dom_tracebacks, stderr_texts = [], []
        for text in page.locator(STDERR).all_inner_texts():
            (dom_tracebacks if "Traceback" in text or "Error" in text.split("\n", 2)[0]
             else stderr_texts).append(text.strip())

        # Autosave may have written the file during a long run: compare with now.
        before = (self.lab.root / path).stat().st_mtime_ns
        saved = self._save(page, path, before)
        self._screenshot(page, name)
        return LessonRun(name, page, session_id, saved, dom_tracebacks, stderr_texts, seconds)

    def _save(self, page, path: str, before: int) -> dict:
        page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")
        model = self._read_saved(path, before)
        if model is not None:
            return model
        _menu(page, "File", "Save Notebook")
        model = self._read_saved(path, before)
        if model is not None:
            return model
        raise AssertionError(f"{path}: saving from the browser did not change the file")

    def _read_saved(self, path: str, before: int, wait: float = 30) -> dict | None:
        """The notebook as saved, once the file's mtime moved past `before`, else None.

        Read from disk, not through the contents API: a GET that lands while the server
        is still writing reads a half-written file, and jupyter_server then "recovers" by
        putting the previous version (its atomic-write intermediate `.~NAME`) back in
        place, which would undo the save under test. So wait until the intermediate is
        gone and the file parses."""
        file, intermediate = self.lab.root / path, self.lab.root / f".~{path}"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if file.stat().st_mtime_ns != before and not intermediate.exists():
                    return json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass  # being replaced or half-written: look again
            time.sleep(0.3)
        return None

    def _screenshot(self, page, stem: str) -> None:
        """The notebook in pieces of SHOT_HEIGHT px: <stem>_01.png, <stem>_02.png, ..."""
        for old in self.artifacts.glob(f"{stem}_[0-9][0-9].png"):
            old.unlink()
        scroller = page.locator(".jp-NotebookPanel .jp-WindowedPanel-outer").first
        if scroller.count() == 0:
            scroller = page.locator(".jp-NotebookPanel .jp-Notebook").first
        page.set_viewport_size({"width": VIEWPORT["width"], "height": SHOT_HEIGHT})
        try:
            total, visible = scroller.evaluate("e => [e.scrollHeight, e.clientHeight]")
            step = max(visible - 40, 200)
            top, index = 0, 1
            while True:
                scroller.evaluate("(e, y) => { e.scrollTop = y; }", top)
                page.wait_for_timeout(150)
                page.screenshot(path=str(self.artifacts / f"{stem}_{index:02d}.png"))
                if top + visible >= total or index >= 30:
                    break
                top, index = top + step, index + 1
        finally:
            page.set_viewport_size(VIEWPORT)


def _menu(page, menu: str, item: str) -> None:
    page.locator(f'.lm-MenuBar-itemLabel:text-is("{menu}")').click()
    entry = page.locator(".lm-Menu-itemLabel", has_text=item).first
    entry.wait_for(timeout=10_000)
    entry.click()


_PROMPT_STATE = """() => {
  // JupyterLab does not execute an empty code cell: its prompt stays blank.
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')]
    .filter(c => (c.querySelector('.cm-content') || {textContent: 'x'}).textContent.trim())
    .map(c => (c.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.trim());
  return {
    total: prompts.length,
    numbered: prompts.filter(t => /^\\[\\d+\\]:?$/.test(t)).length,
    running: prompts.filter(t => t.includes('*')).length,
    errors: document.querySelectorAll(
      '.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
      .length,
    idle: !!document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]'),
  };
}"""


def _wait_run_all(page, timeout: float) -> None:
    """Until the kernel is idle with no queued cell and every code cell is numbered (or the
    run stopped at an error, which leaves the later cells unnumbered)."""
    deadline = time.monotonic() + timeout
    page.wait_for_timeout(500)
    settled = 0
    state = {}
    while time.monotonic() < deadline:
        state = page.evaluate(_PROMPT_STATE)
        done = state["idle"] and state["running"] == 0 and (
            state["numbered"] == state["total"] or state["errors"] > 0)
        settled = settled + 1 if done else 0
        if settled >= 3:  # idle on three polls in a row: not a gap between two cells
            return
        page.wait_for_timeout(400)
    raise AssertionError(f"Run All did not finish within {timeout} s: {state}")


@pytest.fixture(scope="module")
def runner(lab, browser, artifacts):
    r = Runner(lab, browser, artifacts)
    try:
        yield r
    finally:
        r.close()


# --------------------------------------------------------------------------- helpers
def _code_cells(nb: dict) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _has_check_cell(nb: dict) -> bool:
    return any(re.search(r"^\s*check\(", _source(c), re.M) for _, c in _code_cells(nb))


def _lesson_json(name: str) -> dict:
    return json.loads((LESSONS / f"{name}.ipynb").read_text())


# --------------------------------------------------------------------------- tests
@_order(0)
@pytest.mark.timeout(RUN_ALL_TIMEOUT + 300)
@pytest.mark.parametrize("lesson", LESSON_NAMES)
def test_run_all_without_errors(runner, lesson):
    run = runner.get(lesson)
    nb = run.saved
    errors = []
    for i, cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = "\n".join(out.get("traceback", []))[-1500:]
                tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}\n{tb}")
    assert not errors, f"{lesson}: error outputs after Run All:\n" + "\n\n".join(errors)
    assert not run.dom_tracebacks, (f"{lesson}: tracebacks shown in the browser:\n"
                                    + "\n\n".join(t[-1500:] for t in run.dom_tracebacks))
    unrun = [i for i, c in _code_cells(nb) if _source(c).strip() and c.get("execution_count") is None]
    assert not unrun, f"{lesson}: code cells without an execution count after Run All: {unrun}"
    print(f"{lesson}: Run All in the browser took {run.seconds:.1f} s"
          + (f"; stderr output (not errors): {len(run.stderr_texts)}" if run.stderr_texts else ""))

    if _has_check_cell(_lesson_json(lesson)):
        verdicts = run.page.locator(VERDICT)
        texts = verdicts.all_inner_texts()
        assert any(NOT_DONE in t for t in texts), (
            f"{lesson}: no check cell shows '{NOT_DONE}' for an unfinished exercise; "
            f"verdicts seen: {[t for t in texts if '✓' in t or '✗' in t][:10]}")
        first = verdicts.filter(has_text=NOT_DONE).first
        first.scroll_into_view_if_needed()
        assert first.is_visible(), f"{lesson}: the '{NOT_DONE}' verdict is not visible"
    # the lesson ran top to bottom as nbval-lax would run it: the Makefile need not run it again
    ran_in_browser.record(lesson, runner.lab.lesson_digests[lesson])


def _widget_state(widget) -> dict:
    return widget.evaluate("""w => ({
        readouts: [...w.querySelectorAll('.widget-readout')].map(r => r.textContent.trim()),
        text: [...w.querySelectorAll('.widget-output .jp-OutputArea-output')]
              .filter(o => !o.querySelector('img')).map(o => o.innerText.trim()).join('\\n'),
        imgs: [...w.querySelectorAll('.widget-output img')].map(i => i.src),
        value: (w.querySelector('.noUi-handle') || {getAttribute: () => null})
               .getAttribute('aria-valuenow'),
    })""")


def _move_slider(page, widget, presses: int) -> None:
    """Move the widget's first slider by `presses` steps with the keyboard (ArrowRight; or
    ArrowLeft when it sits at its maximum)."""
    handle = widget.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    now, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
    key = "ArrowLeft" if now is not None and top is not None and float(now) >= float(top) \
        else "ArrowRight"
    handle.focus()
    for _ in range(presses):
        page.keyboard.press(key)
        page.wait_for_timeout(100)


def _wait_changed(page, widget, before: dict, done=None) -> dict:
    """Poll the widget until its readout and its output (text or figure) differ from
    `before`, the kernel is idle, the state is the same on two polls in a row, and
    done(state) holds if given. Returns the last state seen (also on timeout)."""
    deadline = time.monotonic() + REDRAW_TIMEOUT / 1000
    after, previous = before, None
    while time.monotonic() < deadline:
        after = _widget_state(widget)
        idle = page.locator(IDLE).count() > 0
        changed = after["readouts"] != before["readouts"] and (
            after["text"] != before["text"] or after["imgs"] != before["imgs"])
        if changed and idle and after == previous and (done is None or done(after)):
            return after
        previous = after
        page.wait_for_timeout(300)
    return after


CLIP_LINE = re.compile(r"eps = ([0-9.]+): A > 0 flat for r > ([0-9.]+); "
                       r"A < 0 flat for r < ([0-9.]+)")


@_order(1)
@pytest.mark.timeout(300)
@pytest.mark.parametrize("lesson", LESSON_NAMES)
def test_slider_redraws(runner, lesson):
    run = runner.get(lesson)
    page = run.page
    widgets = page.locator(".widget-interact").filter(has=page.locator(".noUi-handle"))
    if widgets.count() == 0:
        dropdowns = page.locator(".widget-interact").filter(has=page.locator("select"))
        if dropdowns.count():   # an interactive widget without a slider: pick another option
            _check_dropdown(page, lesson, dropdowns.first)
            return
        if lesson in LESSONS_WITH_SLIDERS:
            pytest.fail(f"{lesson}: no interactive widget (.widget-interact with a slider "
                        f".noUi-handle or a dropdown) after Run All; every lesson must have one",
                        pytrace=False)
        pytest.skip(f"{lesson} has no slider widget")
    widget = widgets.first
    if lesson.startswith("03_"):   # the clip plot's widget, wherever it sits
        clip = widgets.filter(has_text="A > 0 flat for r >")
        assert clip.count(), f"{lesson}: no slider widget prints the clip readout line"
        widget = clip.first
    widget.scroll_into_view_if_needed()
    # The first draw must be there before the slider moves.
    page.wait_for_function(
        "w => w.querySelector('.widget-output .jp-OutputArea-output')", arg=widget.element_handle(),
        timeout=REDRAW_TIMEOUT)
    before = _widget_state(widget)

    if lesson.startswith("03_"):
        match = CLIP_LINE.search(before["text"])
        assert match, f"{lesson}: no clip readout line in the widget output: {before['text']!r}"
        eps0 = float(match.group(1))
        assert eps0 == pytest.approx(0.2), f"{lesson}: the eps slider starts at {eps0}, not 0.20"
        _move_slider(page, widget, 2)  # step 0.05: 0.20 -> 0.30
        after = _wait_changed(page, widget, before, done=lambda state: bool(
            (m := CLIP_LINE.search(state["text"])) and abs(float(m.group(1)) - 0.3) < 1e-9
            and state["imgs"]))
        match = CLIP_LINE.search(after["text"])
        assert match, f"{lesson}: no clip readout after moving eps: {after['text']!r}"
        assert [float(g) for g in match.groups()] == pytest.approx([0.3, 1.3, 0.7]), (
            f"{lesson}: after moving eps to 0.30 the readout says {match.group(0)!r}")
        assert after["imgs"] and after["imgs"] != before["imgs"], (
            f"{lesson}: the clip figure did not change after moving eps")
        assert any("0.30" in r for r in after["readouts"]), after["readouts"]
        return

    _move_slider(page, widget, 1)
    after = _wait_changed(page, widget, before)
    assert after["readouts"] != before["readouts"], (
        f"{lesson}: the slider readout did not change after pressing an arrow key on it "
        f"(before {before['readouts']}, after {after['readouts']})")
    assert after["text"] != before["text"] or after["imgs"] != before["imgs"], (
        f"{lesson}: moving the slider ({before['readouts']} -> {after['readouts']}) changed "
        f"neither the printed output nor the figure; output text: {after['text'][:300]!r}")


def _check_dropdown(page, lesson: str, widget) -> None:
    select = widget.locator("select").first
    select.scroll_into_view_if_needed()
    page.wait_for_function(
        "w => w.querySelector('.widget-output .jp-OutputArea-output')", arg=widget.element_handle(),
        timeout=REDRAW_TIMEOUT)
    before = _widget_state(widget)
    options = select.locator("option").all_inner_texts()
    current = select.evaluate("s => s.options[s.selectedIndex].text")
    others = [o for o in options if o != current]
    assert others, f"{lesson}: the widget's dropdown has a single option {options}"
    select.select_option(label=others[0])
    deadline = time.monotonic() + REDRAW_TIMEOUT / 1000
    after, previous = before, None
    while time.monotonic() < deadline:
        after = _widget_state(widget)
        changed = after["text"] != before["text"] or after["imgs"] != before["imgs"]
        if changed and page.locator(IDLE).count() and after == previous:
            break
        previous = after
        page.wait_for_timeout(300)
    assert after["text"] != before["text"] or after["imgs"] != before["imgs"], (
        f"{lesson}: choosing {others[0]!r} instead of {current!r} in the widget's dropdown "
        f"changed neither the printed output nor the figure")


def _solution_source(lesson: str, cell_id: str) -> str:
    nb = json.loads((SOLUTIONS / f"{lesson}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell.get("id") == cell_id:
            lines = [ln for ln in _source(cell).splitlines()
                     if ln.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
            return "\n".join(lines)
    raise AssertionError(f"solutions/{lesson}.ipynb has no cell with id {cell_id!r}")


EXERCISE_LESSON = next((n for n in LESSON_NAMES if n.startswith("00_")), None)


@_order(2)
@pytest.mark.timeout(300)
@pytest.mark.parametrize("lesson", [EXERCISE_LESSON] if EXERCISE_LESSON else [])
def test_fill_in_exercise_in_the_editor(runner, lesson):
    """Type the reference discounted_returns into lesson 00's stub and run its check."""
    exercise = "discounted_returns"
    lesson_nb = _lesson_json(lesson)
    stub_id = next(c["id"] for _, c in _code_cells(lesson_nb)
                   if _source(c).startswith(f"def {exercise}("))
    answer = _solution_source(lesson, stub_id)
    assert "raise NotImplementedError" not in answer

    run = runner.get(lesson)
    page = run.page
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    stub = cells.filter(has=page.locator(".cm-content", has_text=f"def {exercise}(")).first
    check_cell = cells.filter(has=page.locator(".cm-content",
                                               has_text=f'check("{exercise}"')).first
    stub.scroll_into_view_if_needed()
    shown = "\n".join(check_cell.locator(VERDICT).all_inner_texts())
    assert NOT_DONE in shown, f"the check should start unfinished, it shows {shown!r}"

    editor = stub.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(answer)
    typed = editor.inner_text()

    def lines(text):
        return [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    assert lines(typed) == lines(answer), f"the editor holds something else:\n{typed}"

    page.keyboard.press("Shift+Enter")   # run the stub, select the check cell
    page.keyboard.press("Shift+Enter")   # run the check cell
    verdict = check_cell.locator(VERDICT, has_text=f"✓ {exercise}: passed")
    try:
        verdict.wait_for(timeout=60_000)
    except Exception:  # noqa: BLE001 - report what the cell shows instead
        shown = check_cell.locator(".jp-OutputArea").inner_text()
        pytest.fail(f"{lesson}: after typing the reference solution the check shows "
                    f"{shown!r}", pytrace=False)
    assert verdict.is_visible()
