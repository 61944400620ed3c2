"""The package layering, read from the source (ast, nothing imported): who may import whom.

core ← body ← stores ← {synthetic, preprocess, train} ← eval ← infer; benchmarks may use
anything.
eval takes from train only the model, its checkpoints and the model-input builder. Relative
imports and imports inside functions count. No cycles between packages.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"tests", ".venv", "data", "build", ".git"}
ALLOWED = {
    "core": set(),
    "body": {"core"},
    "stores": {"body", "core"},
    "synthetic": {"body", "core"},
    "preprocess": {"body", "stores", "synthetic", "core"},
    "train": {"body", "stores", "core"},
    "eval": {"body", "stores", "core", "train"},
    "infer": {"core", "body", "stores", "synthetic", "preprocess", "train", "eval"},
    "benchmarks": {"core", "body", "stores", "synthetic", "preprocess", "train", "eval"},
}
EVAL_FROM_TRAIN = ("train.model", "train.checkpoint", "train.checkpoints_external", "train.inputs")


def _sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in SKIP)


def _module_of(path: Path, root: Path = ROOT) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute dotted module) of every import in the file; `from p import m` gives p.m
    (m may be a module), so a name imported from a package counts as that package's module."""
    package = _module_of(path, root)
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, f"{stem}.{alias.name}") for alias in node.names]
    return found


def _edges() -> list[tuple[str, str, str, int, str]]:
    """(from package, to package, file, line, module) for imports of our other packages."""
    edges = []
    for path in _sources():
        own = _module_of(path)[0]
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in ALLOWED and top != own:
                edges.append((own, top, str(path.relative_to(ROOT)), line, module))
    return edges


def test_every_source_file_belongs_to_a_known_package():
    unknown = {str(p.relative_to(ROOT)) for p in _sources() if _module_of(p)[0] not in ALLOWED}
    assert not unknown, f"place these packages in the layering: {sorted(unknown)}"


def test_packages_import_only_the_layers_below():
    wrong = [f"{file}:{line}: {own} imports {module}" for own, top, file, line, module in _edges()
             if top not in ALLOWED[own]]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_eval_takes_from_train_only_the_model_checkpoints_and_inputs():
    wrong = [f"{file}:{line}: eval imports {module}" for own, top, file, line, module in _edges()
             if own == "eval" and top == "train"
             and not any(module == m or module.startswith(m + ".") for m in EVAL_FROM_TRAIN)]
    assert not wrong, ("eval may import from train only " + ", ".join(EVAL_FROM_TRAIN) + ":\n"
                       + "\n".join(wrong))


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for own, top, *_ in _edges():
        graph.setdefault(own, set()).add(top)
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
            if nxt not in state and (found := cycle_from(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = cycle_from(start, [start])
            assert found is None, "import cycle between packages: " + " → ".join(found)


def test_the_reader_resolves_relative_and_from_imports(tmp_path):
    pkg = tmp_path / "eval" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("from ..x import y\nfrom . import z\nimport train.data\n"
                              "def f():\n    from train import model\n")
    assert _imports(pkg / "m.py", tmp_path) == [
        (1, "eval.x.y"), (2, "eval.sub.z"), (3, "train.data"), (5, "train.model")]
