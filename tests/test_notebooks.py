"""The README's way of opening the chapters as notebooks works: the environment's Jupyter server, with
jupytext's contents manager, serves a chapter ``.md`` as a notebook with code cells.

The test starts ``jupyter server`` (the server under JupyterLab, installed by ``make install``) on 127.0.0.1
with a random port and token and asks its contents API for a chapter, exactly as JupyterLab does when a
learner opens the file, then checks that JupyterLab itself is installed and would be served.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    executable = BIN / "jupyter-server"
    if not executable.exists():
        pytest.fail(f"{executable} is missing: JupyterLab is not installed in this environment (make install)")
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("jupyter")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_DATA_DIR=str(home / "data"))
    process = subprocess.Popen(
        [str(executable), "--ip=127.0.0.1", f"--port={port}", "--port-retries=0", "--no-browser",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # CI containers run as root
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"jupyter server exited: {process.stdout.read().decode()[-2000:]}")
            try:
                if _get(f"{base}/api/status", token)[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("jupyter server did not answer within 90 s")
        yield base, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_chapter_opens_as_a_notebook(server):
    base, token = server
    status, body = _get(f"{base}/api/contents/chapters/01_autoencoder.md?type=notebook&content=1", token)
    assert status == 200, body[:500]
    model = json.loads(body)
    assert model["type"] == "notebook" and model["format"] == "json"
    cells = model["content"]["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert len(code) >= 10 and any("import ae_course" in cell["source"] for cell in code)
    assert model["content"]["metadata"]["kernelspec"]["name"] == "python3"


def test_every_chapter_is_listed_as_a_notebook(server):
    base, token = server
    status, body = _get(f"{base}/api/contents/chapters?content=1", token)
    assert status == 200, body[:500]
    listed = {item["name"]: item["type"] for item in json.loads(body)["content"]}
    chapters = sorted(p.name for p in (ROOT / "chapters").glob("[0-9][0-9]_*.md"))
    assert chapters and all(listed.get(name) == "notebook" for name in chapters), listed


def test_jupyterlab_is_served(server):
    base, token = server
    status, body = _get(f"{base}/lab?token={token}", token)
    assert status == 200 and b"JupyterLab" in body, body[:300]
