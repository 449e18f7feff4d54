#!/bin/sh
# Tilt's custom_build for one image of images.toml, in either of Tilt's two
# ways. In the Tiltfile:
#
#   custom_build('hello', 'scripts/tilt-build.sh hello',
#                deps=['crates/hello', 'images.toml', 'Cargo.lock'])
#
# puts the image into the local podman or docker under EXPECTED_REF (the
# name and tag Tilt asks for), where Tilt takes it from; and
#
#   custom_build('hello', 'scripts/tilt-build.sh hello .tilt-ref-hello',
#                deps=['crates/hello', 'images.toml', 'Cargo.lock'],
#                outputs_image_ref_to='.tilt-ref-hello', skips_local_docker=True)
#
# pushes it to Tilt's registry (EXPECTED_REGISTRY, else the registry part of
# EXPECTED_REF) and writes its pinned `registry/repository@sha256:...` to the
# file, which Tilt then deploys.
set -eu
name=${1:?usage: scripts/tilt-build.sh NAME [REF_FILE]}
ref_file=${2:-}
ref=${EXPECTED_REF:-}
tag=${EXPECTED_TAG:-}
registry=${EXPECTED_REGISTRY:-}
case $ref in
*:*) [ -n "$tag" ] || tag=${ref##*:} ;;
esac
if [ -z "$registry" ]; then
    case ${ref%:*} in
    */*)
        registry=${ref%:*}
        registry=${registry%/*}
        ;;
    esac
fi

if [ -n "$ref_file" ]; then
    if [ -z "$registry" ]; then
        echo "tilt-build.sh: no registry to push to: set default_registry() in the Tiltfile" >&2
        exit 2
    fi
    set -- push "$name" --registry "$registry" --image-refs "$ref_file"
    # A registry on this machine (a dev cluster's) speaks plain HTTP.
    case $registry in
    localhost | localhost:* | 127.* | '[::1]'*) set -- "$@" --insecure ;;
    esac
else
    set -- load "$name"
    [ -z "$registry" ] || set -- "$@" --registry "$registry"
fi
[ -z "$tag" ] || set -- "$@" --tag "$tag"
exec cargo xtask "$@"
