"""The docs as a newcomer uses them: examples that run or validate as pasted, paths and words that are true."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def code_block(path: Path, heading: str, language: str) -> str:
    """The first fenced ``language`` block after the line ``heading`` of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    assert heading in text, f"{path.name}: no heading {heading!r}"
    after = text.split(heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", after, re.S)
    assert match, f"{path.name}: no ```{language} block after {heading!r}"
    return match.group(1)


def test_readme_library_example_runs_as_pasted(tmp_path) -> None:
    snippet = code_block(README, "## As a library", "python")
    result = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "tensor(" in result.stdout


def test_tree_format_example_validates(tmp_path) -> None:
    """docs/tree.md's tempo-tree/1 example, pasted into a file, is read by `load_tree_input`."""
    from tempo_verl.trees.readers import load_tree_input

    example = json.loads(code_block(REPO / "docs" / "tree.md", "### Format `tempo-tree/1`", "json"))
    path = tmp_path / "tempo_trees_step50.jsonl"
    path.write_text(json.dumps(example) + "\n")
    (record,) = load_tree_input(path)
    assert record["step"] == 50 and len(record["responses"]) >= 2


def test_docs_name_only_test_files_that_exist() -> None:
    for page in PAGES:
        for name in re.findall(r"tests/[\w/.-]+\.py", page.read_text(encoding="utf-8")):
            assert (REPO / name).is_file(), f"{page.name} names {name}, which does not exist"


@pytest.mark.parametrize(
    "pattern",
    [
        r"SPEC-tempo",  # the contract lives in docs/estimator.md
        r"pip install tempo-verl",  # not published: install from the repository
        r"\bissues? \d+",
        r"\bthe lead\b",
        r"smoke check",
    ],
)
def test_docs_speak_the_products_words(pattern: str) -> None:
    for page in PAGES:
        found = re.findall(pattern, page.read_text(encoding="utf-8"), re.I)
        assert not found, f"{page.relative_to(REPO)}: {found[0]!r}"


def test_every_doc_page_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    for page in DOCS:
        assert f"](docs/{page.name})" in text, f"README's Documentation table lacks docs/{page.name}"


def test_recipes_doc_names_every_script() -> None:
    text = (REPO / "docs" / "recipes.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in (REPO / "recipes").glob("run_*.sh"))
    named = sorted(set(re.findall(r"run_[\w.-]+?\.sh", text)))
    assert named == scripts
    words = {8: "Eight", 12: "Twelve", 16: "Sixteen"}
    assert text.split("\n", 2)[2].startswith(f"{words[len(scripts)]} scripts in `recipes/`")


def test_verl_yaml_example_composes_and_passes_the_start_up_checks(tmp_path) -> None:
    """docs/verl.md's YAML config, composed as main_ppo composes it, and read by the plugin's checks."""
    from hydra import compose, initialize_config_dir

    from tempo_verl.plugin.config import check_run_config, read_algorithm_config
    from tempo_verl.rollout.config import read_tree_config, selects_tree

    yaml = code_block(REPO / "docs" / "verl.md", "## The same settings in a YAML config", "yaml")
    (tmp_path / "my_tempo.yaml").write_text(yaml)
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        cfg = compose(config_name="my_tempo", overrides=["algorithm.tempo.td_coef=0.5"])  # no `+` needed
    check_run_config(cfg)
    tempo, norm = read_algorithm_config(cfg.algorithm)
    assert cfg.algorithm.adv_estimator == "tempo" and tempo.td_coef == 0.5 and norm is True
    assert tempo.dump.dir == "/ckpt/my_run/trees" and tempo.dump.every == 50
    assert selects_tree(cfg) and read_tree_config(cfg.actor_rollout_ref.rollout).roots == 2


def _slug(heading: str) -> str:
    """A Markdown heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_pages_reach_a_file_and_heading() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            assert "://" not in target, f"{page.name}: links outside the repository: {target}"
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}: no such file"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page.name}: {target}: no such heading"
