# CPU image by default:   docker build -t masnn .
# CUDA image:             docker build -t masnn:cuda \
#                           --build-arg BASE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime --build-arg EXTRAS=gpu .
#                         (the base image's own torch is kept: see the constraints step below)
# Run:                    docker run --rm -v "$PWD:/data" masnn classify /data/recording.aedat4
# A USB camera:           docker run --rm -it --device /dev/bus/usb masnn live   (README, "Docker")
# Untested here (no Docker engine where this was written): read it as a recipe, check it on a first build.
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG EXTRAS=""
# NUMBA_CACHE_DIR: the compiled kernels are built into the image (below), so that no `docker run` pays the
# first-run compilation; NUMBA_CPU_NAME=generic makes that cache valid on any x86-64 host rather than only on
# the build machine's CPU model (set it to "host" to compile for the host's CPU at first use instead).
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/opt/masnn/numba-cache NUMBA_CPU_NAME=generic

# libusb for dv-processing's camera access; libgl/glib for OpenCV's windows (masnn live --show); liblz4 for
# decoding AEDAT 4.0 packets off the GIL
RUN apt-get update \
 && apt-get install -y --no-install-recommends libusb-1.0-0 libgl1 libglib2.0-0 liblz4-1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/masnn
COPY pyproject.toml README.md ./
COPY app app
COPY models models
COPY datasets datasets
COPY weights weights
# A base image that has torch (the CUDA ones) keeps it: its version, local tag included (2.9.1+cu128), becomes a
# constraint, so pip neither upgrades nor replaces it. Otherwise torch comes from TORCH_INDEX (CPU wheels).
RUN if python -c "import torch" 2>/dev/null; then \
        python -c "import torch; print('torch==' + torch.__version__)" > /tmp/torch-constraint.txt; \
    else \
        echo "torch==${TORCH_VERSION}" > /tmp/torch-constraint.txt; \
    fi \
 && cat /tmp/torch-constraint.txt \
 && pip install --extra-index-url "${TORCH_INDEX}" -c /tmp/torch-constraint.txt ".${EXTRAS:+[$EXTRAS]}" \
 && rm /tmp/torch-constraint.txt
# Warm the numba cache: classifying the shipped sample compiles the AEDAT 4.0, framing and inference kernels
# (other formats' decoders still compile on their first use). World-writable, so that `docker run --user`
# can add to it.
RUN mkdir -p "${NUMBA_CACHE_DIR}" \
 && masnn classify --device cpu > /dev/null \
 && chmod -R a+rwX "${NUMBA_CACHE_DIR}"

WORKDIR /data
ENTRYPOINT ["masnn"]
CMD ["classify"]
