"""The parts of the code and how they may lean on each other (docs/architecture.md).

Each part is a folder of the package, and each rule is written in terms of the folders, so
a module added to a part is held to its rules without being named here. Read from the
source, so a new import that breaks a rule fails here, not in review.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jidoteki_admin"
MAP = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def package_modules(package: str) -> list[str]:
    """Every module of one of the project's packages, its __init__ included."""
    return sorted(module_name(p) for p in (PACKAGE / package).glob("*.py"))


def within(module: str, *parts: str) -> bool:
    """Whether a module is one of ``parts`` (a package or a module) or inside one of them."""
    return any(module == part or module.startswith(part + ".") for part in parts)


ALL = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
HTTP = "jidoteki_admin.http"  # the HTTP layer
SECTIONS = "jidoteki_admin.sections"
FORMATS = "jidoteki_admin.formats"  # the pure checks and file formats
CLIENT = "jidoteki_admin.client"
# The daemon's assembly: what puts the parts together and so knows them all.
ASSEMBLY = ("jidoteki_admin.daemon", "jidoteki_admin.tap", "jidoteki_admin.context")
# The daemon's side of jobs/: what starts the job programs and follows them. The rest of
# jobs/ is the programs' side: the programs, their scaffold, protocol, status files and
# swap journal, which run without the daemon (by hand, or from an appliance's script).
RUNNER = ("jidoteki_admin.jobs.runner", "jidoteki_admin.jobs.children")
PROGRAMS = [m for m in package_modules("jobs") if not within(m, *RUNNER)]
# The runner and the shared parts at the top of the package (config, the admin tree, files,
# TLS...): all of the top but the daemon, which registers the sections, and tap.py, which
# makes the daemon.
TOP = [module_name(p) for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
SHARED = [*RUNNER, *(m for m in TOP if m not in ("jidoteki_admin.daemon", "jidoteki_admin.tap"))]


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
    return {name for name in found if name in ALL}


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


def test_the_parts_are_where_the_rules_look_for_them():
    """A rule over an empty or misspelt part would pass for nothing."""
    for part in (HTTP, SECTIONS, FORMATS, CLIENT):
        assert len([m for m in ALL if within(m, part)]) > 3, part
    assert set(RUNNER) | set(ASSEMBLY) <= set(ALL)
    assert {"jidoteki_admin.jobs.program", "jidoteki_admin.jobs.update"} <= set(PROGRAMS)
    assert {"jidoteki_admin.config", "jidoteki_admin.layout", "jidoteki_admin.jobs.runner"} <= set(SHARED)


@pytest.mark.parametrize("section", [m for m in ALL if within(m, SECTIONS) and m != SECTIONS])
def test_sections_never_import_each_other(section):
    others = {m for m in ALL if within(m, SECTIONS) and m not in (section, SECTIONS)}
    assert imports_of(section) & others == set()


@pytest.mark.parametrize("module", [m for m in ALL if within(m, HTTP)])
def test_the_http_layer_knows_no_section(module):
    """Sections use the HTTP layer (the catalogue, the answers, authentication); it never
    uses them: the gate serves whatever the catalogue holds."""
    assert [name for name in reachable(module) if within(name, SECTIONS)] == []


@pytest.mark.parametrize("module", SHARED)
def test_the_runner_and_the_shared_parts_know_no_section(module):
    assert [name for name in reachable(module) if within(name, SECTIONS)] == []


@pytest.mark.parametrize("module", PROGRAMS)
def test_job_programs_never_reach_the_http_layer_a_section_the_daemon_or_the_runner(module):
    """The job programs run without the daemon, by hand or from an appliance's script, and
    many as root: they lean on the shared parts and the formats only."""
    reached = reachable(module)
    assert [name for name in reached if within(name, HTTP, SECTIONS, *ASSEMBLY, *RUNNER)] == []


@pytest.mark.parametrize("module", [m for m in ALL if within(m, FORMATS)])
def test_the_formats_import_no_twisted_and_nothing_of_http_jobs_or_sections(module):
    """The checks and file formats are pure: the vendor tool and the job programs, which run
    without the daemon, use them as the sections do."""
    reached = reachable(module)
    assert [name for name in reached if within(name, HTTP, "jidoteki_admin.jobs", SECTIONS)] == []
    assert {name for name in (module, *reached) if {"twisted", "klein"} & third_party_of(name)} == set()


def test_there_are_no_import_cycles():
    for module in ALL:
        assert module not in reachable(module), f"{module} imports itself through others"


def test_library_code_does_not_import_the_global_reactor():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "tap.py":  # the plugin's makeService is where the reactor is chosen
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "twisted.internet":
                assert "reactor" not in {a.name for a in node.names}, path


def test_sections_and_jobs_build_no_admin_tree_paths_from_strings():
    """The admin tree object names every file (layout.AdminTree); a section, a job program
    or the runner that joins a string onto etc/, log/ or bin/ would hide a file from it."""
    joined = []
    for path in [*(PACKAGE / "sections").glob("*.py"), *(PACKAGE / "jobs").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                    and isinstance(node.left, ast.Attribute) and node.left.attr in ("etc", "log", "bin")):
                joined.append(f"{path.name}:{node.lineno}")
    assert joined == []


@pytest.mark.parametrize("module", [m for m in ALL if within(m, CLIENT)])
def test_the_client_imports_nothing_of_the_daemon(module):
    """The client runs on an administrator's machine against appliances of any version:
    it knows the API, not the daemon's code."""
    assert {name for name in reachable(module) if not within(name, CLIENT)} == set()


def test_every_module_is_on_the_map():
    """docs/architecture.md's map of the parts names every folder and every module: by its
    file name, or by its name alone in the lists of sections and of job programs."""
    parts = MAP.read_text().partition("## The parts")[2].partition("\n## ")[0]
    words = set(re.findall(r"[a-z_]+", parts))
    for path in PACKAGE.rglob("*.py"):
        folder = path.parent.relative_to(PACKAGE)
        assert folder == Path(".") or f"{folder}/" in parts, folder
        listed = folder in (Path("sections"), Path("jobs")) and path.stem in words
        assert path.name == "__init__.py" or path.name in parts or listed, path.relative_to(PACKAGE)


def test_only_the_contract_test_deals_its_tests_out_in_classes():
    """The suite runs with `--dist loadscope` (pyproject.toml): a file's test functions stay
    in one process, but each test class goes wherever a process is free. A file whose module
    fixture starts something once, or that changes the machine (a user, a sudoers drop-in),
    must not be split so: only the contract test's shards, which share nothing, may."""
    tests = Path(__file__).resolve().parent
    with_classes = sorted(path.name for path in tests.glob("test_*.py")
                          if any(isinstance(node, ast.ClassDef) and node.name.startswith("Test")
                                 for node in ast.parse(path.read_text()).body))
    assert with_classes == ["test_contract.py"]
