# deploypipe on an NVIDIA GPU: native TensorRT, ONNX Runtime's CUDA and TensorRT providers,
# and PyTorch on CUDA, in one image.
#
# Base: NVIDIA's TensorRT container (NGC). TensorRT is the one dependency that only NVIDIA
# distributes; this image ships it with a matching CUDA, cuDNN and the tensorrt Python
# package. PyTorch and onnxruntime-gpu then come from PyPI as CUDA 12 wheels that bring
# their own CUDA libraries, so they install cleanly on top. (NGC's PyTorch image has
# TensorRT too, but its pre-release torch build makes pip resolve torch again.)
#
#   docker build -t deploypipe-gpu .
#   docker run --gpus all -v $PWD:/work deploypipe-gpu build /work/model.pt --target gpu -o /work/run
#
# TRT_TAG picks the container release (a 24.05 or later tag carries TensorRT 10; check
# NVIDIA's TensorRT container release notes for the TensorRT and CUDA of each tag).
# This file was written without Docker or a GPU at hand and has not been built yet.
ARG TRT_TAG=25.01-py3
FROM nvcr.io/nvidia/tensorrt:${TRT_TAG}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEPLOYPIPE_CACHE=/work/.deploypipe-cache

# A virtual environment that still sees the container's tensorrt package, so pip counts it
# as installed (deploypipe[gpu] asks for tensorrt>=10) and never replaces it.
RUN python3 -m venv --system-site-packages /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/deploypipe
COPY pyproject.toml README.md ./
COPY profiles ./profiles
COPY deploypipe ./deploypipe
# onnxruntime (a core dependency) and onnxruntime-gpu install the same module: keep only
# the GPU build. The last line fails the build if the CLI does not start.
RUN pip install ".[gpu]" \
 && pip uninstall -y onnxruntime \
 && pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.18" \
 && deploypipe --help > /dev/null \
 && deploypipe list backends

WORKDIR /work
ENTRYPOINT ["deploypipe"]
CMD ["--help"]
