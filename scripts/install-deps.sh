#!/usr/bin/env bash
# Installs every Debian package tasker-health needs to build, test and run its
# demo. Idempotent: packages already present are left alone, so running it
# twice is safe and the second run is quick.
set -euo pipefail

packages=(
  g++ make cmake pkg-config
  libcaf-dev
  libpqxx-dev libpq-dev
  libspdlog-dev libfmt-dev
  prometheus-cpp-dev
  libmicrohttpd-dev
  libssl-dev openssl
  libcpp-httplib-dev
  nlohmann-json3-dev
  libbenchmark-dev
  postgresql-15 postgresql-client-15
  postgresql-15-partman
  procps iproute2 curl
  clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  prometheus
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
