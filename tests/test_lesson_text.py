"""Numbers in lesson text say only what the cells print (issue 13).

Learners run ``lessons/`` without stored outputs and compare the text with what their own
cells print. So every number in a markdown cell of ``solutions/NN_*.ipynb`` that is not
inside a LaTeX equation must appear in the source or the stored output of a code cell
*above* it (or in the source of the code cells right below it, before the next markdown
cell: a setting the text announces, such as "1024 steps"), formatting-tolerant (41.7
matches a printed 41.70 or 41.68; "2.3x" matches a printed 2.3; "40%" matches 40% or 0.40;
"64k" matches 64000), or be listed in ``ALLOWED`` below with a one-line reason (a
hyperparameter from the notes, a year, a paper's number, arithmetic...).

Two more checks of the same kind:
- a number found only in the output of an ``# NBVAL_IGNORE_OUTPUT`` cell varies from machine
  to machine: its sentence must say it is approximate ("about", "more than", ...) or point
  at the learner's own printout ("printed", "your"), and the cell should assert the claim;
- comparisons without a number ("several times longer", "halved", "is faster") must be
  listed in ``ALLOWED_PHRASES`` with the printed line or assert that backs them.

Not checked: numbers in LaTeX ($...$, $$...$$), headings, list markers, references
(lesson 03, section 2, eq. 3.2, (1.2), errors 1 and 2 of the source notes, "03", a lesson id
such as 08, a table's row number), reading times ("45 minutes"), citations ("et al., 2015")
and library versions ("SB3 2.x").
Failures name the notebook, the cell id, the number and its sentence.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
CHECKED = {"00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"}  # held to the rule

# (lesson number, number as written in the text) -> why it needs no printed line
ALLOWED: dict[tuple[str, str], str] = {
    ("00", "500"): "CartPole-v1's time limit, a fact of the environment",
    ("01", "200"): "the source notes' story: a policy scores 200, then drops to 10",
    ("01", "10"): "the source notes' story: a policy scores 200, then drops to 10",
    ("01", "4"): "'Step 4' names a line of the algorithm box above it",
    ("01", "1003"): "a quote of the notes: 'Step 1003-∞: Can't recover'",
    ("03", "0.8"): "the notes' words 'clipped at 0.8' (error 1 of the source README)",
    ("03", "1.2"): "the notes' words 'clipped at 1.2' (error 2 of the source README)",
    ("00", "10"): "arithmetic: the effective horizon 1 / (1 - gamma) for gamma = 0.9",
    ("00", "100"): "arithmetic: the effective horizon 1 / (1 - gamma) for gamma = 0.99",
    ("01", "16"): "the algorithm box: train_vpg's n_envs, set in the training cell below it",
    ("01", "20"): "the algorithm box: train_vpg's vf_iters default (20 regression steps)",
    ("02", "3"): "shapes (3,) and (B, 3) in the exercise statement",
    ("02", "16"): "train_trpo shares train_vpg's default n_envs = 16 (lesson 01)",
    ("03", "3"): "the notes' hyperparameters: 3 to 10 epochs are the norm",
    ("03", "10"): "the notes' hyperparameters: 3 to 10 epochs are the norm",
    ("05", "13"): "the cited blog post's count of core details (Huang et al., 2022); the table "
                  "lists them, one row each",
    ("05", "37"): "the title of the cited blog post, The 37 Implementation Details of PPO",
    ("05", "3e-4"): "an example argument in the details table, linear_schedule(3e-4): the notes' "
                    "learning rate, no run",
    ("05", "0.05"): "the upper edge of the troubleshooting band for approx_kl "
                    "(ppo_lib.diagnostics.APPROX_KL_HIGH) the dashboard draws, a threshold",
    ("05", "250000"): "the size of Andrychowicz et al.'s study (250,000 runs), a fact of the "
                      "cited paper",
    ("05", "0.95"): "check-yourself question 3's hypothetical explained variance: a question, "
                    "not a run",
    ("05", "0.98"): "check-yourself question 6's hypothetical explained variance: a question, "
                    "not a run",
    ("06", "2048"): "the notes' MuJoCo preset (n_steps=2048), quoted as the notes write it",
    ("06", "3e-4"): "the notes' MuJoCo preset (learning_rate=3e-4), quoted as the notes write it",
    ("06", "0.05"): "check-yourself question 3's hypothetical train/std: a question, not a run",
    ("07", "0.02"): "the table's healthy clip_fraction band 0.02 - 0.3, a rule of thumb of the "
                    "notes' metrics list, no run",
    ("07", "0.3"): "the table's healthy clip_fraction band (0.02 - 0.3) and the notes' clip "
                   "range 0.1 - 0.3 in the hyperparameter table",
    ("07", "3e-4"): "the notes' hyperparameter table: learning rate 3e-4",
    ("07", "2048"): "the notes' hyperparameter table (n_steps 128 - 2048) and check-yourself "
                    "question 3's hypothetical rollout of 2048 samples",
    ("07", "0.9"): "the notes' hyperparameter table: GAE lambda 0.9 - 0.99",
    ("07", "500"): "CartPole-v1's time limit (every episode of a solved run lasts 500 steps), "
                   "also check-yourself question 2's hypothetical return",
    ("07", "0.015"): "arithmetic: target_kl's stop threshold 1.5 x 0.01, written out in the "
                     "same sentence's equation",
    ("07", "6006"): "TensorBoard's default port in the address it prints, not a run",
    ("07", "0.004"): "check-yourself question 5's hypothetical approx_kl: a question, not a run",
    ("07", "0.25"): "check-yourself question 5's answer: rule (7.2) halves the hypothetical "
                    "beta 0.5",
    ("08", "10000"): "check-yourself question 2's hypothetical save_freq: a question, not a run",
    ("08", "80000"): "check-yourself question 2's answer: arithmetic 10,000 x 8 envs",
    ("09", "84"): "the standard Atari frame size 84 x 84 (DQN paper), make_atari's setting; "
                  "printed from section 3 on",
    ("09", "3136"): "the Nature CNN's flattened features, 64 x 7 x 7 (arithmetic; section 5 "
                    "asserts n_flatten == 3136)",
    ("09", "10"): "the PPO paper's budget of 10M frames per game, a fact of the cited paper",
    ("09", "32"): "the PPO paper's table 5: minibatch 32 x 8, a fact of the cited paper",
    ("09", "3"): "the PPO paper's table 5: 3 epochs, a fact of the cited paper",
    ("09", "0.99"): "the PPO paper's table 5: gamma 0.99, a fact of the cited paper",
    ("09", "0.95"): "the PPO paper's table 5: GAE lambda 0.95, a fact of the cited paper",
    ("09", "0.01"): "the PPO paper's table 5: entropy coefficient 0.01, a fact of the cited "
                    "paper",
    ("09", "2600"): "the name of the console, the Atari 2600, not a number of a run",
    ("09", "2.5"): "arithmetic: 5 pixels to 2 is 2.5 per output (210 / 84 = 2.5 in check-"
                   "yourself 2), and 10M frames / frame skip 4 = 2.5M agent steps",
    ("09", "30"): "make_atari's noop_max: up to 30 random NOOPs at reset (the DQN paper's "
                  "no-op starts), a setting, not a run",
    ("09", "512"): "the Nature CNN's 512 features (DQN paper's architecture); section 5 prints "
                   "'linear 3136 -> 512'",
    ("09", "18"): "ALE's full action set of 18 actions, a fact of the emulator",
    ("09", "7"): "arithmetic: the conv formula gives 64 x 7 x 7 (the table, check-yourself 3), "
                 "and 2.5M steps at 100 steps/s is about 7 hours (check-yourself 6)",
    ("09", "8192"): "arithmetic: 2,048 agent steps x frame skip 4",
    ("09", "21"): "Pong's rules: a game ends when one side has 21 points",
    ("09", "200"): "DQN papers report Atari scores at 200M frames, a fact of the cited papers",
    ("09", "76"): "check-yourself 3's answer: the conv formula's arithmetic, 84 - 8 = 76",
    ("09", "16"): "check-yourself 3's answer: the conv formula's arithmetic, 20 - 4 = 16",
    ("10", "250000"): "the size of Andrychowicz et al.'s study (250,000 agents), a fact of the "
                      "cited paper",
    ("10", "37"): "the title of the cited blog post, The 37 Implementation Details of PPO",
    ("10", "13"): "the cited blog post's count of core details (Huang et al., 2022), placed in "
                  "ppo_lib by lesson 05",
    ("10", "1e-5"): "ppo_lib's Adam epsilon, a constant of the code (lesson 05's details table, "
                    "tests/test_ablations.py asserts it)",
    ("10", "6379"): "Ray's default head port in the `ray start` command lines, a setting",
    ("10", "20"): "rl-baselines3-zoo's n_epochs in presets.get('cartpole_tuned'), a setting quoted "
                  "to say what CARTPOLE_BASE changes (its n_epochs=5 is printed right below)",
    ("10", "3e-3"): "CARTPOLE_BASE's initial learning rate, a setting (printed right below as "
                    "LinearSchedule(start=0.003))",
    ("11", "1.16"): "the TRL version tests/test_trl_parity.py runs (pyproject's trl>=1.16,<2)",
    ("11", "1.12"): "the last TRL release with a PPOTrainer (trl.experimental.ppo), a fact of "
                    "TRL's release history read from its wheels",
    ("11", "0.05"): "PPOConfig.kl_coef's default in TRL 1.12, a library default",
    ("11", "0.19"): "the TRL release from which GRPOConfig.beta defaults to 0.0, a fact of TRL's "
                    "releases",
    ("11", "1.10"): "the TRL release that made use_bias_correction_kl=True the default "
                    "(tests/test_trl_parity.py measures its effect)",
}

# (lesson number, phrase of the sentence) -> the printed line or assert that backs it
ALLOWED_PHRASES: dict[tuple[str, str], str] = {
    ("00", "run faster that way"): "CONTRIBUTING's setup convention (one thread for small "
                                   "MLPs), not a claim about a run of the lesson",
    ("02", "tens of times"): "printed max KL per update 0.3884 against delta = 0.01; the cell "
                             "asserts max KL > 10 delta",
    ("03", "twice as often"): "the definition r = 2 in words, not a measurement",
    ("06", "twice as hard"): "printed 'clipped / exact d/d log_std: 1.82'; the cell asserts "
                             "1.5 < ratio < 2",
    ("07", "halved and doubled"): "printed 'beta halved N, doubled N, kept N times'; the cell "
                                  "asserts both moves and a change in most updates",
    ("07", "halved to 0.25"): "check-yourself question 5's answer: rule (7.2) on a hypothetical "
                              "update, no run",
    ("08", "with replacement many times"): "the bootstrap's repeated resampling, a procedure, "
                                           "not a comparison of runs",
    ("09", "several times more sample-efficient"): "the literature's summary of SAC and TD3 "
                                                   "against PPO on MuJoCo, not a run here",
}

LATEX = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.S)
HTML = re.compile(r"<[^>]+>")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
HEADING = re.compile(r"^\s*#.*$", re.M)
LIST_MARKER = re.compile(r"^(\s*)\d+\.(?=\s)|^\|\s*\d+\s*(?=\|)|^\|\s*\d+\.(?=\s)",
                         re.M)                          # "1. ", "| 1 |", "| 1. step |"
ENUMERATION = re.compile(r"\b1,\s*2(?:,\s*3)?,\s*(?:\.\.\.|…)")          # "for i in 1, 2, ..."
LESSON_ID = re.compile(r"(?<![\w.])0\d(?![\d.])")                        # 03, 08: lesson ids
REFERENCE = re.compile(
    r"\b(?:lessons?|sections?|errors?|eq\.|eqs\.|equations?|checklist|item)"
    r"[\s-]+\(?\d+(?:\.\d+)?\)?(?:\s*(?:-|–|to|and|,|or)\s*\d+(?:\.\d+)?)*", re.I)
VERSION = re.compile(r"\b\d+(?:\.\d+)*\.x\b")                            # "SB3 2.x"
EQUATION_REF = re.compile(r"\(\d+\.\d+\)|\beq\.\s*\d+\.\d+|\"\d\d\"")   # (1.2), eq. 3.2, "03"
METADATA = re.compile(r"\b\d+\s+minutes\b|\bet al\.?,?\s+\(?\d{4}\b")   # time to read; a citation
THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:[,_ \u202f]\d{3})+)(?![\d.])")
NUMBER = re.compile(r"(?<![\w.^/])(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(k\b|%)?", re.I)
ANY_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.I)
APPROXIMATE = re.compile(r"\babout\b|~|≈|\baround\b|\broughly\b|\bapproximately\b|"
                         r"\border of\b|\bprinted\b|\bprintout\b|\byour\b|\bless than\b|"
                         r"\bmore than\b|\bbelow\b|\babove\b|\bat least\b|\bunder\b", re.I)
COMPARISON = re.compile(
    r"\b(?:several|many|two|three|four|five|ten|tens of)\s+times\b|\bhalved\b|\bdoubled\b|"
    r"\btwice as\b|\b(?:is|are|runs?) (?:much |far )?(?:faster|slower)\b", re.I)


def lesson_of(path: Path) -> str:
    return path.name[:2]


def cell_text(cell) -> str:
    return "".join(cell["source"])


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append("".join(out["text"]))
        if "text/plain" in out.get("data", {}):      # not text/html: its styles hold numbers
            parts.append("".join(out["data"]["text/plain"]))
    return "\n".join(parts)


def join_thousands(text: str) -> str:
    """50_000, 50 000 and 1,687,719 as one number each."""
    return THOUSANDS.sub(lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), text)


def numbers_in(text: str) -> set[float]:
    return {float(m.group(0)) for m in ANY_NUMBER.finditer(join_thousands(text))}


def decimals(written: str) -> int:
    mantissa = written.lower().split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def matches(written: str, suffix: str, pool: set[float], approximate: bool = False) -> bool:
    """Whether the number as written is some number of the pool, rounded as written.

    A whole number matches a rounded one (6 for a printed 5.7) only in a sentence that says
    it is approximate: otherwise "iteration 6" would match any 5.5 to 6.49 printed above."""
    value = float(written)
    if "e" in written.lower():
        return any(math.isclose(value, c, rel_tol=1e-9) for c in pool)
    if suffix.lower() == "k":
        return any(abs(c - 1000 * value) < 500 for c in pool)
    if decimals(written) == 0 and not approximate and suffix != "%":
        return value in pool
    candidates = [(value, decimals(written))]
    if suffix == "%":
        candidates.append((value / 100, decimals(written) + 2))
    return any(abs(round(c, places) - target) < 10 ** -(places + 3)
               for target, places in candidates for c in pool)


def prose(markdown: str) -> str:
    """The markdown without LaTeX, HTML, link targets, headings, list markers, references."""
    text = LATEX.sub(" ", markdown)
    text = HTML.sub(" ", text)
    text = LINK_TARGET.sub("]", text)
    text = HEADING.sub(" ", text)
    text = LIST_MARKER.sub(r"\1", text)
    text = ENUMERATION.sub(" ", text)
    text = LESSON_ID.sub(" ", text)
    text = EQUATION_REF.sub(" ", text)
    text = VERSION.sub(" ", text)
    text = METADATA.sub(" ", text)
    text = REFERENCE.sub(" ", text)
    return join_thousands(text)


def sentence_at(text: str, start: int, end: int) -> str:
    left = max(text.rfind(". ", 0, start), text.rfind("\n\n", 0, start),
               text.rfind("\n- ", 0, start))
    rights = [i for i in (text.find(". ", end), text.find("\n\n", end)) if i != -1]
    right = min(rights) if rights else len(text)
    return " ".join(text[left + 1:right + 1].split())


def problems_in(path: Path) -> list[str]:
    """Every number or comparison of the notebook's text that breaks the rule, described."""
    cells = json.loads(path.read_text())["cells"]
    lesson = lesson_of(path)
    below: list[set[float]] = []        # sources of the code cells right below each cell
    for i in range(len(cells)):
        numbers: set[float] = set()
        for later in cells[i + 1:]:
            if later["cell_type"] != "code":
                break
            numbers |= numbers_in(cell_text(later))
        below.append(numbers)
    pool: set[float] = set()            # every number above: code sources and outputs
    steady: set[float] = set()          # the same without outputs of NBVAL_IGNORE_OUTPUT cells
    found = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source, outputs = cell_text(cell), output_text(cell)
            pool |= numbers_in(source) | numbers_in(outputs)
            steady |= numbers_in(source)
            if "NBVAL_IGNORE_OUTPUT" not in source:
                steady |= numbers_in(outputs)
            continue
        if cell["cell_type"] != "markdown":
            continue
        text = prose(cell_text(cell))
        where = f"{path.name} cell {cell.get('id')}"
        for m in NUMBER.finditer(text):
            written, suffix = m.group(1), m.group(2) or ""
            if (lesson, written) in ALLOWED:
                continue
            sentence = sentence_at(text, m.start(), m.end())
            approximate = bool(APPROXIMATE.search(sentence))
            if not matches(written, suffix, pool | below[index], approximate):
                found.append(f"{where}: {written}{suffix} is printed by no code cell above it: "
                             f"{sentence!r}")
            elif not approximate and not matches(written, suffix, steady | below[index]):
                found.append(f"{where}: {written}{suffix} comes only from an NBVAL_IGNORE_OUTPUT "
                             f"output (it varies by machine); say 'about' or point at the "
                             f"printout, and assert the claim: {sentence!r}")
        for m in COMPARISON.finditer(text):
            sentence = sentence_at(text, m.start(), m.end())
            if not any(key == lesson and phrase.lower() in sentence.lower()
                       for key, phrase in ALLOWED_PHRASES):
                found.append(f"{where}: the comparison {m.group(0)!r} needs a printed ratio "
                             f"or an entry in ALLOWED_PHRASES naming what backs it: "
                             f"{sentence!r}")
    return found


OWNED = [p for p in SOLUTIONS if lesson_of(p) in CHECKED]


@pytest.mark.parametrize("path", OWNED, ids=[p.name for p in OWNED])
def test_numbers_in_text_are_printed_above(path):
    problems = problems_in(path)
    assert not problems, "\n".join(problems)


def test_every_allowlist_entry_is_needed_and_says_why():
    """An entry whose number (or phrase) is gone from its lesson's text is stale."""
    for (lesson, written), reason in list(ALLOWED.items()) + list(ALLOWED_PHRASES.items()):
        assert len(reason.split()) >= 3, f"state the reason for {(lesson, written)}"
        paths = [p for p in SOLUTIONS if lesson_of(p) == lesson]
        assert paths, f"no lesson {lesson} for the allowlist entry {(lesson, written)}"
        text = " ".join(prose(cell_text(c)) for c in json.loads(paths[0].read_text())["cells"]
                        if c["cell_type"] == "markdown")
        pattern = (re.escape(written) if (lesson, written) in ALLOWED_PHRASES
                   else rf"(?<![\w.^/]){re.escape(written)}(?!\d)")
        assert re.search(pattern, text, re.I), f"stale allowlist entry {(lesson, written)}"


def test_the_checker_catches_issue_13s_kind(tmp_path):
    """Sentences of issue 13's list, against outputs like the ones they contradicted."""
    def problems(markdown, output="after ONE step of size 30: mean return 41.7\n",
                 ignore=False):
        source = ("# NBVAL_IGNORE_OUTPUT\n" if ignore else "") + "print(x)"
        cells = [{"cell_type": "code", "id": "c1", "metadata": {}, "source": [source],
                  "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]},
                 {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": [markdown]}]
        path = tmp_path / "99_probe.ipynb"
        path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                    "nbformat_minor": 5}))
        return problems_in(path)

    assert problems("took the return to about 41.7") == []
    assert problems("took the return to 41.70") == []
    assert problems("took the return to 42") != []
    assert problems("took the return to about 42") == []
    assert problems("took the return from 500 to about 20") != []
    assert problems("probabilities like 1e-8") != []
    assert problems("it came back 2.3x faster") != []
    assert problems("the recovery took several times longer") != []
    assert problems("on Pendulum it halved the steps needed") != []
    assert problems("DummyVecEnv is faster here") != []
    assert problems("within noise at 64k-80k") != []
    assert problems("within noise at 64k-80k", "a 64000 b 80000\n") == []
    assert problems("40% of the samples", "clip_fraction 0.40\n") == []
    assert problems("see lesson 05, eq. 4.6, (1.2) and errors 1 and 2") == []
    assert problems("$r = 1.5$ in an equation") == []
    assert problems("**Time:** about 45 minutes. TRPO (Schulman et al., 2015)") == []
    assert problems("| # | detail | lesson |\n|---|---|---|\n| 12 | clipping | 03, 05 |") == []
    # a step number opening a table row, a counting "1, 2, ...", a citation "et al. (2020,"
    assert problems("| step | where |\n|---|---|\n| 2. GAE | `gae` |") == []
    assert problems("| step | return |\n|---|---|\n| GAE | 2.5 |") != []
    assert problems("| 2.5 | the return |") != []
    assert problems("for iteration in 1, 2, ...: collect") == []
    assert problems("after 1, 2, 7 updates", "1 2\n") != []       # the 7 is still checked
    assert problems("Engstrom et al. (2020, *Implementation Matters*) found it") == []
    assert problems("Engstrom et al. (2020) found a return of 7.2") != []
    # a version such as "SB3 2.x" is not a run number; a number before it still is
    assert problems("right for SB3 2.x and 1.x") == []
    assert problems("SB3 2.x returned 2.5") != []
    message = problems("it is 7.2")[0]
    assert "99_probe.ipynb cell m1" in message and "7.2" in message and "it is 7.2" in message
    # a machine-dependent output must be stated as approximate
    assert problems("It is 41.7.", ignore=True) != []
    assert problems("It is about 41.7.", ignore=True) == []
