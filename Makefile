# forensic-checkpoint developer entry points. `make setup` is idempotent; every other target
# depends on it, so a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS_DIR ?= $(HOME)/.cache/forensic-checkpoint

.PHONY: test-deps setup test test-slow test-fast test-area lint bench bench-cluster bench-findings bench-realnode demo demo-real cluster-tools check-tools node-tools corpus-images corpus image e2e-cluster crds rules deploy chart-readme plugin-dist clean

setup: $(VENV)/.setup-done
$(VENV)/.setup-done: pyproject.toml dev/pyproject.toml scripts/setup-venv.sh
	VENV=$(VENV) bash scripts/setup-venv.sh
	touch $@

# System tools for tests that would otherwise skip (age, shellcheck, chromium, zstd); apt as root.
test-deps:
	bash scripts/install-test-deps.sh

lint: setup
	$(VENV)/bin/ruff check operator/src dev/src tests benchmarks
	$(VENV)/bin/ruff format --check operator/src dev/src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Everything but the real-node timing scenarios: the fast tiers, the dev cluster with fake
# kubelets, the real node (containerd + kubelet; make node-tools, root) and the built image (make
# image). Set FORENSIC_SKIP_REAL_NODE=1 to skip the real node on a machine that cannot run one.
# In TEST_WORKERS processes (pytest-xdist): each test file runs whole on one worker (its module's
# clusters start once); all of tests/realnode runs on one, first (one real node per machine), and
# the wheel and virtualenv builds on one (RealNodeFirst in tests/conftest.py). TEST_WORKERS=0 runs
# it in one process; docs/dev-cluster.md, "Test run times", has the measured times.
TEST_WORKERS ?= 2
test: setup cluster-tools check-tools node-tools image
	$(PY) -m pytest -q -m "not timing" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# The tier without clusters, real nodes or slow tests, in two processes (pytest-xdist), each
# test cut off after 60 s. `cluster` and most of `slow` are derived (tests/conftest.py), so a
# test that starts a cluster, moto or hypothesis cannot land in this tier.
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not cluster and not slow and not timing" --timeout 60

# One area, every tier but the timing scenarios: make test-area AREA=agent (a folder of tests/).
test-area: setup cluster-tools
	$(PY) -m pytest -q -m "not timing" tests/$(AREA)

# The real node's slow timing scenarios (a 2 GiB dump, killing the agent mid-dump) and the whole
# findings corpus scored against its ground truth; CI runs it.
test-slow: setup cluster-tools node-tools corpus-images
	$(PY) -m pytest -q -m timing

bench: setup
	$(PY) -m benchmarks.run

# 50 ForensicCheckpoints across a 3-node dev cluster (operator + agents as local processes); 20
# alerts at once for 20 pods on 5 nodes (receiver accept -> kubelet call); and the operator at
# scale: 100 fake nodes, 2,000 kept ForensicCheckpoints, against the old design; one agent with
# 200 kept archives and a 64-capture burst (fairness, memory, the disk floor).
bench-cluster: setup cluster-tools
	$(PY) -m benchmarks.capture_load
	$(PY) -m benchmarks.alert_burst
	$(PY) -m benchmarks.operator_scale
	$(PY) -m benchmarks.operator_memory
	$(PY) -m benchmarks.agent_scale
	$(PY) -m benchmarks.operator_failover
	$(PY) -m benchmarks.export_pass

# A 2 GiB capture on the real node: stage timings, and creation -> Completed against the
# kubelet call's own duration (goal <= 1.3x).
bench-realnode: setup node-tools
	$(PY) -m benchmarks.post_capture

# The findings engine's precision and recall on the corpus `make corpus` captured (exit 1: a goal
# failed, 2: the corpus is incomplete).
bench-findings: setup
	FORENSIC_TOOLS_DIR=$(TOOLS_DIR) $(PY) -m benchmarks.findings_corpus

# Regenerate crds/ from the pydantic models (a test fails when they drift).
crds: setup
	$(PY) -m forensic_checkpoint.api.crds --write crds/
	$(PY) -m forensic_checkpoint.api.crds --write charts/forensic-checkpoint/files/crds/

# Regenerate the bundled findings rules as JSON (the analyzer loads it; a test checks drift).
RULES := operator/src/forensic_checkpoint/analysis/findings/rules
rules: setup
	$(PY) -c 'import sys; from forensic_checkpoint.analysis.findings.engine import rules_json; sys.stdout.write(rules_json(open("$(RULES).yaml").read()))' > $(RULES).json.tmp
	mv $(RULES).json.tmp $(RULES).json

# Render deploy/forensic-checkpoint.yaml from the chart (a test checks it has not drifted). The
# chart carries a copy of crds/ in files/crds (`make crds` writes both; a test checks they match).
deploy: setup cluster-tools
	$(VENV)/bin/forensic-checkpoint-dev render-deploy

# The chart's README.md (every value: type, default, its `# --` comment), from values.yaml.
chart-readme: setup
	$(VENV)/bin/forensic-checkpoint-dev chart-readme

# The kubectl plugin's krew archive (dist/kubectl-forensic-vVERSION.tar.gz, reproducible) and
# its manifest plugins/forensic.yaml with that archive's sha256.
plugin-dist: setup
	$(VENV)/bin/forensic-checkpoint-dev plugin-dist

# A local control plane with 3 fake nodes, the operator and agents as processes, and one
# ForensicCheckpoint of a real CRI-O sample analysed into its status.
demo: setup cluster-tools
	$(VENV)/bin/forensic-checkpoint-dev demo

# The same on a real node: containerd, runc, CRIU 4.1 and a kubelet (make node-tools; root), the
# blog's counter pod from e2e/ sent a secret, checkpointed by the kubelet, the secret found.
demo-real: setup cluster-tools node-tools
	$(VENV)/bin/forensic-checkpoint-dev demo --real-node

# etcd, kube-apiserver, kube-controller-manager, kubectl, helm at the versions in tools/versions.env,
# built once per machine into $(TOOLS_DIR); a no-op (version checks only) when already there.
cluster-tools:
	TOOLS_DIR=$(TOOLS_DIR) bash scripts/build-cluster-tools.sh

# promtool and kubeconform (the chart's monitoring and manifest checks), pinned in
# tools/versions.env and cached in $(TOOLS_DIR); promtool's cold build takes minutes.
check-tools:
	TOOLS_DIR=$(TOOLS_DIR) bash scripts/build-check-tools.sh

# A real node's tools: containerd, runc's CRIU 4.1.1 (Debian trixie's source), crictl, CNI plugins,
# kubelet, kube-proxy and local pause/busybox/python images, pinned in tools/versions.env and cached
# in $(TOOLS_DIR); apt-installs runc, iptables and build dependencies (root). No-op when cached.
node-tools:
	TOOLS_DIR=$(TOOLS_DIR) bash scripts/build-node-tools.sh

# The findings corpus's workload image from Debian packages (debootstrap + apt, no registry),
# cached by recipe hash in $(TOOLS_DIR); root.
corpus-images:
	TOOLS_DIR=$(TOOLS_DIR) bash scripts/build-corpus-images.sh

# Benign workloads and attacks run on the real node, captured through a ForensicCheckpoint and
# kept with their ground truth in $(TOOLS_DIR)/corpus, per scenario definition (cached: not
# captured again); root. docs/findings-corpus.md.
corpus: setup cluster-tools node-tools corpus-images
	FORENSIC_TOOLS_DIR=$(TOOLS_DIR) $(VENV)/bin/forensic-checkpoint-dev corpus

# The container image from the Dockerfile with buildah (no Docker engine), over a local debootstrap
# of the same Debian release, as an OCI archive for `ctr -n k8s.io images import`, cached in
# $(TOOLS_DIR) by the hash of its inputs; prints its path and sizes. apt-installs buildah,
# debootstrap and runc (root). About 1 s when cached; see docs/install.md.
image: setup
	TOOLS_DIR=$(TOOLS_DIR) VENV=$(VENV) bash scripts/build-image.sh

# The chart installed as users install it, on this machine's real single-node cluster (kube-proxy,
# CoreDNS, the image above imported into containerd): the blog capture, an upgrade during a
# capture, the kubectl plugin, both kubelet credentials, alerts, uninstall (e2e/real-cluster.sh,
# whose steps e2e/kind.sh shares); root. docs/install.md has its times.
e2e-cluster: setup cluster-tools node-tools image
	TOOLS_DIR=$(TOOLS_DIR) VENV=$(VENV) bash e2e/real-cluster.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
