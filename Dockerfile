# CPU image by default:   docker build -t masnn .
# CUDA image:             docker build -t masnn:cuda \
#                           --build-arg BASE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime \
#                           --build-arg TORCH_INDEX=https://pypi.org/simple --build-arg EXTRAS=gpu .
# Run:                    docker run --rm -v "$PWD:/data" masnn classify /data/recording.aedat4
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

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
RUN pip install --extra-index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" ".${EXTRAS:+[$EXTRAS]}"

WORKDIR /data
ENTRYPOINT ["masnn"]
CMD ["classify"]
