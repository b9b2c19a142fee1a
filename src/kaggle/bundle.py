"""Turn the package into one Kaggle kernel script, and describe the kernel and its weights to Kaggle.

`kaggle kernels push` uploads a single code file, so the kernel script carries the package: each
module the entry point needs (also through imports inside functions) is found by parsing its
`import src.x` / `from src.x import y` statements with `ast`, and its source is embedded verbatim,
modules in dependency order. At run time a meta-path finder in the script serves `src`, `src.data`,
... to Python's import system under their real names from those sources, so every import between
modules (lazy ones and module-level cycles included) behaves as it does from the package on disk,
each module in its own namespace, and no `src/` folder is ever read.

Metadata follows the checks `kaggle kernels push` / `kaggle datasets create` make before sending
anything (kaggle 2.2.5): slugs, title length, a title that slugifies to the id's slug.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
import hashlib
from pathlib import Path
import re

from src.data.competition import COMPETITION

PACKAGE = "src"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CODE_FILE = "denoise_dirty_documents.py"
KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"
WEIGHTS_DIR = "weights"
WEIGHTS_SUFFIX = "-weights"
MIN_TITLE = 5                      # kaggle kernels push: "Title must be at least five characters"
DATASET_SLUG_LEN = (6, 50)         # kaggle datasets create: slug and title lengths
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")          # kaggle's _validate_slug_syntax
OWNER = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")


class KernelError(ValueError):
    """A kernel id, title or package that Kaggle or the bundle would refuse; the message says why."""


# ---------------------------------------------------------------- the module graph

@dataclass
class Module:
    name: str                                       # dotted, e.g. "src.data"
    path: Path
    is_package: bool
    source: str
    eager: set[str] = field(default_factory=set)    # package modules imported when this one runs
    lazy: set[str] = field(default_factory=set)     # ... imported inside its functions


def find_module(name: str, package_dir: Path = PACKAGE_DIR) -> tuple[Path, bool] | None:
    """(file, is_package) of a dotted module name inside the package folder, or None."""
    parts = name.split(".")[1:]
    base = Path(package_dir).joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if parts and base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    return None


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The module an ImportFrom names, with relative imports (level > 0) resolved against `name`."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def package_imports(module: Module, package_dir: Path = PACKAGE_DIR) -> tuple[set[str], set[str]]:
    """(eager, lazy) package modules that `module` imports; lazy = inside a function body.

    `from src import x` counts x when src/x.py exists. Imports at module or class level, even
    under `if`/`try`, run on import and so are eager: they decide the order of execution.
    """
    eager: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module.name, module.is_package)
            names = [target] + [f"{target}.{a.name}" for a in node.names if a.name != "*"]
        for n in names:
            if (n == PACKAGE or n.startswith(PACKAGE + ".")) and find_module(n, package_dir):
                # `import src.a.b` also runs src.a
                parts = n.split(".")
                for i in range(1, len(parts) + 1):
                    (lazy if in_function else eager).add(".".join(parts[:i]))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(ast.parse(module.source, str(module.path)), False)
    eager.discard(module.name)
    lazy.discard(module.name)
    return eager, lazy - eager


def load_module(name: str, package_dir: Path = PACKAGE_DIR) -> Module:
    found = find_module(name, package_dir)
    if found is None:
        raise KernelError(f"{name}: no such module in {package_dir}")
    path, is_package = found
    module = Module(name, path, is_package, path.read_text(encoding="utf-8"))
    module.eager, module.lazy = package_imports(module, package_dir)
    return module


def needed_modules(entry: str, package_dir: Path = PACKAGE_DIR) -> dict[str, Module]:
    """Every package module `entry` can reach through eager or lazy imports (the package included)."""
    found: dict[str, Module] = {}
    todo = [PACKAGE, entry]
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = load_module(name, package_dir)
            todo.extend(found[name].eager | found[name].lazy)
    return found


def import_order(modules: dict[str, Module]) -> tuple[list[str], list[list[str]]]:
    """(order, cycles): each module after the modules it imports eagerly (ties by name).

    Lazy imports run once every module can be found, so they add modules but no constraint
    (a function may import a module that imports the caller's module eagerly). A
    module-level cycle (a module that imports its partner at its end, as Python allows) cannot be
    ordered; its modules keep the order the walk met them in and the cycle is returned. Run time does
    not depend on this order (the script imports from its embedded sources the way Python imports
    from disk); it makes the file read from the bottom of the package up.
    """
    order: list[str] = []
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "open":
            cycles.append(path[path.index(name):] + [name])
            return
        if state.get(name) == "done":
            return
        state[name] = "open"
        for dep in sorted(modules[name].eager):
            visit(dep, path + [name])
        state[name] = "done"
        order.append(name)

    for name in sorted(modules):
        visit(name, [])
    return order, cycles


# ---------------------------------------------------------------- the script

def embed(source: str) -> str:
    """A Python literal whose value is `source`, written verbatim where the source allows it."""
    for quote in ("'" * 3, '"' * 3):
        literal = f"r{quote}{source}{quote}"
        if quote not in source and not source.endswith(("\\", quote[0])) \
                and ast.literal_eval(literal) == source:
            return literal
    return repr(source)   # holds both kinds of triple quote: escaped, still exact


RUNTIME = """
class _BundleImporter(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    # serves the embedded modules by their real names; Python's import system does the rest
    def __init__(self, modules):
        self.modules = {name: (is_package, source) for name, is_package, source in modules}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None       # other src.* names: src.__path__ is empty, so nothing on disk is found
        is_package = self.modules[fullname][0]
        origin = os.path.join(BUNDLE, *fullname.split(".")) + ("/__init__.py" if is_package else ".py")
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=origin, is_package=is_package)
        spec.has_location = True          # __file__: a virtual path inside this script
        if is_package:
            spec.submodule_search_locations = []
        return spec

    def get_source(self, fullname):
        return self.modules[fullname][1]

    def is_package(self, fullname):
        return self.modules[fullname][0]

    def exec_module(self, module):
        source, path = self.get_source(module.__name__), module.__spec__.origin
        linecache.cache[path] = (len(source), None, source.splitlines(True), path)   # tracebacks
        exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)


def main():
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]             # never mix in a copy imported from elsewhere
    sys.meta_path.insert(0, _BundleImporter(MODULES))
    entry = importlib.import_module(ENTRY)
    try:
        return getattr(entry, FUNCTION)(PLAN)
    finally:
        if os.environ.get("KERNEL_DEBUG_MODULES"):
            for name in sorted(n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")):
                print(f"kernel module {name} {getattr(sys.modules[name], '__file__', None)}")


if __name__ == "__main__":
    code = main()
    if code:
        sys.exit(code)
"""


def sources_digest(modules: dict[str, Module]) -> str:
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(f"{name}\0{modules[name].source}\0".encode())
    return h.hexdigest()[:16]


def render_bundle(entry: str, function: str, plan: dict, command: str = "",
                  package_dir: Path = PACKAGE_DIR) -> str:
    """The kernel script: the package modules `entry` needs, then a main() calling entry.function(plan).

    Args:
        entry, function: e.g. "src.kaggle.kernel", "run_kernel"; function(plan) returns an exit code.
        plan: plain values (str, int, bool, None, lists, dicts) the kernel runs with.
        command: the build command, recorded in the header.
    """
    modules = needed_modules(entry, package_dir)
    order, _ = import_order(modules)
    parts = [
        f'"""Denoising Dirty Documents: Kaggle kernel script GENERATED by `python -m src.build_kernel`.\n\n'
        f"Do not edit: rebuild it from the package. It holds {len(order)} modules of the package\n"
        f"(sources sha256 {sources_digest(modules)}), imported by main() below from the embedded\n"
        f"sources under their real names (src, src.data, ...); no src/ folder is read.\n"
        + (f"Built with: {command}\n" if command else "") + '"""',
        "".join(f"import {m}\n" for m in ("importlib", "importlib.abc", "importlib.machinery", "linecache",
                                          "os", "sys")),
        '# no internet in the kernel: albumentations would otherwise look for updates on import\n'
        'os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")\n'
        'os.environ.setdefault("MPLBACKEND", "Agg")\n',
        f"PACKAGE = {PACKAGE!r}\nENTRY = {entry!r}\nFUNCTION = {function!r}\nPLAN = {plan!r}\n"
        'BUNDLE = os.path.abspath(globals().get("__file__") or ' f"{CODE_FILE!r})\n",
        "# (module name, is package, source), each after the modules it imports\nMODULES = []\n",
    ]
    for name in order:
        m = modules[name]
        parts.append(f"# {'=' * 20} {name} ({m.path.relative_to(Path(package_dir).parent)})\n"
                     f"MODULES.append(({name!r}, {m.is_package!r}, {embed(m.source)}))\n")
    parts.append(RUNTIME.lstrip("\n"))
    text = "\n".join(parts)
    compile(text, CODE_FILE, "exec")   # a bundle that does not parse is a bug here, not on Kaggle
    return text


# ---------------------------------------------------------------- metadata

def slugify(text: str) -> str:
    """The slug Kaggle derives from a title (python-slugify, which the kaggle client uses)."""
    try:
        from slugify import slugify as _slugify  # installed with the kaggle package
    except ImportError:   # same result for ASCII titles
        return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")
    return _slugify(text)


def title_from_slug(slug: str) -> str:
    return " ".join(w.capitalize() for w in slug.split("-"))


def parse_kernel_id(kernel_id: str) -> tuple[str, str]:
    """(owner, slug) of `owner/slug`; KernelError when kaggle would refuse or mangle it."""
    parts = kernel_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise KernelError(f"--id {kernel_id!r}: want <username>/<kernel-slug>, e.g. jane/dirty-docs-unet")
    owner, slug = parts
    if not OWNER.fullmatch(owner):
        raise KernelError(f"--id {kernel_id!r}: username {owner!r} must be lowercase letters, digits, "
                          f"'-' or '_' (as in your Kaggle profile URL)")
    if not SLUG.fullmatch(slug):
        raise KernelError(f"--id {kernel_id!r}: slug {slug!r} must be lowercase letters and digits joined "
                          f"by single hyphens, e.g. {slugify(slug) or 'dirty-docs-unet'!r}")
    if len(slug) < MIN_TITLE:
        raise KernelError(f"--id {kernel_id!r}: Kaggle wants a kernel slug of at least five characters")
    return owner, slug


def check_title(title: str, slug: str) -> str:
    """The title, when Kaggle accepts it for `slug`: >= 5 characters and slugifying to the slug."""
    if len(title.strip()) < MIN_TITLE:
        raise KernelError(f"--title {title!r}: Kaggle wants a title of at least five characters")
    if slugify(title) != slug:
        raise KernelError(f"--title {title!r} slugifies to {slugify(title)!r}, not to the id's slug "
                          f"{slug!r}: Kaggle would make a kernel under another URL. Use a title like "
                          f"{title_from_slug(slug)!r}, or change --id")
    return title


def weights_dataset(owner: str, slug: str) -> str:
    """`owner/<slug>-weights`: the dataset holding a checkpoint the kernel reads."""
    name = slug + WEIGHTS_SUFFIX
    low, high = DATASET_SLUG_LEN
    if not low <= len(name) <= high:
        raise KernelError(f"weights dataset slug {name!r}: Kaggle wants {low}-{high} characters; "
                          f"shorten the --id slug to at most {high - len(WEIGHTS_SUFFIX)}")
    return f"{owner}/{name}"


def kernel_metadata(kernel_id: str, title: str, *, gpu: bool = False, dataset: str | None = None) -> dict:
    """kernel-metadata.json for `kaggle kernels push`: a private script, no internet, the competition."""
    meta = {
        "id": kernel_id,
        "title": title,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": bool(gpu),
        "enable_tpu": False,
        "enable_internet": False,   # said explicitly: the kaggle client defaults it to true
        "competition_sources": [COMPETITION],
    }
    if dataset is not None:
        meta["dataset_sources"] = [dataset]
    return meta


def dataset_metadata(dataset: str) -> dict:
    """dataset-metadata.json for `kaggle datasets create` (private by default, CC0)."""
    return {"title": title_from_slug(dataset.split("/")[1]), "id": dataset, "licenses": [{"name": "CC0-1.0"}]}
