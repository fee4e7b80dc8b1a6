#!/usr/bin/env bash
# Builds the agent's image as a tarball without a registry or a daemon: an OCI image layout
# (for `ctr -n k8s.io images import`) that is also a Docker archive (`docker load`), one
# layer: the inspector binary, the libraries it links, iptables-save/nft with theirs (the
# agent reads kube-proxy's rules with them), /etc/protocols.
# usage: deploy/build-image.sh BINARY OUT.tar [NAME:TAG]   (`cargo xtask image` runs it)
set -euo pipefail
bin=$1 out=$2 name=${3:-inspector:0.1.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/run" "$work/oci/blobs/sha256"
copy() { # copy FILE NAME: FILE as /bin/NAME, with every library ldd names
  cp -L "$1" "$root/bin/$2"
  ldd "$1" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy "$bin" inspector
copy /usr/sbin/xtables-nft-multi xtables-nft-multi
for n in iptables iptables-save ip6tables-save; do ln -s xtables-nft-multi "$root/bin/$n"; done
copy /usr/sbin/nft nft
mkdir -p "$root/usr/lib/x86_64-linux-gnu"
cp -r /usr/lib/x86_64-linux-gnu/xtables "$root/usr/lib/x86_64-linux-gnu/"
cp /etc/protocols /etc/services "$root/etc/"
tar -C "$root" --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -cf "$work/layer.tar" .
put() { # put FILE: store as a blob, print its digest
  local d
  d=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$work/oci/blobs/sha256/$d"
  echo "$d"
}
size() { stat -c %s "$1"; }
layer=$(put "$work/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/inspector"],"Cmd":["agent"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$layer" > "$work/config.json"
config=$(put "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$(size "$work/config.json")" "$layer" "$(size "$work/layer.tar")" > "$work/manifest.oci.json"
manifest=$(put "$work/manifest.oci.json")
full="docker.io/library/$name"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$(size "$work/manifest.oci.json")" "$full" "${name##*:}" > "$work/oci/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
printf '[{"Config":"blobs/sha256/%s","RepoTags":["%s"],"Layers":["blobs/sha256/%s"]}]' \
  "$config" "$name" "$layer" > "$work/oci/manifest.json"
tar -C "$work/oci" -cf "$out" .
echo "$out: $name ($(du -h "$out" | cut -f1))"
