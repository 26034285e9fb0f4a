"""The JavaScript client's unit tests (node:test), and its patch applier against the server's diffs."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gameframe.jsonpatch import diff

ROOT = Path(__file__).resolve().parent.parent
JS_TESTS = sorted((ROOT / "tests" / "js").glob("test_*.mjs"))
CLIENT = ROOT / "gameframe" / "static" / "gameframe.js"
TIMEOUT = 120


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is missing: the JS tests need Node.js >= 20 (apt-get install nodejs)")
    return found


def test_node_unit_tests_pass() -> None:
    # Files are named explicitly: node 20 does not pick up test_*.mjs from a directory.
    assert JS_TESTS
    run = subprocess.run(
        [node(), "--test", *map(str, JS_TESTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def random_tree(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randrange(-5, 5)
    if kind == 2:
        return rng.choice([0.5, -2.25, 1e21])
    if kind in (3, 4):
        return rng.choice(["", "a", "~", "a/b", "~1", "é"])
    if kind in (5, 6):
        keys = ["a", "b", "", "~0", "x/y", "__proto__"]
        return {k: random_tree(rng, depth + 1) for k in rng.sample(keys, rng.randrange(4))}
    return [random_tree(rng, depth + 1) for _ in range(rng.randrange(5))]


def mutate(rng: random.Random, tree: Any) -> Any:
    """A variant of C{tree}: some children changed, added or removed."""
    if isinstance(tree, dict) and rng.random() < 0.8:
        out = {k: mutate(rng, v) if rng.random() < 0.5 else v for k, v in tree.items()}
        if out and rng.random() < 0.3:
            del out[rng.choice(list(out))]
        if rng.random() < 0.3:
            out[rng.choice(["a", "n", "~", "x/y"])] = random_tree(rng, 2)
        return out
    if isinstance(tree, list) and rng.random() < 0.8:
        out = [mutate(rng, v) if rng.random() < 0.4 else v for v in tree]
        if out and rng.random() < 0.3:
            del out[rng.randrange(len(out))]
        if rng.random() < 0.3:
            out.insert(rng.randrange(len(out) + 1), random_tree(rng, 2))
        return out
    return random_tree(rng, 1) if rng.random() < 0.5 else tree


def test_js_applies_the_servers_diffs(tmp_path: Path) -> None:
    """Patches made by gameframe.jsonpatch.diff turn the old tree into the new one in JS."""
    rng = random.Random(6902)
    cases = []
    for _ in range(500):
        old = random_tree(rng)
        new = mutate(rng, old)
        cases.append({"old": old, "new": new, "patch": diff(old, new)})
    script = tmp_path / "apply.mjs"
    script.write_text(
        f"import {{ applyPatch }} from {json.dumps(CLIENT.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        "const cases = JSON.parse(readFileSync(0, 'utf8'));\n"
        "const results = cases.map(({ old, patch }) => applyPatch(structuredClone(old), patch));\n"
        "process.stdout.write(JSON.stringify(results));\n"
    )
    run = subprocess.run(
        [node(), str(script)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    for case, result in zip(cases, results, strict=True):
        assert result == case["new"], case


class _NodeMirrors:
    """One node process that feeds message streams to gameframe.js's StateMirror."""

    SCRIPT = (
        "import { StateMirror } from %s;\n"
        "import { createInterface } from 'node:readline';\n"
        "for await (const line of createInterface({ input: process.stdin })) {\n"
        "  const mirror = new StateMirror();\n"
        "  const states = JSON.parse(line).map((m) => (mirror.handle(m), mirror.stale ? 'stale' : structuredClone(mirror.state)));\n"
        "  process.stdout.write(JSON.stringify(states) + '\\n');\n"
        "}\n"
    )

    def __init__(self, tmp: Path) -> None:
        script = tmp / "mirrors.mjs"
        script.write_text(self.SCRIPT % json.dumps(CLIENT.as_uri()))
        self.process = subprocess.Popen(
            [node(), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def states(self, messages: list[Any]) -> list[Any]:
        """The mirror's state after each message ("stale" when it is)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(messages) + "\n")
        self.process.stdin.flush()
        result: list[Any] = json.loads(self.process.stdout.readline())
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(TIMEOUT)


def test_js_mirrors_fed_compact_and_json_patches_equal_the_servers_tree(tmp_path: Path) -> None:
    """
    For random state sequences (with compact members joining late and
    falling behind), gameframe.js's mirror fed the compact stream and the
    one fed JSON Patches both equal the server's tree after every patch.
    """
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gameframe._sync import StateSync
    from gameframe.jsonpatch import to_tree
    from gameframe.player import Player
    from tests.test_compact import RecordingLink, roots

    mirrors = _NodeMirrors(tmp_path)
    steps = st.one_of(
        st.tuples(st.just("set"), roots),
        st.tuples(st.just("bump"), st.sampled_from(["a", "b", "x/y"]), st.integers(0, 3)),
        st.tuples(st.just("congest"), st.booleans()),
        st.tuples(st.just("late")),
    )

    @settings(max_examples=100, deadline=None)
    @given(roots, st.lists(steps, max_size=25))
    def check(first: Any, session: list[Any]) -> None:
        sync = StateSync(lambda key, tree: tree)
        links = {"json": RecordingLink(), "compact": RecordingLink(), "late": RecordingLink()}
        links["compact"].encoding = links["late"].encoding = "compact"  # type: ignore[misc]
        for name, link in links.items():
            link.player = Player(id=name, link=link)
        state: Any = first
        # (index of a message, the tree the mirror must hold after it), per link.
        expected: dict[str, list[tuple[int, Any]]] = {name: [] for name in links}
        for name in ("json", "compact"):
            links[name].send_encoded(sync.subscribe(links[name].player, None, state))
            expected[name].append((0, to_tree(state)))
        for step in session:
            if step[0] == "set":
                state = step[1]
            elif step[0] == "bump" and isinstance(state, dict):
                state[step[1]] = step[2]
            elif step[0] == "congest":
                links["compact"].congested = step[1]  # type: ignore[misc]
            elif step[0] == "late":
                links["late"].send_encoded(sync.subscribe(links["late"].player, None, state))
            before = {name: len(link.raw) for name, link in links.items()}
            sync.patch(state)
            tree = to_tree(state)
            for name, link in links.items():
                if len(link.raw) > before[name]:
                    expected[name].append((len(link.raw) - 1, tree))
        for name, link in links.items():
            got = mirrors.states([json.loads(data) for data in link.raw])
            assert "stale" not in got
            for index, tree in expected[name]:
                assert got[index] == tree

    try:
        check()
    finally:
        mirrors.close()
