#!/usr/bin/env bash
# Bootstrap a local Docker base image from this machine's Python environment, for offline machines where no
# registry is reachable (the real submission base is vllm/vllm-openai:v0.26.0; the training base pytorch/pytorch).
#   build/local_base_image.sh [TAG]        # default aij-local-base:py311; needs a running dockerd and `make install`
# Then: python build/grade.py ... --isolation docker --build-arg BASE_IMAGE=aij-local-base:py311 \
#         --build-arg PYTHON=$PWD/.venv/bin/python
set -euo pipefail
tag="${1:-aij-local-base:py311}"
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
python_home=$(dirname "$(dirname "$(readlink -f "$venv/bin/python")")")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Only what the runtime needs: the loader and shared libraries, coreutils/shadow (useradd), CA certs, the Python
# installation the venv points at, and the venv itself. --mode makes every file readable by the image's non-root user.
(cd / && tar --mode='a+rX' --exclude='*/__pycache__' -cf "$tmp/rootfs.tar" \
  bin lib lib64 sbin usr/bin usr/sbin usr/lib64 usr/lib/x86_64-linux-gnu usr/lib/os-release \
  etc/passwd etc/group etc/shadow etc/login.defs etc/ld.so.cache etc/ld.so.conf etc/ld.so.conf.d \
  etc/nsswitch.conf etc/os-release etc/ssl "${python_home#/}" "${venv#/}")
docker import "$tmp/rootfs.tar" "$tag.tmp" >/dev/null
# Parent folders come from the tar implicitly (mode 700): open them, and give the image a /tmp.
docker run --name aij-base-fix "$tag.tmp" /usr/bin/bash -c \
  "mkdir -p /tmp /var/tmp && chmod 1777 /tmp /var/tmp && d='${python_home}' && while [ \"\$d\" != / ]; do chmod 755 \"\$d\"; d=\$(dirname \"\$d\"); done && d='${venv}' && while [ \"\$d\" != / ]; do chmod 755 \"\$d\"; d=\$(dirname \"\$d\"); done"
docker commit aij-base-fix "$tag" >/dev/null
docker rm aij-base-fix >/dev/null; docker rmi "$tag.tmp" >/dev/null
echo "$tag"
