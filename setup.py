"""fedmark: federated learning SDK for marketing models (see README.md)."""
from setuptools import find_packages, setup

EDGE = ["numpy>=1.24", "onnxruntime>=1.17"]
SERVER = [
    "flask>=3.0", "numpy>=1.24", "sqlalchemy>=2.0,<2.1", "alembic>=1.12",
    "psycopg[binary]>=3.1", "dp-accounting>=0.4", "gunicorn>=23", "prometheus-client>=0.17", "limits[redis]>=5.0",
]
BUILD = [
    "tensorflow==2.14.1", "tensorflow-federated==0.87.0", "tf2onnx==1.17.0", "onnx==1.17.0",
    "onnxruntime>=1.17", "pyyaml>=6.0",  # pyyaml: YAML feature-schema files (models/tabular.py)
]
# Parquet tables for `fedmark export tabular --data FILE.parquet` (models/tabular.py says to install it when missing).
# <26: pyarrow 26 needs NumPy 2 at import (apache/arrow#48473) but does not declare it; TFF 0.87 holds numpy at 1.25.
PARQUET = ["pyarrow>=14,<26"]
DEV = [
    "pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6.100", "requests>=2.31",
    "matplotlib>=3.7", "tqdm>=4.66", "scikit-learn>=1.3", "psutil>=5.9",
]

setup(
    name="fedmark",
    version="0.1.0",
    description="Governed edge federated learning for marketing models",
    # The edge side (fedmark, edge_sdk, fedmark_cli: numpy + onnxruntime) runs on every CPython that
    # onnxruntime ships wheels for; tests/packaging installs it on a second Python.  The ``build`` extra
    # pins TensorFlow 2.14 / TFF 0.87, which exist for Python 3.11 only here (pip refuses them elsewhere),
    # and the server and build sides are tested on 3.11 only.
    python_requires=">=3.9",
    # Not examples/ (the demo), tests/ or bench/: an install holds the SDK, the server, the
    # model builders, the shared contract and the command, and no demo code.
    packages=find_packages(include=["fedmark", "fedmark.*", "fedmark_cli", "edge_sdk", "edge_sdk.*",
                                    "server", "server.*", "models", "models.*", "simulate", "simulate.*"]),
    include_package_data=True,
    # Non-Python files the installed packages serve or read: the dashboard and the /train page
    # (server/static), Alembic's migrations, and the JavaScript SDK's sources, which /train serves
    # to browsers (edge_sdk/web/src) — so an installed server works without a checkout.
    # static/vendor holds the dashboard's Chart.js, built by scripts/build_dashboard.sh before the wheel.
    # onnxruntime-web itself (edge_sdk/web/node_modules, ~136 MB) is not shipped: /train/ort answers
    # 503 with the fix (FEDMARK_WEB_SDK_DIR or npm ci).  MANIFEST.in adds the same files to the sdist.
    package_data={"server": ["static/*.html", "static/*.js", "static/*.css", "static/trainer/*", "static/vendor/*",
                             "migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"],
                  "edge_sdk": ["web/package.json", "web/README.md", "web/src/*.js", "web/src/families/*.js",
                                 "web/types/*.d.ts"]},
    install_requires=["numpy>=1.24"],
    extras_require={"edge": EDGE, "server": SERVER, "build": BUILD, "dev": DEV, "sim": ["ray>=2.9"],
                    "parquet": PARQUET},
    entry_points={"console_scripts": ["fedmark=fedmark_cli:main"]},
)
