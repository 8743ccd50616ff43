"""ssp-mpi: a Stale Synchronous Parallel parameter server on MPI RMA windows."""
from setuptools import find_packages, setup

setup(
    name="ssp-mpi",
    version="0.1.0",
    description="Stale Synchronous Parallel (SSP) parameter server on MPI one-sided windows, "
                "with Numba kernels, HDF5 checkpoints and SLURM scripts",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ssp_mpi", "ssp_mpi.*", "kernels", "kernels.*",
                                    "jobs", "jobs.*"]),
    package_data={"jobs": ["data/*.txt", "data/*.gz"]},
    install_requires=["mpi4py>=3.1", "numpy>=1.23", "numba>=0.57", "h5py>=3.8"],
    extras_require={
        # The MPICH wheel from PyPI: an MPI for laptops and CI.  Cluster users
        # skip this extra and build mpi4py against the system MPI instead.
        "mpich": ["mpich"],
        # matplotlib: the benchmark smoke tests draw their plots
        "test": ["pytest>=7", "scipy", "matplotlib"],
        "bench": ["libmf", "cornac", "tomotopy", "lda", "scipy"],
        "plot": ["matplotlib"],
    },
    entry_points={"console_scripts": ["ssp-mpi = ssp_mpi.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering",
        "Topic :: System :: Distributed Computing",
    ],
)
