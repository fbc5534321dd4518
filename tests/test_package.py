import subprocess
import sys

import mssoft


def test_import_and_cli_help_do_not_load_tensorflow():
    code = (
        "import sys, mssoft, mssoft.cli.main\n"
        "from click.testing import CliRunner\n"
        "mssoft.soft_mask, mssoft.discover_scans\n"
        "r = CliRunner().invoke(mssoft.cli.main.cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(mssoft.cli.main.cli, ['build-masks', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def test_public_api_is_declared():
    for name in mssoft.__all__:
        assert getattr(mssoft, name) is not None
    assert mssoft.__version__


def test_every_subpackage_is_installed_by_setup_cfg():
    import configparser
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    listed = set(config["options"]["packages"].replace(",", " ").split())
    inits = (root / "mssoft").rglob("__init__.py")
    found = {"mssoft.cli"} | {".".join(i.parent.relative_to(root).parts) for i in inits}
    assert listed == found


# --- architecture: layers, no circles, a shallow import graph ------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
#: Data flows one way: a module may import only from its own layer or the layers below it.
LAYERS = {
    "mssoft.errors": 0,
    "mssoft.choices": 0,
    "mssoft._version": 0,
    "mssoft.arrays": 1,
    "mssoft.files": 2,
    "mssoft.synthetic": 3,
    "mssoft.nn": 3,
    "mssoft.workflows": 4,
    "mssoft.experiments": 5,
    "mssoft.cli": 6,
    "mssoft": 6,  # the lazy public API of mssoft/__init__.py
}


def _module_files():
    import re

    modules = {}
    for path in list((ROOT / "mssoft").rglob("*.py")) + list((ROOT / "cli").glob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "cli":
            parts = ["mssoft", "cli", *parts[1:]]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    assert not [m for m in modules if re.search(r"\.bench\b", m)]
    return modules


def _import_graph():
    import ast

    modules = _module_files()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _layer(module):
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[best]


def test_imports_flow_down_the_layers():
    upward = [
        f"{a} -> {b}"
        for a, targets in _import_graph().items()
        for b in targets
        if _layer(b) > _layer(a)
    ]
    assert upward == []


def test_import_graph_has_no_circle_and_is_at_most_8_deep():
    graph = _import_graph()
    depth, visiting = {}, set()

    def longest(module):
        assert module not in visiting, f"import circle through {module}"
        if module not in depth:
            visiting.add(module)
            depth[module] = 1 + max((longest(t) for t in graph[module]), default=0)
            visiting.discard(module)
        return depth[module]

    deepest = max(graph, key=longest)
    assert longest(deepest) <= 8, deepest


def test_at_most_12_top_level_modules():
    modules = [p for p in (ROOT / "mssoft").glob("*.py")]
    assert len(modules) <= 12, sorted(p.name for p in modules)


def test_arrays_layer_reads_no_files_and_imports_no_tensorflow():
    import ast

    for path in (ROOT / "mssoft" / "arrays").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("tensorflow", "keras", "nibabel"), path
                assert not name.startswith("mssoft.files"), path
