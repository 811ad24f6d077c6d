#!/usr/bin/env bash
# Bootstrap a local Docker base image from this machine's Python environment, for offline machines where no
# registry is reachable (the real submission base is vllm/vllm-openai:v0.26.0; the training base pytorch/pytorch).
#   build/local_base_image.sh [TAG]                 # default aij-local-base:py311; needs a running dockerd
#   VENV=/path/to/.venv build/local_base_image.sh   # another venv (default: the repo's .venv from `make install`)
# Then: python build/grade.py ... --isolation docker --build-arg BASE_IMAGE=aij-local-base:py311
#       docker build -f Dockerfile.train --build-arg BASE_IMAGE=aij-local-base:py311 --build-arg EXTRAS=train \
#         --build-arg BAKE_BASE=0 -t aij-judge-train:cpu .
# The venv is copied to the same absolute path and put first on the image's PATH, so `python` there is the venv's
# interpreter with its CPU torch; pip trusts the system CA bundle (where a proxy's CA, if any, is installed).
set -euo pipefail
tag="${1:-aij-local-base:py311}"
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${VENV:-$root/.venv}" 2>/dev/null && pwd) || { echo "error: no venv at ${VENV:-$root/.venv}; run make install or set VENV=" >&2; exit 2; }
[ -x "$venv/bin/python" ] || { echo "error: $venv/bin/python missing; set VENV= to a Python venv" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers (start dockerd)" >&2; exit 2; }
python_home=$(dirname "$(dirname "$(readlink -f "$venv/bin/python")")")
ca_bundle=/etc/ssl/certs/ca-certificates.crt
tmp=$(mktemp -d); trap 'rm -rf "$tmp"; docker rm -f aij-base-fix >/dev/null 2>&1 || true' EXIT
# Only what the runtime needs: the loader and shared libraries, coreutils/shadow (useradd), CA certs, the Python
# installation the venv points at, and the venv itself. --mode makes every file readable by the image's non-root user.
(cd / && tar --mode='a+rX' --exclude='*/__pycache__' -cf "$tmp/rootfs.tar" \
  bin lib lib64 sbin usr/bin usr/sbin usr/lib64 usr/lib/x86_64-linux-gnu usr/lib/os-release \
  etc/passwd etc/group etc/shadow etc/login.defs etc/ld.so.cache etc/ld.so.conf etc/ld.so.conf.d \
  etc/nsswitch.conf etc/os-release etc/ssl "${python_home#/}" "${venv#/}")
docker import \
  --change "ENV PATH=$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8 PIP_CERT=$ca_bundle SSL_CERT_FILE=$ca_bundle REQUESTS_CA_BUNDLE=$ca_bundle" \
  "$tmp/rootfs.tar" "$tag.tmp" >/dev/null
rm -f "$tmp/rootfs.tar"
# Parent folders come from the tar implicitly (mode 700): open them, and give the image a /tmp.
docker rm -f aij-base-fix >/dev/null 2>&1 || true
docker run --network none --name aij-base-fix "$tag.tmp" /usr/bin/bash -c \
  "mkdir -p /tmp /var/tmp && chmod 1777 /tmp /var/tmp && d='${python_home}' && while [ \"\$d\" != / ]; do chmod 755 \"\$d\"; d=\$(dirname \"\$d\"); done && d='${venv}' && while [ \"\$d\" != / ]; do chmod 755 \"\$d\"; d=\$(dirname \"\$d\"); done"
docker commit aij-base-fix "$tag" >/dev/null
docker rm aij-base-fix >/dev/null; docker rmi "$tag.tmp" >/dev/null
echo "$tag"
