"""The development harness of forensic-checkpoint: a local control plane with fake kubelets
(``cluster``, ``kubelet``), one real node (``realnode``), the operator and agents as local
processes (``stack``), the demo and the deploy-manifest renderer.

Installed by ``make setup`` next to the product, never into its wheel or image. It uses the
product's public API and talks to the API server with the official ``kubernetes`` client.
"""
