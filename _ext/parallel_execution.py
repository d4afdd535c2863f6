"""Execute the book's uncached notebooks side by side before Sphinx reads them, one torch thread each.

MyST-NB's cache mode executes a notebook when Sphinx reads its page, one page after another. The book's
chapters train small networks on minibatches of 128: a matrix product of that size does not keep two cores
busy, so one kernel using both cores wastes much of the second (benchmarks/README.md, "book_timing.py"). This
extension runs before the pages are read (``env-before-read-docs``): it finds the pages that MyST-NB would
execute because the jupyter-cache holds no run of their current code, executes them with
``jupyter_cache.executors.utils.single_nb_execution`` (the function MyST-NB itself calls) in
``ae_course_execution_jobs`` worker processes, each kernel with ``OMP_NUM_THREADS`` = cores / jobs (unless
set), and stores
each successful run in the cache exactly as MyST-NB does. MyST-NB then finds every page cached. A notebook
that fails here is not cached: MyST-NB executes it again in its own turn and reports the error as it always
does (``nb_execution_raise_on_error`` fails the build). Longest first: the pages are started in descending
order of their length (a proxy for their running time), so the longest chapter is not left for the end.

Settings (``sphinx: config:`` in ``_config.yml``): ``ae_course_execution_jobs`` (default: the number of CPU
cores; ``AE_COURSE_BOOK_JOBS`` in the environment overrides it; 1 turns the extension off, leaving the
execution to MyST-NB alone). It does nothing unless ``nb_execution_mode`` is ``cache``.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)


def _execute(path: str, notebook: dict, read_fmt: dict | None, cache_path: str,
             timeout: int | None) -> tuple[str, float, str | None]:
    """In a worker process: execute one notebook in its folder and cache the run as MyST-NB would. The kernel
    inherits the worker's environment, ``OMP_NUM_THREADS`` included (set before the pool starts)."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.cache.db import NbProjectRecord
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.from_dict(notebook)
    cache = get_cache(cache_path)
    stage_record = cache.add_nb_to_project(path, read_data=read_fmt) if read_fmt else cache.add_nb_to_project(path)
    NbProjectRecord.remove_tracebacks([stage_record.pk], cache.db)
    result = single_nb_execution(notebook, cwd=str(Path(path).parent), allow_errors=False, timeout=timeout,
                                 meta_override=True)
    if result.err is not None:
        return path, result.time, f"{type(result.err).__name__}: {str(result.err).strip().splitlines()[-1][:200]}"
    cache.cache_notebook_bundle(CacheBundleIn(notebook, stage_record.uri, data={"execution_seconds": result.time}),
                                check_validity=False, overwrite=True)
    return path, result.time, None


def execute_uncached(app, env, docnames) -> None:
    from jupyter_cache import get_cache
    from myst_nb.core.read import create_nb_reader

    nb_config = env.mystnb_config
    jobs = int(os.environ.get("AE_COURSE_BOOK_JOBS") or app.config.ae_course_execution_jobs or os.cpu_count() or 1)
    if nb_config.execution_mode != "cache" or jobs <= 1:
        return
    cache_path = nb_config.execution_cache_path or ".jupyter_cache"
    cache = get_cache(cache_path)
    todo = []
    for docname in docnames:
        path = Path(env.doc2path(docname))
        content = path.read_text(encoding="utf8")
        reader = create_nb_reader(str(path), env.myst_config, nb_config, content)
        if reader is None:
            continue
        notebook = reader.read(content)
        if not any(cell.cell_type == "code" for cell in notebook.cells):
            continue
        try:
            cache.match_cache_notebook(notebook)
            continue                                         # cached: MyST-NB will merge the stored outputs
        except KeyError:
            todo.append((len(content), str(path), notebook, reader.read_fmt))
    if len(todo) < 2:
        return                                               # nothing to run side by side
    todo.sort(key=lambda item: -item[0])
    threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // jobs))
    # Inherited by the workers' kernels, and by MyST-NB's own (a notebook that failed here, executed again to
    # report its error): the same thread count, the same float rounding, the same failure.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    logger.info(f"[parallel_execution] executing {len(todo)} notebooks, {min(jobs, len(todo))} at a time, "
                f"{threads} thread(s) each")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
        futures = [pool.submit(_execute, path, dict(notebook), read_fmt, str(cache_path),
                               nb_config.execution_timeout)
                   for _, path, notebook, read_fmt in todo]
        for future in as_completed(futures):
            path, seconds, error = future.result()
            name = os.path.relpath(path, app.srcdir)
            if error:
                logger.info(f"[parallel_execution] {name} failed after {seconds:.0f} s ({error}); "
                            "MyST-NB will execute it again and report the error")
            else:
                logger.info(f"[parallel_execution] {name} executed and cached in {seconds:.0f} s")
    logger.info(f"[parallel_execution] {len(todo)} notebooks in {time.perf_counter() - start:.0f} s")


def setup(app):
    app.add_config_value("ae_course_execution_jobs", None, "env")
    app.connect("env-before-read-docs", execute_uncached, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
