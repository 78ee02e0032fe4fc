#!/bin/sh
# Attach a kvmconf run folder to the LAVA job: publish-report.sh RUN_DIR [URL]
# LAVA has no upload command of its own (its docs, "Publishing artifacts"): the folder
# is packed and POSTed to URL with the token in $ARTIFACTS_TOKEN, and the URL the
# server answers is recorded with lava-test-reference. Without URL the packed folder
# stays on the device and the `kvmconf-report` case is skipped; a failed upload fails it.
set -u
name=kvmconf-report
url_in=${2:-}
run_dir=$(readlink -f "$1") || run_dir=""
if [ -z "$run_dir" ] || [ ! -d "$run_dir" ]; then
    echo "kvmconf: no run folder at $1"
    lava-test-case "$name" --result fail
    exit 0
fi
tarball="/tmp/kvmconf-$(basename "$run_dir").tar.gz"
tar -C "$(dirname "$run_dir")" -czf "$tarball" "$(basename "$run_dir")"
if [ -z "$url_in" ]; then
    echo "kvmconf: no ARTIFACTS_URL; the report folder stays on the device: $tarball"
    lava-test-case "$name" --result skip
    exit 0
fi
if url=$(curl -sSf -F "path=@$tarball" -F "token=${ARTIFACTS_TOKEN:-}" "$url_in"); then
    lava-test-reference "$name" --result pass --reference "$url"
else
    echo "kvmconf: uploading $tarball to $url_in failed"
    lava-test-case "$name" --result fail
fi
