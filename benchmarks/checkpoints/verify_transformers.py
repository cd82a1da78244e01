"""Verify the ``transformers`` layout against Hugging Face transformers' own models, for each version
generation (4.x and 5.x), in four stages:

    python3 -m venv /tmp/hf4 && /tmp/hf4/bin/pip install torch==2.13.0 "transformers<5" safetensors
    python3 -m venv /tmp/hf5 && /tmp/hf5/bin/pip install torch==2.13.0 "transformers>=5" safetensors
    for V in 4 5; do
      /tmp/hf$V/bin/python benchmarks/checkpoints/verify_transformers.py source OUT$V
      .venv/bin/python benchmarks/checkpoints/verify_transformers.py check OUT$V
      /tmp/hf$V/bin/python benchmarks/checkpoints/verify_transformers.py roundtrip OUT$V
    done
    .venv/bin/python benchmarks/checkpoints/verify_transformers.py table OUT4 OUT5

``source`` builds each model from its config (random weights: fill.py's, seeded, in the model's own
key order), writes it with that version's own ``save_pretrained`` and records the reference feature
(ViTs: ``last_hidden_state[:, 0]``, the class token after the final norm; ResNet: ``pooler_output``)
on fixed inputs, at the native size and a second one for the ViTs (``interpolate_pos_encoding=True``).
``check`` loads each folder with simxir (features, max abs difference) and exports it as a
transformers folder (``--template`` the original); ``roundtrip`` loads the export with
``AutoModel.from_pretrained`` and compares its features. Fixtures (config, keys, shapes, fill seed,
features, version) go to tests/models/fixtures/transformers/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from common import check_row, roundtrip_rows, run_stage, vit_input, write_table  # noqa: E402
from fill import fill  # noqa: E402

FIXTURES = ROOT / "tests" / "models" / "fixtures" / "transformers"
VIT = {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6}
MODELS = {   # name -> (config class, model class, config, input sizes, what it stands for)
    "vit": ("ViTConfig", "ViTModel", {**VIT, "intermediate_size": 1536, "image_size": 224, "patch_size": 16},
            (224, 160), "ViTModel, ViT-S/16 (as facebook/dino-vits16)"),
    "dinov2": ("Dinov2Config", "Dinov2Model", {**VIT, "image_size": 224, "patch_size": 14}, (224, 154),
               "Dinov2Model, ViT-S/14 (as facebook/dinov2-small, at 224 px)"),
    "dinov2-reg": ("Dinov2WithRegistersConfig", "Dinov2WithRegistersModel",
                   {**VIT, "image_size": 224, "patch_size": 14, "num_register_tokens": 4}, (224, 154),
                   "Dinov2WithRegistersModel, ViT-S/14 + 4 registers"),
    "resnet": ("ResNetConfig", "ResNetModel", {"depths": [3, 4, 6, 3], "layer_type": "bottleneck"}, (64,),
               "ResNetModel, ResNet-50 (as microsoft/resnet-50)"),
}
SEED = {"vit": 21, "dinov2": 22, "dinov2-reg": 23, "resnet": 24}


def _features(model, name: str, sizes: tuple[int, ...]) -> dict[str, list]:
    out = {}
    with torch.no_grad():
        for s in sizes:
            x = vit_input(s)
            if name == "resnet":
                out[str(s)] = model(pixel_values=x).pooler_output.flatten(1).tolist()
            else:
                out[str(s)] = model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0].tolist()
    return out


def _version() -> str:
    import transformers

    return transformers.__version__


def source(out: Path) -> None:
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    major = _version().split(".")[0]
    for name, (cfg_cls, model_cls, cfg, sizes, _) in MODELS.items():
        model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**cfg)).eval()
        shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
        filled = fill(shapes, SEED[name])
        model.load_state_dict(filled)
        model.save_pretrained(out / name)
        from safetensors.torch import load_file

        written = load_file(out / name / "model.safetensors")
        # which filled tensor each saved key holds (5.x renames its in-memory names when it saves)
        saved_from = {k: next(f for f, t in filled.items() if t.shape == v.shape and torch.equal(t, v))
                      for k, v in written.items()}
        fx = {"name": name, "transformers": _version(), "config": json.loads((out / name / "config.json").read_text()),
              "keys": [[k, list(v.shape)] for k, v in written.items()], "saved_from": saved_from,
              "fill_keys": [[k, s] for k, s in shapes], "fill_seed": SEED[name],
              "features": _features(model, name, sizes)}
        (FIXTURES / f"{name}-v{major}.json").write_text(json.dumps(fx))
        print(name, _version(), len(written), "tensors saved")


def check(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from simxir.models import export_encoder, load_encoder

    rows = []
    for name in MODELS:
        model, report = load_encoder(out / name)
        model.eval()
        want = _fixture(out, name)["features"]
        with torch.no_grad():
            diff = max(float((model(vit_input(int(s))) - torch.tensor(f)).abs().max()) for s, f in want.items())
        export_encoder(model, out / f"{name}.export", "transformers", template=out / name)
        export_encoder(model, out / f"{name}.bare", "transformers")      # without the original folder
        rows.append(check_row(name, report, diff))
    (out / "check.json").write_text(json.dumps(rows, indent=1))


def _fixture(out: Path, name: str) -> dict:
    """The fixture this OUT folder's source stage wrote (its transformers version is in config.json)."""
    major = json.loads((out / name / "config.json").read_text())["transformers_version"].split(".")[0]
    return json.loads((FIXTURES / f"{name}-v{major}.json").read_text())


def roundtrip(out: Path) -> None:
    import transformers

    def strict_load(name: str) -> dict:
        diffs, kinds = [], []
        for kind in ("export", "bare"):
            model, info = transformers.AutoModel.from_pretrained(out / f"{name}.{kind}", output_loading_info=True)
            missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]   # bare ViTModel: no pooler
            if missing or info["unexpected_keys"] or info["mismatched_keys"]:
                raise AssertionError(f"{name}.{kind}: {info}")
            want = _fixture(out, name)["features"]
            got = _features(model.eval(), name, tuple(int(s) for s in want))
            diffs.append(max(float((torch.tensor(got[s]) - torch.tensor(want[s])).abs().max()) for s in want))
            kinds.append(type(model).__name__)
        return {"export_feature_difference": max(diffs), "transformers": _version(), "auto_model": "/".join(kinds)}

    roundtrip_rows(out, strict_load)


def table(*outs: Path) -> None:
    rows = []
    for out in outs:
        for r in json.loads((out / "roundtrip.json").read_text()):
            r["layout"] = f"{r['layout']} (transformers {r['transformers']}): {MODELS[r['layout']][4]}"
            rows.append(r)
    write_table(rows, "transformers", "transformers",
                "Hugging Face transformers folders (save_pretrained), against transformers' own models")


if __name__ == "__main__":
    run_stage({"source": source, "check": check, "roundtrip": roundtrip, "table": table}, sys.argv)
