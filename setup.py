"""Install the BatchRL-MTF benchmark: ``pip install -e .`` (add ``[test]`` for the test suite, ``[ray]`` for the Ray
executor of the paper suite)."""
from setuptools import find_packages, setup

setup(
    name="batchrl-mtf-bench",
    version="0.1.0",
    description=(
        "Open benchmark for reinforcement-learning-based multi-task fusion (BatchRL-MTF) "
        "in a synthetic short-video recommender"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["mtf_env", "mtf_env.*", "agents", "agents.*", "benchmarks", "benchmarks.*"]),
    package_data={"mtf_env": ["assets/*.npz", "assets/*.json"]},
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.11",
        "gymnasium==1.0.0",
        "torch>=2.8,<2.14",
        "d3rlpy>=2.8,<2.9",
        "stable-baselines3>=2.9,<2.10",
        "pyarrow>=14",
        "scikit-learn>=1.3",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "seaborn>=0.13",
        "minari>=0.5,<0.6",
        "numba>=0.60",
        "cma>=3.3,<5",
    ],
    extras_require={
        # nbclient, nbformat, ipykernel: the tests execute the tutorial notebooks top to bottom
        "test": ["pytest>=8", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"],
        # the tutorial notebooks in Jupyter Lab
        "tutorials": ["jupyterlab>=4", "ipykernel>=6.29"],
        # the optional Ray executor of the paper suite (`mtf-bench suite run --executor ray`, docs/cluster.md)
        "ray": ["ray>=2.40,<3"],
        # SCOPE-RL, used only by a cross-check test of our importance-sampling estimators
        # (it imports the old gym and pulls in hydra-core, so it stays out of the core install)
        "scope": ["scope-rl==0.2.1"],
    },
    entry_points={"console_scripts": ["mtf-bench=benchmarks.cli:main"]},
)
