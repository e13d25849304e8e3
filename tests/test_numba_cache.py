"""No jitted function calls a ``parallel=True`` jitted function.

numba 0.68 caches such a caller broken when it compiles it while the parallel callee comes from
the on-disk cache, and the next process that loads the caller crashes with a segmentation fault.
Reproduced with two four-line functions (a ``prange`` doubling and a serial caller, both
``cache=True``): one process calls the parallel one, a second the caller (compiled against the
cached callee), a third the caller again: segmentation fault; the same with a serial callee runs.
Known upstream: numba/numba#8578 (open). It crashed this library's compile (``stamp_resistors`` called the parallel row merge through
``symmetric_from_edges``) and could have crashed the colour sweep. So parallel kernels are
called from Python, or their ``prange`` loops written into the calling kernel itself.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "resgraph").rglob("*.py")) + sorted((ROOT / "backends").rglob("*.py"))


def _jit_options(function: ast.FunctionDef) -> dict | None:
    """The keyword options of a function's numba decorator, or None if it has none."""
    for decorator in function.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("njit", "jit"):
            options = {}
            for keyword in call.keywords if call else []:
                if keyword.arg is None:      # **options: look them up by name where defined
                    options["**"] = ast.unparse(keyword.value)
                else:
                    options[keyword.arg] = ast.unparse(keyword.value)
            return options
    return None


def _jitted_functions():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                options = _jit_options(node)
                if options is not None:
                    yield path, node, options


def test_the_scan_sees_the_library_kernels():
    found = {(path.name, node.name, options.get("parallel")) for path, node, options in _jitted_functions()}
    assert ("csr.py", "_merge_rows", "True") in found and ("graph.py", "_sweeps", "True") in found
    assert ("csr.py", "_edge_rows", None) in found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_jitted_function_calls_a_parallel_one(path):
    """Names resolve to the module's own functions first, then to imported library kernels."""
    parallel_anywhere = {node.name for _, node, options in _jitted_functions() if options.get("parallel") == "True"}
    tree = ast.parse(path.read_text())
    local = {node.name: _jit_options(node) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    parallel = ({name for name, options in local.items() if options and options.get("parallel") == "True"}
                | ((imported - set(local)) & parallel_anywhere))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and _jit_options(node) is not None:
            called = {call.func.id for call in ast.walk(node)
                      if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)}
            assert not called & parallel, f"{path.name}: {node.name} calls parallel {sorted(called & parallel)}"
