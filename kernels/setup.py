"""Builds ``ember_kernels._C``, Ember's C++/CUDA torch ops; everything else is declared in
pyproject.toml. ``pip install ./kernels`` builds it against the torch that pyproject's
build requirements name (an isolated build downloads it again); ``make install`` passes
``--no-build-isolation`` to build against the venv's torch instead.

The CUDA sources are compiled whenever nvcc and a CUDA build of torch are present; otherwise
the CPU ops alone are built. ``EMBER_KERNELS_CUDA=0`` forces a CPU-only build and
``EMBER_KERNELS_CUDA=1`` makes a missing toolkit an error instead.
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup

CSRC = os.path.join("ember_kernels", "csrc")  # relative to this folder, where pip runs setup.py


def _cuda_home() -> str | None:
    """The toolkit root: $CUDA_HOME, else the folder holding ``include/cuda_runtime.h``
    next to the ``nvcc`` on PATH (its prefix, or the ``cuda`` folder under it)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    prefix = os.path.dirname(os.path.dirname(nvcc))
    real_prefix = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    for root in (prefix, os.path.join(prefix, "cuda"), real_prefix):
        if os.path.exists(os.path.join(root, "include", "cuda_runtime.h")):
            return root
    return None


def _use_cuda() -> bool:
    mode = os.environ.get("EMBER_KERNELS_CUDA", "auto")
    if mode == "0":
        return False
    import torch

    home = _cuda_home()
    missing = []
    if torch.version.cuda is None:
        missing.append(f"torch {torch.__version__} is a CPU build")
    if home is None:
        missing.append("no nvcc on PATH and CUDA_HOME is unset")
    if missing and mode == "1":
        raise RuntimeError(f"EMBER_KERNELS_CUDA=1 but CUDA ops cannot be built: {'; '.join(missing)}")
    if missing:
        print(f"ember_kernels: building the CPU ops only ({'; '.join(missing)})")
        return False
    # torch.utils.cpp_extension reads both at import: set them before importing it.
    os.environ["CUDA_HOME"] = home
    # With no GPU visible torch cannot guess the architectures (and fails); build for A100
    # and H100/H200, plus PTX that newer GPUs compile at load.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
    print(f"ember_kernels: building CPU and CUDA ops (CUDA_HOME={home}, TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']})")
    return True


def _extension():
    use_cuda = _use_cuda()
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")))
    # -fopenmp in compile and link flags, or at::parallel_for runs serially; -g0 because
    # Python's CFLAGS carry -g (a .so 40x larger); -fno-trapping-math lets loops with
    # comparisons vectorize (it changes no result: nothing here reads FP exception flags).
    cxx = ["-O3", "-g0", "-fopenmp", "-fno-trapping-math"]
    link = ["-fopenmp", "-g0"]
    if use_cuda:
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        return CUDAExtension(
            "ember_kernels._C",
            sources,
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=link,
        )
    return CppExtension("ember_kernels._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)


def main() -> None:
    ext = _extension()  # first: it sets CUDA_HOME before torch.utils.cpp_extension is imported
    from torch.utils.cpp_extension import BuildExtension

    setup(ext_modules=[ext], cmdclass={"build_ext": BuildExtension})


if __name__ == "__main__":
    main()
