#!/bin/sh
# Skaffold's custom builder for one image of images.toml. In skaffold.yaml:
#
#   build:
#     artifacts:
#       - image: hello              # images.toml's image name (its repository)
#         custom:
#           buildCommand: scripts/skaffold-build.sh hello
#           dependencies:
#             paths: [crates/hello, images.toml, Cargo.toml, Cargo.lock]
#
# Skaffold runs it with IMAGE (the reference to make: the default repo's
# registry if there is one, the image name, Skaffold's tag), PUSH_IMAGE
# (`true` to push the image there, else to put it into the local podman or
# docker under that name) and PLATFORMS (comma-separated, maybe empty). A
# push sends every platform images.toml lists; a load takes the first of
# PLATFORMS, else the host's.
set -eu
name=${1:?usage: scripts/skaffold-build.sh NAME}
tag=${IMAGE##*:}
repository=${IMAGE%:*}
registry=
case $repository in
*/*) registry=${repository%/*} ;;
esac

if [ "${PUSH_IMAGE:-false}" = true ]; then
    set -- push "$name" --tag "$tag"
    if [ -n "$registry" ]; then
        set -- "$@" --registry "$registry"
        # A registry on this machine (a dev cluster's) speaks plain HTTP.
        case $registry in
        localhost | localhost:* | 127.* | '[::1]'*) set -- "$@" --insecure ;;
        esac
    fi
else
    set -- load "$name" --tag "$tag"
    [ -z "$registry" ] || set -- "$@" --registry "$registry"
    platform=${PLATFORMS:-}
    platform=${platform%%,*}
    [ -z "$platform" ] || set -- "$@" --platform "$platform"
fi
exec cargo xtask "$@"
