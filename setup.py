"""tempo-verl: TEMPO tree-structured credit assignment as a verl advantage-estimator plugin."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="tempo-verl",
    version="0.1.0",
    description="TEMPO prefix-tree credit assignment for LLM RL, as a verl algorithm plugin (adv_estimator=tempo)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # The Python versions CI runs the whole suite on (.ci/run runs it on every one this declares); why only
    # 3.11: docs/install.md.
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["tempo_verl", "tempo_verl.*"]),
    # The estimator itself needs only torch and numpy; everything that touches verl,
    # the command-line tools and the data/reward helpers come with the `verl` extra.
    install_requires=[
        "torch>=2.4",
        "numpy>=1.24",
    ],
    extras_require={
        "verl": [
            "verl[verl-core]==0.9.1",
            "omegaconf>=2.3",
            "transformers>=4.51",
            "typer>=0.12",
            "rich>=13",
            "matplotlib>=3.7",
            "datasets>=2.19",
            "pandas>=2.0",
            "pyarrow>=14",
            # math-verify pulls latex2sympy2_extended, which accepts ANTLR 4.9.3..4.13.2;
            # hydra/omegaconf (verl's config) need 4.9.x, so pin the 4.9.3 flavour.
            "math-verify[antlr4_9_3]>=0.7",
            "antlr4-python3-runtime==4.9.3",
        ],
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "ruff==0.15.12",
        ],
    },
    entry_points={
        # `import verl` loads this group in every process (driver and Ray workers alike).
        "verl.plugins": ["tempo = tempo_verl.plugin"],
        "console_scripts": ["tempo-verl = tempo_verl.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
