# deploypipe on an NVIDIA GPU: native TensorRT, ONNX Runtime's CUDA and TensorRT providers,
# and PyTorch on CUDA, in one image.
#
# One CUDA for everything: PyTorch 2.13, onnxruntime-gpu 1.31 and TensorRT 11.4 from the
# package registry are all CUDA 13 builds that bring their own CUDA, cuDNN and TensorRT
# libraries as wheels, so the base is NVIDIA's plain CUDA 13 runtime image (the driver's
# user-space libraries come from the host through the NVIDIA container toolkit).
# Host driver: 580 or newer (CUDA 13). tools/setup-gpu.sh installs the same stack outside
# Docker. This file has not been built here (no Docker, no internet beyond the registry).
#
#   docker build -t deploypipe-gpu .
#   docker run --gpus all -v $PWD:/work deploypipe-gpu build /work/model.pt --target gpu -o /work/run
ARG CUDA_TAG=13.0.2-runtime-ubuntu24.04
FROM nvidia/cuda:${CUDA_TAG}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEPLOYPIPE_CACHE=/work/.deploypipe-cache \
    VENV=/opt/venv
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/deploypipe
COPY pyproject.toml README.md constraints.txt constraints-gpu.txt ./
COPY profiles ./profiles
COPY deploypipe ./deploypipe
COPY tools/setup-gpu.sh ./tools/setup-gpu.sh
# The script ends with `deploypipe list backends`: the build fails if the CLI does not start.
RUN bash tools/setup-gpu.sh
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /work
ENTRYPOINT ["deploypipe"]
CMD ["--help"]
