"""The recipes ship inside the package and are found by name; a wheel installed away from the
checkout runs the demo and a recipe by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simxir.errors import UserError
from simxir.recipes import find_recipe, list_recipes, root
from simxir.train.assemble import build_config

REPO = Path(__file__).resolve().parents[2]


def test_every_recipe_file_is_listed_by_name_and_found_again():
    listed = list_recipes()
    files = sorted(p.relative_to(root()).with_suffix("").as_posix() for p in root().rglob("*.yaml"))
    assert files == sorted(f"{k}/{n}" for k, entries in listed.items() for n, _ in entries)
    for kind, entries in listed.items():
        for name, summary in entries:
            assert summary, f"{kind}/{name}: the first comment line says what the recipe is"
            assert Path(find_recipe(name, kind)) == root() / kind / f"{name}.yaml"


def test_names_paths_and_kinds():
    by_name = build_config(None, "bridging-s5/imagenet-bridge", [])
    by_path = build_config(None, REPO / "recipes" / "pretrain" / "bridging-s5" / "imagenet-bridge.yaml", [])
    assert by_name == by_path and by_name.method_name == "bridge"
    fine = build_config("simxir", "digits", [])
    pre = build_config("simsiam", "digits", [])
    assert fine.method_name == "simxir" and pre.method_name == "simsiam" and fine.augment == "tiny"
    with pytest.raises(UserError, match="packaged: .*digits"):
        find_recipe("nope", "pretrain")
    with pytest.raises(UserError, match="no such file"):
        find_recipe("somewhere/else.yaml", "pretrain")


def test_recipes_command_lists_them(cli):
    r = cli(["recipes", "--json"])
    assert r.code == 0 and {"pretrain", "finetune", "linear"} == set(r.json)
    assert any(e["name"] == "bridging-s5/imagenet-bridge" for e in r.json["pretrain"])
    r = cli(["recipes", "linear"])
    assert r.code == 0 and "bridge" in r.out and "pretrain" not in r.out


@pytest.mark.slow
def test_a_wheel_installed_away_from_the_checkout_runs_the_demo_and_a_recipe_by_name(tmp_path):
    """Built with pip's standard PEP 517 build, installed with its dependencies into a fresh venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["SIMXIR_QUIET"] = "1"
    run = lambda *cmd, **kw: subprocess.run(cmd, check=True, capture_output=True, text=True, env=env,  # noqa: E731
                                            timeout=900, **kw)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
        str(REPO))
    wheel = next((tmp_path / "dist").glob("simxir-*.whl"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]   # byte-compiling torch: 30 s
    run(*pip, "torch==2.13.0")                       # pinned first: an unpinned torch is the CUDA build
    run(*pip, str(wheel))
    away = tmp_path / "elsewhere"
    away.mkdir()
    simxir = str(venv / "bin" / "simxir")
    found = run(str(venv / "bin" / "python"), "-c", "import simxir, sys; print(simxir.__file__)", cwd=away)
    assert str(REPO) not in found.stdout and "site-packages" in found.stdout
    run(simxir, "demo", "--pretrain-epochs", "1", "--finetune-epochs", "1", "--seeds", "1", "--out", "demo", cwd=away)
    assert (away / "demo" / "demo.png").is_file()
    run(simxir, "pretrain", "--recipe", "digits", "--method", "simsiam", "--out", "run", "epochs=1",
        "tensorboard=false", cwd=away)
    assert (away / "run" / "encoder.safetensors").is_file()
