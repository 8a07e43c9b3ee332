"""The parts of the code and how they may lean on each other (docs/architecture.md).

Read from the source, so a new import that breaks a rule fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jidoteki_admin"
SECTIONS = sorted(p.stem for p in (PACKAGE / "sections").glob("*.py") if p.stem != "__init__")
PROGRAMS = sorted(p.stem for p in (PACKAGE / "jobs").glob("*.py")
                  if p.stem not in ("__init__", "program", "protocol", "runner", "children", "swap"))
# The HTTP layer, the runner and the shared parts: none of them may know a section.
CORE = ["http.gate", "http.site", "http.catalogue", "http.openapi", "http.pages", "http.responses", "http.uploads", "http.auth", "http.audit",
        "jobs.runner", "jobs.children", "layout", "files", "config", "tls", "formats.crypto", "formats.package",
        "http.signatures", "http.metrics", "http.traffic", "http.throttle"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def package_modules(package: str) -> list[str]:
    """Every module of one of the project's packages, its __init__ included."""
    return sorted(module_name(p) for p in (PACKAGE / package).glob("*.py"))


FORMATS = package_modules("formats")
NOT_FOR_FORMATS = ("jidoteki_admin.http", "jidoteki_admin.jobs", "jidoteki_admin.sections")


def imports_of(module: str) -> set[str]:
    """The project modules a module imports (absolute names), at any depth of its body."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (base + "." + node.module if node.module else base) if node.level else node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules}


def third_party_of(module: str) -> set[str]:
    """The top-level names of what a module imports from outside the project."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
    return found - {PACKAGE.name}


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for name in imports_of(todo.pop()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


@pytest.mark.parametrize("section", SECTIONS)
def test_sections_never_import_each_other(section):
    others = {f"jidoteki_admin.sections.{s}" for s in SECTIONS if s != section}
    assert imports_of(f"jidoteki_admin.sections.{section}") & others == set()


@pytest.mark.parametrize("part", CORE)
def test_the_core_knows_no_section(part):
    assert not any(name.startswith("jidoteki_admin.sections") for name in reachable(f"jidoteki_admin.{part}"))


@pytest.mark.parametrize("program", ["program", "protocol", *PROGRAMS])
def test_job_programs_never_reach_web_code_or_a_section(program):
    forbidden = ("jidoteki_admin.http.gate", "jidoteki_admin.http.site", "jidoteki_admin.sections", "jidoteki_admin.http.uploads",
                 "jidoteki_admin.daemon", "jidoteki_admin.jobs.runner")
    reached = reachable(f"jidoteki_admin.jobs.{program}")
    assert not [name for name in reached if name.startswith(forbidden)]


def test_there_are_no_import_cycles():
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        assert module not in reachable(module), f"{module} imports itself through others"


def test_library_code_does_not_import_the_global_reactor():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "tap.py":  # the plugin's makeService is where the reactor is chosen
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "twisted.internet":
                assert "reactor" not in {a.name for a in node.names}, path


def test_sections_and_programs_build_no_admin_tree_paths_from_strings():
    """The admin tree object names every file (layout.AdminTree); a section or job program
    that joins a string onto etc/, log/ or bin/ would hide a file from it."""
    joined = []
    for path in [*(PACKAGE / "sections").glob("*.py"), *(PACKAGE / "jobs").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                    and isinstance(node.left, ast.Attribute) and node.left.attr in ("etc", "log", "bin")):
                joined.append(f"{path.name}:{node.lineno}")
    assert joined == []


@pytest.mark.parametrize("module", ["jidoteki_admin.client", "jidoteki_admin.client.cli"])
def test_the_client_imports_nothing_of_the_daemon(module):
    """The client runs on an administrator's machine against appliances of any version:
    it knows the API, not the daemon's code."""
    assert {name for name in reachable(module) if not name.startswith("jidoteki_admin.client")} == set()


@pytest.mark.parametrize("module", FORMATS)
def test_the_formats_import_no_twisted_and_nothing_of_http_jobs_or_sections(module):
    """The checks and file formats are pure: the vendor tool and the job programs, which run
    without the daemon, use them as the sections do."""
    reached = reachable(module)
    assert not [name for name in reached if name.startswith(NOT_FOR_FORMATS)]
    assert not {name for name in (module, *reached) if {"twisted", "klein"} & third_party_of(name)}
