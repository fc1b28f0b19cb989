"""edgepose: real-time human pose estimation on edge devices (Raspberry Pi, Jetson)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = {}
for line in (ROOT / "edge" / "__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        version["v"] = line.split("=")[1].strip().strip('"')

MODEL_FILES = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "models").glob("*")) if p.is_file()]

setup(
    name="edgepose",
    version=version["v"],
    description="Real-time human pose estimation for edge devices: INT8 models on LiteRT or ONNX Runtime",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",  # tested: 3.10 (JetPack 6) and 3.11 (Pi OS Bookworm), by .ci/run
    packages=find_packages(include=["edge", "edge.*"]),
    package_data={"edge": ["assets/samples/*.jpg", "assets/samples/*.md", "outputs/*.html"]},
    data_files=[("share/edgepose/models", MODEL_FILES)] if MODEL_FILES else [],
    # Ranges, so users get fixes; the tests pin exact versions in scripts/constraints.txt. An upper bound
    # only where a newer major release is known to break us, with the reason beside it (none today).
    install_requires=[
        "numpy>=1.23",
        "opencv-python-headless>=4.8",
        "pyyaml>=6.0",
        "pydantic>=2.5",
    ],
    extras_require={
        "tflite": ["ai-edge-litert>=1.2"],
        "onnx": ["onnxruntime>=1.17"],
        "plots": ["matplotlib>=3.6"],
        "mqtt": ["paho-mqtt>=2.0"],
        # On-site INT8 (edgepose models quantize): no TensorFlow. ai-edge-quantizer pulls scipy, so not in "all".
        # sympy: onnxruntime's quant_pre_process needs it for symbolic shape inference (onnxruntime does not pull it).
        "quantize": ["ai-edge-quantizer>=0.10; python_version >= '3.10'", "onnx>=1.15", "onnxruntime>=1.17", "sympy>=1.12"],
        "dev": ["pytest>=7.4", "hypothesis>=6.100", "onnx>=1.15", "matplotlib>=3.6", "paho-mqtt>=2.0", "jsonschema>=4.18", "cryptography>=41", "jinja2>=3", "websocket-client>=1.6", "ai-edge-quantizer>=0.10; python_version >= '3.10'",
                "sympy>=1.12"],  # quant_pre_process's symbolic shape inference (tests/test_quantize.py checks it ran)
        "all": ["ai-edge-litert>=1.2", "onnxruntime>=1.17", "matplotlib>=3.6", "paho-mqtt>=2.0"],
    },
    entry_points={"console_scripts": ["edgepose=edge.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
