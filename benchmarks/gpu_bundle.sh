#!/usr/bin/env bash
# Packs what a bare GPU machine with Python 3.12 and torch (no Ray, no network) lacks to run
# benchmarks/gpu_check.py into .gpu/site.tgz (~48 MB; ignored by git): Ray 2.60's cp312 wheel
# without its Java jars and RLlib, the compiled pieces of its dependencies as cp312 wheels, and
# the pure-Python ones copied from this checkout's .venv. On the GPU machine:
#   mkdir -p /tmp/site && tar xzf .gpu/site.tgz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD
#   python3 benchmarks/gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$work/whl" \
    "ray==$($py -c 'import ray; print(ray.__version__)')" \
    "pydantic_core==$($py -c 'import pydantic_core; print(pydantic_core.__version__)')" \
    "rpds-py==$($py -c 'import importlib.metadata as m; print(m.version("rpds-py"))')"
mkdir -p "$work/site"
for w in "$work"/whl/*.whl; do (cd "$work/site" && unzip -q -o "$w"); done
rm -rf "$work"/site/ray/{jars,rllib,llm} "$work"/site/ray/dashboard/client/build/static/js/*.map
$py - "$work/site" <<'PY'
import importlib.metadata as md, shutil, sys
from pathlib import Path
# Pure Python, missing from the GPU image (its package list: /work/.library/device/KINDS.md).
names = """aiohttp-cors annotated-types colorful google-api-core google-auth
googleapis-common-protos jsonschema jsonschema-specifications opencensus opencensus-context
opentelemetry-api opentelemetry-exporter-prometheus opentelemetry-proto opentelemetry-sdk
opentelemetry-semantic-conventions platformdirs proto-plus pyasn1 pyasn1-modules pydantic
referencing smart-open tensorboardx typing-inspection optuna colorlog timm""".split()
dst = Path(sys.argv[1])
for name in names:
    dist = md.distribution(name)
    for f in dist.files:
        src = Path(dist.locate_file(f))
        if "__pycache__" not in str(f) and not str(f).startswith("..") and src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
PY
mkdir -p .gpu
tar czf .gpu/site.tgz -C "$work/site" .
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
ls -la .gpu/site.tgz
